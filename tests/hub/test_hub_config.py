"""The hub configuration a stack deploys, loaded by the real JupyterHub, KubeSpawner and authenticators.

Each test renders the ConfigMap's files under mocks, then initializes a `jupyterhub.app.JupyterHub`
from them as the hub pod would (same files, secrets in the environment) and looks at what the
hub, its authenticator, its services and KubeSpawner ended up with.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jupyterhub import orm
from jupyterhub.app import JupyterHub
from kubernetes.utils import parse_quantity
from nativeauthenticator import NativeAuthenticator
from tornado.web import HTTPError

from program import aks_stack, example_stack
from stacks import parse
from rendered import RenderedHub, render_hub

GPU = "nvidia.com/gpu"


def quantity(value: Any) -> Any:
    return parse_quantity(str(value))


def start_hub(rendered: RenderedHub, directory: Path, monkeypatch: pytest.MonkeyPatch) -> JupyterHub:
    """A hub initialized from the rendered files; only its database moves to `directory`."""
    for name, value in rendered.environment.items():
        monkeypatch.setenv(name, value)
    app = JupyterHub()
    asyncio.run(
        app.initialize(
            ["--config", str(rendered.config_file), f"--JupyterHub.db_url=sqlite:///{directory}/jupyterhub.sqlite"]
        )
    )
    return app


def with_spawner(app: JupyterHub, username: str, work):
    """Runs `work(spawner)` (a coroutine function) with `username`'s KubeSpawner.

    KubeSpawner creates its Kubernetes client in the running event loop, so the spawner is made
    and used inside one.
    """
    user = orm.User.find(app.db, username)
    if user is None:
        user = orm.User(name=username)
        app.db.add(user)
        app.db.commit()

    async def run():
        try:
            return await work(app.users[user].spawner)
        finally:
            # As the hub does once a server stops: the next start gets a fresh spawner.
            app.users[user].spawners.pop("", None)

    return asyncio.run(run())


async def spawner_itself(spawner):
    return spawner


async def options_form(spawner) -> str:
    # As the hub renders it: a group-limited profile list makes the form a function of the user.
    return await spawner.get_options_form()


def pod_for(profile_slug: str):
    """The pod KubeSpawner would create once the form is submitted with `profile_slug`, as JSON."""

    async def build(spawner):
        spawner.user_options = spawner.options_from_form({"profile": [profile_slug]})
        await spawner.load_user_options()
        return spawner.api.api_client.sanitize_for_serialization(await spawner.get_pod_manifest())

    return build


@pytest.fixture(scope="module")
def dev_hub(tmp_path_factory):
    # One hub for the tests that only look at it: initializing one takes seconds.
    directory = tmp_path_factory.mktemp("dev-hub")
    with pytest.MonkeyPatch.context() as monkeypatch:
        rendered = render_hub(example_stack("dev"), (), directory)
        yield start_hub(rendered, directory, monkeypatch), rendered


@pytest.fixture
def aks_hub(tmp_path, monkeypatch):
    config, secret_keys = aks_stack()
    rendered = render_hub(config, secret_keys, tmp_path)
    return start_hub(rendered, tmp_path, monkeypatch), rendered


def test_dev_hub_uses_kubespawner_an_external_proxy_and_the_secrets_from_the_environment(dev_hub):
    app, rendered = dev_hub
    # KubeSpawner, as the queued spawner that says why Kueue holds a GPU server back (the dev stack
    # queues its GPU servers: test_queued_spawner.py). By name: importing kubespawner here would fix
    # kubernetes_asyncio's kubeconfig path before the hub fixtures set it.
    assert [c.__name__ for c in app.spawner_class.__mro__][:2] == ["QueuedKubeSpawner", "KubeSpawner"]
    assert app.proxy.should_start is False, "the proxy runs in its own pod"
    assert app.proxy.api_url == "http://proxy-api:8001"
    assert app.proxy.auth_token == rendered.environment["CONFIGPROXY_AUTH_TOKEN"]
    assert app.cookie_secret == bytes.fromhex(rendered.environment["JPY_COOKIE_SECRET"])
    assert app.hub.api_url == "http://hub:8081/hub/api", "user servers reach the hub by its Service"
    assert app.cleanup_servers is False, "user pods must outlive a hub restart"


def test_native_authentication_lets_authorized_users_and_admins_in(dev_hub):
    app, _ = dev_hub
    authenticator = app.authenticator
    assert type(authenticator).__name__ == "GuardedNativeAuthenticator"
    assert isinstance(authenticator, NativeAuthenticator)
    assert authenticator.admin_users == {"admin"}
    assert authenticator.open_signup is False, "new accounts wait for an admin's approval"
    # JupyterHub 5 lets nobody in without allow config; NativeAuthenticator's approval is the gate.
    assert authenticator.allow_all is True


def test_native_sign_in_is_guarded_as_configured(dev_hub):
    authenticator = dev_hub[0].authenticator
    assert (authenticator.allowed_failed_logins, authenticator.seconds_before_next_try) == (3, 600)
    assert (authenticator.minimum_password_length, authenticator.check_common_password) == (10, True)


@pytest.mark.parametrize(
    ("ago", "locked"),
    [(timedelta(seconds=30), True), (timedelta(seconds=601), False), (timedelta(days=1, seconds=30), False)],
    ids=["within the lockout", "after it", "a day and 30 s after"],
)
def test_an_account_is_locked_for_lockout_seconds_after_its_last_wrong_password(dev_hub, ago, locked):
    # NativeAuthenticator 1.3 alone took "a day and 30 s" for 30 s (timedelta.seconds drops days).
    authenticator = dev_hub[0].authenticator
    authenticator.login_attempts["ana"] = {"count": 3, "time": datetime.now() - ago}
    try:
        assert authenticator.is_blocked("ana") is locked
    finally:
        authenticator.login_attempts.pop("ana")


def test_no_sign_up_is_authorized_by_its_name_alone(tmp_path, monkeypatch):
    # NativeAuthenticator alone authorizes sign-ups named in adminUsers or allowedUsers at once.
    config = copy.deepcopy(example_stack("dev"))
    config["jupyterhub"]["auth"].update(adminUsers=["admin", "deputy"], allowedUsers=["ana"])
    rendered = render_hub(config, (), tmp_path)
    authenticator = start_hub(rendered, tmp_path, monkeypatch).authenticator
    for name in ("deputy", "ana", "someone"):
        account = authenticator.create_user(name, "a decent passphrase for " + name)
        assert account is not None and account.is_authorized is False, f"{name} was authorized by signing up"
    assert authenticator.create_user("admin", "a claim on the admin's name") is None, "the first admin's name is taken"
    assert authenticator.get_user("admin").is_valid_password(rendered.environment["MLPLATFORM_FIRST_ADMIN_PASSWORD"])


def test_every_hub_start_sets_the_first_admins_password_to_the_stacks(tmp_path, monkeypatch):
    rendered = render_hub(example_stack("dev"), (), tmp_path)
    stacks_password = rendered.environment["MLPLATFORM_FIRST_ADMIN_PASSWORD"]
    first = start_hub(rendered, tmp_path, monkeypatch).authenticator
    assert first.change_password("admin", "changed on the hub's own page")
    restarted = start_hub(rendered, tmp_path, monkeypatch).authenticator  # the same database
    assert restarted.get_user("admin").is_valid_password(stacks_password)
    assert not restarted.get_user("admin").is_valid_password("changed on the hub's own page")


def sign_in(authenticator, username: str, password: str) -> str | None:
    return asyncio.run(authenticator.authenticate(None, {"username": username, "password": password}))


def test_sign_in_takes_an_approved_account_with_its_password_and_counts_a_wrong_one(tmp_path, monkeypatch):
    authenticator = start_hub(render_hub(example_stack("dev"), (), tmp_path), tmp_path, monkeypatch).authenticator
    authenticator.create_user("ana", "a decent passphrase for ana")
    assert sign_in(authenticator, "ana", "a decent passphrase for ana") is None, "not approved yet"
    authenticator.get_user("ana").is_authorized = True
    assert sign_in(authenticator, "Ana", "a decent passphrase for ana") == "ana", "names are normalized"
    assert sign_in(authenticator, "nobody", "a decent passphrase for ana") is None
    for attempt in range(authenticator.allowed_failed_logins):
        assert sign_in(authenticator, "ana", f"wrong guess {attempt}") is None
    assert authenticator.is_blocked("ana")
    assert sign_in(authenticator, "ana", "a decent passphrase for ana") is None, "locked after too many wrong passwords"


def test_the_hub_answers_others_while_a_sign_ins_password_is_checked(dev_hub, monkeypatch):
    # NativeAuthenticator checks with bcrypt on the event loop; 20 sign-ins at once held the hub's
    # health check past its probe's timeout. Here the check can only finish once another coroutine
    # on the loop has run.
    authenticator = dev_hub[0].authenticator
    module = sys.modules[type(authenticator).__module__]
    other_ran = threading.Event()
    real_check = module.bcrypt.checkpw

    def check_waiting_for_the_loop(password: bytes, hashed: bytes) -> bool:
        assert other_ran.wait(10), "nothing else ran on the event loop while the password was checked"
        return real_check(password, hashed)

    monkeypatch.setattr(module.bcrypt, "checkpw", check_waiting_for_the_loop)

    async def sign_in_beside_another_request():
        async def another_request():
            await asyncio.sleep(0)
            other_ran.set()

        return await asyncio.gather(
            authenticator.authenticate(None, {"username": "admin", "password": dev_hub[1].environment["MLPLATFORM_FIRST_ADMIN_PASSWORD"]}),
            another_request())

    assert asyncio.run(sign_in_beside_another_request())[0] == "admin"


def test_the_first_admin_exists_at_start_with_the_stacks_password(dev_hub):
    app, rendered = dev_hub
    account = app.authenticator.get_user("admin")
    assert account is not None and account.is_authorized
    assert account.is_valid_password(rendered.environment["MLPLATFORM_FIRST_ADMIN_PASSWORD"])


def test_the_spawn_limits_and_timeouts_reach_the_hub_and_kubespawner(dev_hub):
    app, _ = dev_hub
    assert (app.concurrent_spawn_limit, app.active_server_limit) == (64, 0)
    spawner = with_spawner(app, "admin", spawner_itself)
    assert (spawner.start_timeout, spawner.http_timeout, spawner.consecutive_failure_limit) == (900, 30, 5)


def test_idle_cullers_run_as_hub_managed_services_one_per_profile_policy_with_only_their_scopes(dev_hub):
    app, rendered = dev_hub
    # The dev stack's GPU profile is culled sooner (and at a max age): a culler per policy, each
    # through cull_by_profile.py's view of its profiles' servers.
    view = [sys.executable, str(rendered.config_file.with_name("cull_by_profile.py")), f"--document={rendered.document_file}"]
    cullers = {name: service for name, service in app._service_map.items() if name.startswith("jupyterhub-idle-culler")}
    assert {name: service.command for name, service in cullers.items()} == {
        "jupyterhub-idle-culler-idle-3600s": [
            *view, "--profiles=tensorflow-cpu,tensorflow-cpu-research", "--", "--timeout=3600", "--cull-every=600"
        ],
        "jupyterhub-idle-culler-idle-1200s-age-28800s": [
            *view, "--profiles=tensorflow-gpu", "--", "--timeout=1200", "--cull-every=600", "--max-age=28800"
        ],
    }
    for culler in cullers.values():
        assert culler.managed, "the hub starts and restarts the culler"
        (role,) = culler.orm.roles
        assert sorted(role.scopes) == sorted(
            ["list:users", "read:users:activity", "read:servers", "delete:servers", "read:users:groups"]
        )


def test_kubespawner_alone_fails_late_on_a_choice_its_form_does_not_offer(dev_hub):
    """Why the hub's apply_user_options refuses such a request (tests/hub/test_profile_choices.py):
    KubeSpawner 7.0 checks the profile but not the choice, and fails with a KeyError when it
    applies the profile, after the pre-spawn hook, as an unhandled error."""
    app, _ = dev_hub

    async def load(spawner):
        spawner.user_options = {"profile": "tensorflow-gpu", "gpus": "8"}
        await spawner.load_user_options()

    with pytest.raises(KeyError, match="'8'"):
        with_spawner(app, "admin", load)


def test_the_hub_refuses_a_choice_its_form_does_not_offer_before_kubespawner_sees_it(dev_hub):
    app, _ = dev_hub

    async def apply(spawner):
        return spawner.apply_user_options(spawner, {"profile": "tensorflow-gpu", "gpus": "8"})

    with pytest.raises(HTTPError) as refused:
        with_spawner(app, "admin", apply)
    assert refused.value.status_code == 400
    assert "gpus '8' is not offered by profile 'tensorflow-gpu'; its choices: '1', '2'" in refused.value.log_message


def dev_profiles() -> list[dict[str, Any]]:
    """The dev stack's profiles as the hub gets them: the images are the local builds (images.local)."""
    return [p.model_dump(by_alias=True) for p in parse(example_stack("dev")).jupyterhub.profiles]


def test_spawn_form_offers_every_profile_with_its_image_and_limits(dev_hub):
    app, _ = dev_hub
    html = with_spawner(app, "admin", options_form)
    for profile in dev_profiles():
        for text in (profile["name"], profile["image"], profile["cpuLimit"], profile["memoryLimit"]):
            assert text in html, f"the spawn form does not show {text!r} of profile {profile['name']!r}"


def test_gpu_profile_asks_for_a_gpu_and_lands_on_the_gpu_pool(dev_hub):
    app, _ = dev_hub
    pod = with_spawner(app, "admin", pod_for("tensorflow-gpu"))
    container = pod["spec"]["containers"][0]
    assert container["image"] == dev_profiles()[1]["image"]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert limits[GPU] == "1"
    assert quantity(limits["cpu"]) == 4 and quantity(requests["cpu"]) == 1
    assert quantity(limits["memory"]) == quantity("16Gi") and quantity(requests["memory"]) == quantity("8Gi")
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}
    assert pod["spec"]["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]


def test_cpu_profile_lands_on_the_user_pool_without_gpus_or_gpu_tolerations(dev_hub):
    app, _ = dev_hub
    pod = with_spawner(app, "admin", pod_for("tensorflow-cpu"))
    container = pod["spec"]["containers"][0]
    assert container["image"] == dev_profiles()[0]["image"]
    assert GPU not in container["resources"]["limits"]
    assert quantity(container["resources"]["requests"]["cpu"]) == quantity("500m")
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "cpu"}
    assert "tolerations" not in pod["spec"]


def test_user_pods_carry_the_labels_the_network_policies_select_and_no_api_token(dev_hub):
    from components.hub_config.document import APP_NAME, USER_COMPONENT
    from components.k8s import app_labels

    app, _ = dev_hub
    pod = with_spawner(app, "admin", pod_for("tensorflow-cpu"))
    selector = app_labels(APP_NAME, USER_COMPONENT)
    assert selector.items() <= pod["metadata"]["labels"].items(), pod["metadata"]["labels"]
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_user_pods_are_owned_by_the_hubs_service_account_so_destroy_stops_them(dev_hub):
    """Kubernetes' garbage collector deletes a pod whose owner is gone: `pulumi destroy` deletes
    the account, a hub restart does not. The hook reads the account's uid from the API."""
    from kubernetes_asyncio.client.models import V1ObjectMeta, V1ServiceAccount

    app, _ = dev_hub
    asked = []

    async def read_namespaced_service_account(name, namespace):
        asked.append((name, namespace))
        return V1ServiceAccount(metadata=V1ObjectMeta(name=name, namespace=namespace, uid="5f0c6e4e-0000-4000-8000-000000000001"))

    async def modified(spawner):
        spawner.api.read_namespaced_service_account = read_namespaced_service_account  # the shared client's
        try:
            pod = await spawner.modify_pod_hook(spawner, await spawner.get_pod_manifest())
        finally:
            del spawner.api.read_namespaced_service_account
        return spawner.api.api_client.sanitize_for_serialization(pod)

    pod = with_spawner(app, "admin", modified)
    assert asked == [("hub", "jupyterhub")]
    owner = {"apiVersion": "v1", "kind": "ServiceAccount", "name": "hub", "blockOwnerDeletion": False,
             "uid": "5f0c6e4e-0000-4000-8000-000000000001"}
    assert pod["metadata"]["ownerReferences"] == [owner]


def test_azuread_hub_takes_its_client_secret_from_the_environment(aks_hub):
    app, rendered = aks_hub
    authenticator = app.authenticator
    assert type(authenticator).__name__ == "AzureAdOAuthenticator"
    assert authenticator.client_secret == rendered.environment["OAUTH_CLIENT_SECRET"]
    assert authenticator.client_id == "11111111-1111-1111-1111-111111111111"
    assert authenticator.tenant_id == "00000000-0000-0000-0000-000000000000"
    assert authenticator.oauth_callback_url == "https://notebooks.example.com/hub/oauth_callback"
    assert authenticator.admin_users == {"admin@example.com"}
    assert "client-secret-for-tests" not in rendered.document_file.read_text()


def test_the_https_hub_knows_its_public_url(aks_hub):
    # jupyterhub.https: the address users and OAuth see, whatever scheme the proxy's requests carry.
    app, _ = aks_hub
    assert app.public_url == "https://notebooks.example.com/"
    assert app.tornado_settings["public_url"].geturl() == "https://notebooks.example.com/"


def test_each_user_gets_a_home_volume_of_the_configured_size_and_class(tmp_path, monkeypatch):
    config, secret_keys = aks_stack()
    config = copy.deepcopy(config)
    config["jupyterhub"]["storage"] = {"size": "20Gi", "storageClass": "managed-csi-premium"}
    app = start_hub(render_hub(config, secret_keys, tmp_path), tmp_path, monkeypatch)

    async def claim_and_pod(spawner):
        return spawner.get_pvc_manifest(), await pod_for("tensorflow-cpu")(spawner)

    claim, pod = with_spawner(app, "someone@example.com", claim_and_pod)
    assert claim.spec.resources.requests["storage"] == "20Gi"
    assert claim.spec.storage_class_name == "managed-csi-premium"
    assert claim.spec.access_modes == ["ReadWriteOnce"]
    assert {"name": "home", "persistentVolumeClaim": {"claimName": claim.metadata.name}} in pod["spec"]["volumes"]
    assert {"name": "home", "mountPath": "/home/jovyan"} in pod["spec"]["containers"][0]["volumeMounts"]


def cullers(app: JupyterHub) -> list[str]:
    return sorted(name for name in app._service_map if name.startswith("jupyterhub-idle-culler"))


def test_culling_off_means_no_culler_service(tmp_path, monkeypatch):
    config = example_stack("dev")
    config["jupyterhub"]["cullIdleSeconds"] = 0
    for profile in config["jupyterhub"]["profiles"]:
        profile.pop("cullIdleSeconds", None)
        profile.pop("maxAgeSeconds", None)
    app = start_hub(render_hub(config, (), tmp_path), tmp_path, monkeypatch)
    assert cullers(app) == []


def test_culling_off_for_the_hub_leaves_the_gpu_profiles_own_culler(tmp_path, monkeypatch):
    config = example_stack("dev")
    config["jupyterhub"]["cullIdleSeconds"] = 0
    app = start_hub(render_hub(config, (), tmp_path), tmp_path, monkeypatch)
    assert cullers(app) == ["jupyterhub-idle-culler-idle-1200s-age-28800s"]


def test_hub_refuses_to_start_without_its_secrets(tmp_path, monkeypatch):
    rendered = render_hub(example_stack("dev"), (), tmp_path)
    del rendered.environment["CONFIGPROXY_AUTH_TOKEN"]
    monkeypatch.delenv("CONFIGPROXY_AUTH_TOKEN", raising=False)
    with pytest.raises(RuntimeError, match="CONFIGPROXY_AUTH_TOKEN is not set"):
        start_hub(rendered, tmp_path, monkeypatch)


@pytest.mark.parametrize("module_name", ["jupyterhub.utils", "kubespawner.spawner"])
def test_a_spawns_waits_look_again_within_half_a_second(dev_hub, monkeypatch, module_name):
    """KubeSpawner's wait for its pod and the hub's for the server's answer (both JupyterHub's
    exponential_backoff) sleep at most 0.05 s first and 0.5 s later, not 0.2 s growing to 5 s
    (spawn_waits.py, installed by the config file): a server that answers is noticed within half a
    second."""
    import jupyterhub.utils

    module = sys.modules[module_name]
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(jupyterhub.utils.asyncio, "sleep", record)
    answers = iter([False] * 30 + [True])
    assert asyncio.run(module.exponential_backoff(lambda: next(answers), "no answer", timeout=600)) is True
    monkeypatch.undo()
    assert len(sleeps) == 30, sleeps
    assert sleeps[0] <= 0.05 and max(sleeps) <= 0.5, f"{module_name}: {sleeps}"
