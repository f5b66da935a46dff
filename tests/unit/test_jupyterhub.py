"""The JupyterHub component under mocks: what it declares, for each stack setting that matters."""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest

from components import tls
from components.hub_config import document as hub_config
from components.cluster import Cluster, ClusterArgs, Scheduling
from components.jupyterhub import JupyterHub, JupyterHubArgs
from components.k8s import app_labels
from vocab.versions import CONFIGURABLE_HTTP_PROXY_IMAGE, JUPYTERHUB_HUB_IMAGE, PINS
from program import MOCK_API_SERVER, Deployment, RecordingMocks, aks_stack, example_stack, is_secret, reveal, run_program
from stacks import ConfigError, parse
from validation import validate

NS = "jupyterhub"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


# --- building the component directly, recording its resources and their options ----------------


class LoadBalancerMocks(RecordingMocks):
    """Also plays the cloud: a Service of type LoadBalancer gets an address."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        resource_id, outputs = super().new_resource(args)
        if args.typ == SERVICE and args.inputs.get("spec", {}).get("type") == "LoadBalancer":
            outputs["status"] = {"loadBalancer": {"ingress": [{"ip": "20.1.2.3"}]}}
        return resource_id, outputs


@dataclass
class Built:
    deployment: Deployment
    options: dict[str, pulumi.ResourceOptions] = field(default_factory=dict)
    url: str | None = None
    hub: JupyterHub | None = None

    def objects(self) -> dict[str, dict[str, Any]]:
        """The hub's Kubernetes objects by Pulumi name, as the API server would receive them."""
        return {r.name: r.manifest() for r in self.deployment.kubernetes_objects() if r.name in self.options}

    def raw(self, name: str) -> dict[str, Any]:
        return self.deployment.named(name).inputs

    def document(self) -> dict[str, Any]:
        return json.loads(self.objects()["jupyterhub-config"]["data"][hub_config.DOCUMENT_NAME])


def build(config: dict[str, Any], secret_keys: tuple[str, ...] = (), mocks: type[RecordingMocks] = RecordingMocks) -> Built:
    """The cluster and the hub from `config`, built directly under mocks."""
    settings = parse(config, frozenset(secret_keys))
    built = Built(Deployment())
    pulumi.runtime.set_mocks(mocks(built.deployment), project="mlplatform", stack="test", preview=False)

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        # Legacy transformations see the component's and every child's options; nothing is changed.
        if args.type_ != "mlplatform:jupyterhub:JupyterHub":
            built.options[args.name] = args.opts
        return None

    @pulumi.runtime.test
    def program():
        cluster = Cluster("mlplatform", ClusterArgs(settings.cluster))
        built.hub = JupyterHub(
            "jupyterhub",
            JupyterHubArgs.from_cluster(settings.jupyterhub, cluster),
            opts=pulumi.ResourceOptions(providers=[cluster.provider], transformations=[record]),
        )
        return built.hub.url.apply(lambda url: setattr(built, "url", url))

    program()
    return built


def dev(**hub: Any) -> dict[str, Any]:
    config = example_stack("dev")
    config["jupyterhub"].update(hub)
    return config


def one_policy(**hub: Any) -> dict[str, Any]:
    """The dev stack with every profile culled by the hub's own policy (none sets its own)."""
    config = dev(**hub)
    for profile in config["jupyterhub"]["profiles"]:
        profile.pop("cullIdleSeconds", None)
        profile.pop("maxAgeSeconds", None)
    return config


def typed(*profiles: dict[str, Any], **hub: Any) -> dict[str, Any]:
    """An existing cluster with T4 pools of one and two GPUs per node and an A100 pool, and `profiles`."""
    config = existing(**hub)
    config["cluster"]["nodePools"] = [
        {"name": "users", "labels": {"agentpool": "users"}},
        {"name": "t4", "gpusPerNode": 1, "gpuType": "T4", "labels": {"agentpool": "t4"}, "taints": ["sku=gpu:NoSchedule"]},
        {"name": "t4x2", "gpusPerNode": 2, "gpuType": "T4", "labels": {"agentpool": "t4x2"}, "taints": ["sku=gpu:NoSchedule"]},
        {"name": "a100", "gpusPerNode": 4, "gpuType": "A100", "labels": {"agentpool": "a100"},
         "taints": ["nvidia.com/gpu=present:NoSchedule"]},
    ]
    config["jupyterhub"]["profiles"] = [config["jupyterhub"]["profiles"][0], *profiles]
    return config


def existing(**hub: Any) -> dict[str, Any]:
    """A real cluster of pools selected by their own labels, with a dedicated, tainted user pool."""
    config = example_stack("dev")
    config["cluster"] = {
        "provider": "existing",
        "kubeconfig": "~/.kube/config",
        "nodePools": [
            {"name": "users", "labels": {"agentpool": "users"}, "taints": ["hub.jupyter.org/dedicated=user:NoSchedule"]},
            {"name": "t4", "gpusPerNode": 1, "labels": {"agentpool": "t4"}, "taints": ["sku=gpu:NoSchedule"]},
            {"name": "a100", "gpusPerNode": 4, "labels": {"agentpool": "a100"}, "taints": ["nvidia.com/gpu=present:NoSchedule"]},
        ],
    }
    config["jupyterhub"]["userPool"] = "users"
    config["jupyterhub"].update(hub)
    config["mnist"]["storage"] = {"storageClass": "nfs-client"}  # ReadWriteMany needs a class there
    del config["kueue"]  # the dev stack's quotas are of its own pools (checked once enabled)
    return config


def profile(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [p for p in document["traits"]["KubeSpawner"]["profile_list"] if p["display_name"] == name]
    return found


# --- structure ------------------------------------------------------------------------------------


def test_every_object_is_a_child_of_the_component_in_the_hub_namespace():
    built = build(example_stack("dev"))
    assert built.options, "the component declared nothing"
    for name, opts in built.options.items():
        assert opts.parent is built.hub, f"{name} is not a child of the JupyterHub component"
    (component,) = built.deployment.of_type("mlplatform:jupyterhub:JupyterHub")
    assert component.name == "jupyterhub"
    for name, manifest in built.objects().items():
        if manifest["kind"] not in ("Namespace", "PersistentVolume"):
            assert manifest["metadata"]["namespace"] == NS, name


def test_hub_and_proxy_run_the_pinned_images():
    objects = build(example_stack("dev")).objects()
    hub_pod = objects["jupyterhub-hub"]["spec"]["template"]["spec"]
    proxy_pod = objects["jupyterhub-proxy"]["spec"]["template"]["spec"]
    assert hub_pod["containers"][0]["image"] == JUPYTERHUB_HUB_IMAGE == f"quay.io/jupyterhub/k8s-hub:{PINS['ZERO_TO_JUPYTERHUB_VERSION']}"
    assert proxy_pod["containers"][0]["image"] == CONFIGURABLE_HTTP_PROXY_IMAGE
    assert re.fullmatch(r"quay\.io/jupyterhub/configurable-http-proxy:\d+\.\d+\.\d+", CONFIGURABLE_HTTP_PROXY_IMAGE)


def test_hub_loads_its_config_and_keeps_its_database_on_a_volume():
    objects = build(example_stack("dev")).objects()
    spec = objects["jupyterhub-hub"]["spec"]
    assert spec["strategy"] == {"type": "Recreate"}, "sqlite on a ReadWriteOnce volume: one hub at a time"
    container = spec["template"]["spec"]["containers"][0]
    assert container["args"] == ["jupyterhub", "--config=/usr/local/etc/jupyterhub/jupyterhub_config.py", "--upgrade-db"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert mounts == {"config": "/usr/local/etc/jupyterhub", "db": "/srv/jupyterhub"}
    assert volumes["config"]["configMap"]["name"] == "hub-config"
    assert volumes["db"]["persistentVolumeClaim"]["claimName"] == "hub-db-dir"
    config_map = objects["jupyterhub-config"]["data"]
    assert config_map["jupyterhub_config.py"] == hub_config.CONFIG_FILE.read_text()
    assert config_map["guarded_native.py"] == hub_config.AUTHENTICATOR_MODULE.read_text()
    assert json.loads(config_map["mlplatform-hub.json"])["traits"]["JupyterHub"]["db_url"] == "sqlite:////srv/jupyterhub/jupyterhub.sqlite"


def test_on_the_simulated_cluster_the_hub_database_binds_a_pre_made_volume():
    objects = build(example_stack("kwok")).objects()
    claim = objects["jupyterhub-db"]
    assert claim["spec"]["storageClassName"] == ""
    (volume,) = [o for o in objects.values() if o["kind"] == "PersistentVolume"]
    assert volume["spec"]["claimRef"] == {"namespace": NS, "name": "hub-db-dir"}


def test_proxy_routes_to_the_hub_by_default():
    objects = build(example_stack("dev")).objects()
    container = objects["jupyterhub-proxy"]["spec"]["template"]["spec"]["containers"][0]
    assert "--default-target=http://hub:8081" in container["command"]
    assert "--error-target=http://hub:8081/hub/error" in container["command"]


@pytest.mark.parametrize("stack", ["dev", "aks"])
def test_hub_and_proxy_stay_in_their_services_once_ready_and_restart_when_they_stop_answering(stack):
    # One pod each: unready would only turn every request into the proxy's 503.
    objects = (build(*aks_stack()) if stack == "aks" else build(example_stack("dev"))).objects()
    for name in ("jupyterhub-hub", "jupyterhub-proxy"):
        container = objects[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["failureThreshold"] >= 100, name
        assert container["livenessProbe"].get("timeoutSeconds", 1) >= 3, name


def test_config_changes_restart_the_hub_but_not_the_proxy():
    def annotations(config):
        objects = build(config).objects()
        return tuple(objects[n]["spec"]["template"]["metadata"]["annotations"] for n in ("jupyterhub-hub", "jupyterhub-proxy"))

    hub_before, proxy_before = annotations(dev(cullIdleSeconds=3600))
    hub_after, proxy_after = annotations(dev(cullIdleSeconds=7200))
    assert hub_before["checksum/config"] != hub_after["checksum/config"]
    assert "checksum/config" not in proxy_before


def test_arguments_are_checked_before_anything_is_registered():
    settings = parse(example_stack("dev")).jupyterhub
    deployment = Deployment()
    pulumi.runtime.set_mocks(RecordingMocks(deployment), project="mlplatform", stack="test", preview=False)

    @pulumi.runtime.test
    def program():
        JupyterHub("jupyterhub", JupyterHubArgs(settings, profile_scheduling={"TensorFlow (CPU)": Scheduling()}))

    with pytest.raises(ValueError, match=r"profile_scheduling: missing \['TensorFlow \(CPU, research\)', 'TensorFlow \(GPU\)'\]"):
        program()
    assert not deployment.resources, [r.name for r in deployment.resources]


# --- services and how users reach the hub ---------------------------------------------------------


def test_hub_and_proxy_api_are_cluster_internal():
    objects = build(example_stack("dev")).objects()
    hub_svc, api_svc = objects["jupyterhub-hub-service"], objects["jupyterhub-proxy-api"]
    assert (hub_svc["metadata"]["name"], hub_svc["spec"]["type"], hub_svc["spec"]["ports"][0]["port"]) == ("hub", "ClusterIP", 8081)
    assert (api_svc["metadata"]["name"], api_svc["spec"]["type"], api_svc["spec"]["ports"][0]["port"]) == ("proxy-api", "ClusterIP", 8001)
    assert hub_svc["spec"]["selector"] == app_labels("jupyterhub", "hub")
    assert api_svc["spec"]["selector"] == app_labels("jupyterhub", "proxy")


@pytest.mark.parametrize("service_type", ["ClusterIP", "LoadBalancer", "NodePort"])
def test_public_service_type_follows_config(service_type):
    public = build(dev(serviceType=service_type, auth={"type": "native"})).objects()["jupyterhub-proxy-public"]
    assert public["metadata"]["name"] == "proxy-public"
    assert public["spec"]["type"] == service_type
    assert public["spec"]["selector"] == app_labels("jupyterhub", "proxy")


def test_without_https_the_cluster_internal_hub_serves_plain_http_on_port_80():
    config = dev()
    del config["jupyterhub"]["https"]
    objects = build(config).objects()
    assert objects["jupyterhub-proxy-public"]["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    container = objects["jupyterhub-proxy"]["spec"]["template"]["spec"]["containers"][0]
    assert "--port=8000" in container["command"] and not any(a.startswith("--ssl") for a in container["command"])


def test_load_balancer_source_ranges_are_passed_on():
    config = dev(serviceType="LoadBalancer", loadBalancerSourceRanges=["203.0.113.0/24", "198.51.100.7/32"])
    public = build(config).objects()["jupyterhub-proxy-public"]
    assert public["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24", "198.51.100.7/32"]


def type_dependent_errors(service: dict[str, Any]) -> list[str]:
    """The API server's cross-field rules for Service types that a schema cannot express."""
    spec, errors = service["spec"], []
    if spec["type"] == "ClusterIP" and any("nodePort" in p for p in spec["ports"]):
        errors.append("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'")
    if spec["type"] != "LoadBalancer" and spec.get("loadBalancerSourceRanges"):
        errors.append("spec.loadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'")
    return errors


def as_the_api_server_stores(service: dict[str, Any]) -> dict[str, Any]:
    """`service` after creation: the API server allocates a node port for NodePort and LoadBalancer."""
    stored = copy.deepcopy(service)
    if stored["spec"]["type"] != "ClusterIP":
        for port in stored["spec"]["ports"]:
            port["nodePort"] = 31080
    return stored


def test_type_dependent_errors_catches_a_leftover_node_port():
    # Proves the rule the flip test relies on: an in-place update would keep the allocated port.
    live = as_the_api_server_stores(build(dev(serviceType="LoadBalancer")).objects()["jupyterhub-proxy-public"])
    live["spec"]["type"] = "ClusterIP"
    assert type_dependent_errors(live) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


FLIPS = [
    ("ClusterIP", "LoadBalancer"),
    ("LoadBalancer", "ClusterIP"),
    ("ClusterIP", "NodePort"),
    ("NodePort", "ClusterIP"),
    ("NodePort", "LoadBalancer"),
    ("LoadBalancer", "NodePort"),
]


@pytest.mark.parametrize(("before", "after"), FLIPS, ids=[f"{a}-to-{b}" for a, b in FLIPS])
def test_changing_the_service_type_replaces_only_the_public_service(before, after, monkeypatch):
    # Between two `pulumi up`s the generated tokens and certificate stay as they are
    # (ignore_changes): fix them.
    monkeypatch.setattr(secrets, "token_hex", lambda n: "0f" * n)
    certificate = tls.self_signed(("proxy-public",))
    monkeypatch.setattr(tls, "self_signed", lambda names: certificate)
    config = {"serviceType": before, "auth": {"type": "native", "adminUsers": ["admin"]}}
    first = build(dev(**config)).objects()
    second_built = build(dev(**{**config, "serviceType": after}))
    second = second_built.objects()

    changed = {name for name in first.keys() | second.keys() if first.get(name) != second.get(name)}
    assert changed == {"jupyterhub-proxy-public"}, f"a {before} -> {after} flip also changes {changed}"
    options = second_built.options["jupyterhub-proxy-public"]
    # The engine replaces a resource when a replace_on_changes path differs, deleting first because
    # the name is fixed: the new Service is created from scratch, so nothing of the old type's
    # allocations (a nodePort) is carried over.
    assert "spec.type" in options.replace_on_changes and options.delete_before_replace
    old, new = first["jupyterhub-proxy-public"], second["jupyterhub-proxy-public"]
    assert (old["spec"]["type"], new["spec"]["type"]) == (before, after)
    validate(new)
    assert type_dependent_errors(as_the_api_server_stores(new)) == []


def test_no_other_object_is_replaced_on_changes():
    options = build(example_stack("dev")).options
    replacing = {n for n, o in options.items() if o.replace_on_changes or o.delete_before_replace}
    # The self-signed certificate's Secret is replaced when its names change (see the https tests).
    assert replacing == {"jupyterhub-proxy-public", "jupyterhub-tls"}


def test_stack_output_is_the_port_forward_command_without_a_load_balancer():
    deployment = run_program(example_stack("dev"))
    assert deployment.outputs["jupyterhub"] == "kubectl port-forward -n jupyterhub svc/proxy-public 8443:443"


def test_stack_output_is_the_hub_url_once_the_load_balancer_has_an_address():
    config, secret_keys = aks_stack()
    url = build(config, secret_keys, mocks=LoadBalancerMocks).url
    assert url == "https://notebooks.example.com/ (its DNS name must point at 20.1.2.3)"
    config["jupyterhub"]["https"] = {"type": "selfSigned"}
    config["jupyterhub"]["auth"]["callbackUrl"] = "https://localhost/hub/oauth_callback"
    assert build(config, secret_keys, mocks=LoadBalancerMocks).url == "https://20.1.2.3:443"


def test_stack_output_says_when_the_load_balancer_has_no_address_yet():
    config, secret_keys = aks_stack()
    url = build(config, secret_keys).url
    assert url == "(no LoadBalancer address yet) kubectl port-forward -n jupyterhub svc/proxy-public 8443:443"


# --- RBAC -------------------------------------------------------------------------------------------


def test_hub_may_do_exactly_what_kubespawner_needs_in_its_namespace():
    built = build(example_stack("dev"))
    objects = built.objects()
    kinds = {o["kind"] for o in objects.values()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}, "nothing cluster-wide"
    (role,) = [o for o in objects.values() if o["kind"] == "Role"]
    assert role["metadata"]["namespace"] == NS
    granted = {(r, v, tuple(rule.get("resourceNames", ()))) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    expected = {(r, v, ()) for r in ("pods", "persistentvolumeclaims", "secrets", "services") for v in ("get", "watch", "list", "create", "delete")}
    expected |= {("events", v, ()) for v in ("get", "watch", "list")}
    # Its own ServiceAccount, the owner of user pods, and no other.
    expected |= {("serviceaccounts", "get", ("hub",))}
    assert granted == expected
    assert "*" not in json.dumps(role["rules"])
    (binding,) = [o for o in objects.values() if o["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": NS}]


def test_only_the_hub_pod_gets_a_kubernetes_api_token():
    objects = build(example_stack("dev")).objects()
    assert objects["jupyterhub-hub"]["spec"]["template"]["spec"]["serviceAccountName"] == "hub"
    assert objects["jupyterhub-proxy"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    spawner = build(example_stack("dev")).document()["traits"]["KubeSpawner"]
    assert spawner["automount_service_account_token"] is False, "user pods"


# --- secrets ----------------------------------------------------------------------------------------


def test_proxy_token_and_cookie_secret_are_generated_as_pulumi_secrets_and_kept():
    built = build(example_stack("dev"))
    raw = built.raw("jupyterhub-secret")
    assert is_secret(raw["data"]), "the Secret must be created from Pulumi secrets"
    assert "stringData" not in raw
    values = {k: base64.b64decode(v).decode() for k, v in reveal(raw["data"]).items()}
    assert set(values) == {"proxy-token", "cookie-secret"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in values.values()), "256 random bits each, hex"
    assert values["proxy-token"] != values["cookie-secret"]
    # A new draw each run; Pulumi keeps the first one for as long as the Secret exists. The
    # provider stores a Secret's inputs as `data`, so `data` is what must be ignored.
    assert built.options["jupyterhub-secret"].ignore_changes == ["data"]


def test_generated_secrets_appear_in_no_other_object():
    built = build(example_stack("dev"))
    values = [base64.b64decode(v).decode() for v in reveal(built.raw("jupyterhub-secret")["data"]).values()]
    for name in built.options:
        if name != "jupyterhub-secret":
            text = json.dumps(built.deployment.named(name).inputs, default=str)
            assert not any(v in text for v in values), f"{name} holds a generated secret"


def test_hub_and_proxy_read_the_secrets_from_the_secret():
    objects = build(example_stack("dev")).objects()
    hub_env = {e["name"]: e for e in objects["jupyterhub-hub"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    proxy_env = {e["name"]: e for e in objects["jupyterhub-proxy"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    token = {"valueFrom": {"secretKeyRef": {"name": "hub", "key": "proxy-token"}}}
    assert hub_env["CONFIGPROXY_AUTH_TOKEN"] == {"name": "CONFIGPROXY_AUTH_TOKEN", **token}
    assert proxy_env["CONFIGPROXY_AUTH_TOKEN"] == {"name": "CONFIGPROXY_AUTH_TOKEN", **token}
    assert hub_env["JPY_COOKIE_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "hub", "key": "cookie-secret"}}
    assert "OAUTH_CLIENT_SECRET" not in hub_env, "native auth has no client secret"


def test_secret_changes_roll_hub_and_proxy_and_the_checksum_is_no_secret():
    built = build(example_stack("dev"))
    for name in ("jupyterhub-hub", "jupyterhub-proxy"):
        annotations = built.raw(name)["spec"]["template"]["metadata"]["annotations"]
        assert not is_secret(annotations["checksum/secrets"]), f"{name}: the checksum would hide the Deployment's diff"
        assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/secrets"])


def test_oauth_client_secret_goes_into_a_secret_and_never_into_the_config_map():
    config, secret_keys = aks_stack()
    built = build(config, secret_keys)
    raw = built.raw("jupyterhub-oauth")
    assert is_secret(raw["data"])
    assert base64.b64decode(reveal(raw["data"])["client-secret"]).decode() == "client-secret-for-tests"
    assert "client-secret-for-tests" not in json.dumps(built.objects()["jupyterhub-config"])
    env = {e["name"]: e for e in built.objects()["jupyterhub-hub"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OAUTH_CLIENT_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "hub-oauth", "key": "client-secret"}}
    assert built.document()["secretEnv"]["AzureAdOAuthenticator"] == {"client_secret": "OAUTH_CLIENT_SECRET"}


# --- profiles and where they run ---------------------------------------------------------------------


def test_each_profile_is_on_the_form_with_its_image_and_resources():
    document = build(example_stack("dev")).document()
    cpu = profile(document, "TensorFlow (CPU)")
    assert cpu["slug"] == "tensorflow-cpu" and cpu["default"] is True
    image = parse(example_stack("dev")).jupyterhub.profiles[0].image  # the local build (images.local)
    assert f"Image {image};" in cpu["description"]
    assert "CPU 500m guaranteed, limit 2" in cpu["description"]
    overrides = cpu["kubespawner_override"]
    assert overrides["image"] == image
    assert (overrides["cpu_guarantee"], overrides["cpu_limit"]) == (0.5, 2.0)
    assert (overrides["mem_guarantee"], overrides["mem_limit"]) == (1024**3, 4 * 1024**3)
    assert "extra_resource_limits" not in overrides


def test_gpu_profile_asks_for_gpus_and_gets_the_gpu_pool_placement_from_the_cluster():
    config = existing()
    config["jupyterhub"]["profiles"][1].pop("gpuChoices")  # one count: the first pool that has it
    document = build(config).document()
    overrides = profile(document, "TensorFlow (GPU)")["kubespawner_override"]
    assert overrides["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    # The first pool with enough GPUs per node, selected by that pool's own labels on an existing cluster.
    assert overrides["node_selector"] == {"agentpool": "t4"}
    assert overrides["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]


def test_a_profile_with_more_gpus_goes_to_a_pool_that_has_them():
    config = existing()
    config["jupyterhub"]["profiles"].append(
        {"name": "Four A100", "image": "quay.io/jupyter/tensorflow-notebook:cuda-2025-12-01", "gpus": 4}
    )
    overrides = profile(build(config).document(), "Four A100")["kubespawner_override"]
    assert overrides["extra_resource_limits"] == {"nvidia.com/gpu": "4"}
    assert overrides["node_selector"] == {"agentpool": "a100"}
    assert overrides["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}]


def test_a_profile_with_its_own_start_timeout_gives_it_to_kubespawner_and_the_others_keep_the_hubs():
    document = build(example_stack("dev")).document()
    assert profile(document, "TensorFlow (GPU)")["kubespawner_override"]["start_timeout"] == 600
    assert "start_timeout" not in profile(document, "TensorFlow (CPU)")["kubespawner_override"]
    assert document["traits"]["KubeSpawner"]["start_timeout"] == 900


def test_cpu_profiles_go_to_the_user_pool_and_tolerate_its_taint():
    overrides = profile(build(existing()).document(), "TensorFlow (CPU)")["kubespawner_override"]
    assert overrides["node_selector"] == {"agentpool": "users"}
    assert overrides["tolerations"] == [
        {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user", "effect": "NoSchedule"}
    ]


def test_hub_and_proxy_pods_stay_off_gpu_nodes():
    objects = build(existing()).objects()
    for name in ("jupyterhub-hub", "jupyterhub-proxy"):
        spec = objects[name]["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"agentpool": "users"}, name


# --- authentication ---------------------------------------------------------------------------------


# The OAuth cases' callbacks are on this hub's address.
HUB_EXAMPLE_HTTPS = {"type": "selfSigned", "hosts": ["hub.example.com"]}
AUTH_CASES = {
    "dummy": ({"type": "dummy"}, "jupyterhub.auth.DummyAuthenticator", True),
    "native": ({"type": "native", "adminUsers": ["admin"]}, "guarded_native.GuardedNativeAuthenticator", True),
    "native, allowed users only": ({"type": "native", "allowedUsers": ["ana"]}, "guarded_native.GuardedNativeAuthenticator", False),
    "github": (
        {"type": "github", "clientId": "gh", "clientSecret": "s3cret", "callbackUrl": "https://hub.example.com/hub/oauth_callback",
         "allowedOrganizations": ["example-ml"], "adminUsers": ["octocat"]},
        "oauthenticator.github.GitHubOAuthenticator",
        False,
    ),
    "azuread": (
        {"type": "azuread", "clientId": "az", "clientSecret": "s3cret", "callbackUrl": "https://hub.example.com/hub/oauth_callback",
         "tenantId": "tenant"},
        "oauthenticator.azuread.AzureAdOAuthenticator",
        True,
    ),
}


@pytest.mark.parametrize("case", AUTH_CASES)
def test_authenticator_and_who_may_log_in(case):
    auth, cls, allow_all = AUTH_CASES[case]
    secret_keys = ("jupyterhub",) if "clientSecret" in auth else ()
    traits = build(dev(auth=auth, https=HUB_EXAMPLE_HTTPS), secret_keys).document()["traits"]
    assert traits["JupyterHub"]["authenticator_class"] == cls
    assert traits["Authenticator"]["allow_all"] is allow_all
    assert traits["Authenticator"]["admin_users"] == sorted(auth.get("adminUsers", []))
    assert traits["Authenticator"]["allowed_users"] == sorted(auth.get("allowedUsers", []))


def test_github_oauth_settings_and_organizations():
    auth = AUTH_CASES["github"][0]
    traits = build(dev(auth=auth, https=HUB_EXAMPLE_HTTPS), ("jupyterhub",)).document()["traits"]
    assert traits["GitHubOAuthenticator"] == {
        "client_id": "gh",
        "oauth_callback_url": "https://hub.example.com/hub/oauth_callback",
        "allowed_organizations": ["example-ml"],
    }


def test_native_signups_wait_for_an_admin_and_sign_in_is_guarded_by_default():
    document = build(example_stack("dev")).document()
    assert document["traits"]["GuardedNativeAuthenticator"] == {
        "open_signup": False,
        "allowed_failed_logins": 3,
        "seconds_before_next_try": 600,
        "minimum_password_length": 10,
        "check_common_password": True,
        "first_admin": "admin",
    }
    assert document["secretEnv"]["GuardedNativeAuthenticator"] == {"first_admin_password": "MLPLATFORM_FIRST_ADMIN_PASSWORD"}


def test_native_sign_in_settings_reach_the_authenticator():
    auth = {"type": "native", "adminUsers": ["boss", "deputy"], "allowedFailedLogins": 5, "lockoutSeconds": 60,
            "minimumPasswordLength": 12, "checkCommonPassword": False}
    traits = build(dev(auth=auth)).document()["traits"]["GuardedNativeAuthenticator"]
    assert (traits["allowed_failed_logins"], traits["seconds_before_next_try"]) == (5, 60)
    assert (traits["minimum_password_length"], traits["check_common_password"]) == (12, False)
    assert traits["first_admin"] == "boss", "the first of adminUsers gets the generated password"


def test_the_first_admins_password_is_generated_kept_and_read_by_the_hub_only():
    built = build(example_stack("dev"))
    raw = built.raw("jupyterhub-admin")
    assert is_secret(raw["data"]), "the password must be created as a Pulumi secret"
    password = base64.b64decode(reveal(raw["data"])["password"]).decode()
    assert len(password) >= 32
    assert built.options["jupyterhub-admin"].ignore_changes == ["data"], "generated once, then kept"
    assert built.objects()["jupyterhub-admin"]["metadata"]["name"] == "hub-admin"
    hub_env = {e["name"]: e for e in built.objects()["jupyterhub-hub"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert hub_env["MLPLATFORM_FIRST_ADMIN_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "hub-admin", "key": "password"}}
    for name, manifest in built.objects().items():
        if name != "jupyterhub-admin":
            assert password not in json.dumps(manifest), f"{name} holds the admin's password"


def test_the_operator_reads_the_first_admins_password_as_a_secret_stack_output():
    deployment = run_program(example_stack("dev"))
    raw = deployment.named("jupyterhub-admin").inputs
    assert deployment.outputs["jupyterhubAdminPassword"] == base64.b64decode(reveal(raw["data"])["password"]).decode()
    hub = build(example_stack("dev")).hub
    assert hub is not None and hub.admin_password is not None
    assert pulumi.runtime.sync_await._sync_await(hub.admin_password.is_secret()), "the output must stay a secret"


@pytest.mark.parametrize(
    "auth",
    [{"type": "native"}, {"type": "dummy"}, AUTH_CASES["github"][0]],
    ids=["native without admins", "dummy", "github"],
)
def test_no_admin_password_without_native_admins(auth):
    secret_keys = ("jupyterhub",) if "clientSecret" in auth else ()
    built = build(dev(auth=auth, https=HUB_EXAMPLE_HTTPS), secret_keys)
    assert "jupyterhub-admin" not in built.options
    assert built.hub is not None and built.hub.admin_password is None


def test_spawn_limits_and_timeouts_default_to_zero_to_jupyterhubs_or_stricter():
    traits = build(example_stack("dev")).document()["traits"]
    assert traits["JupyterHub"]["concurrent_spawn_limit"] == 64
    assert traits["JupyterHub"]["active_server_limit"] == 0
    assert traits["KubeSpawner"]["consecutive_failure_limit"] == 5
    assert (traits["KubeSpawner"]["start_timeout"], traits["KubeSpawner"]["http_timeout"]) == (900, 30)


def test_spawn_limits_and_timeouts_are_configurable():
    limits = {"concurrentSpawnLimit": 8, "activeServerLimit": 20, "consecutiveFailureLimit": 3,
              "startTimeoutSeconds": 700, "httpTimeoutSeconds": 45}
    traits = build(dev(limits=limits)).document()["traits"]
    assert (traits["JupyterHub"]["concurrent_spawn_limit"], traits["JupyterHub"]["active_server_limit"]) == (8, 20)
    assert traits["KubeSpawner"]["consecutive_failure_limit"] == 3
    assert (traits["KubeSpawner"]["start_timeout"], traits["KubeSpawner"]["http_timeout"]) == (700, 45)


# --- storage and culling -----------------------------------------------------------------------------


def test_each_user_gets_a_volume_of_the_configured_size_and_class():
    spawner = build(existing(storage={"size": "50Gi", "storageClass": "premium-rwo"})).document()["traits"]["KubeSpawner"]
    assert spawner["storage_pvc_ensure"] is True
    assert (spawner["storage_capacity"], spawner["storage_class"]) == ("50Gi", "premium-rwo")
    assert spawner["volumes"] == [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
    assert spawner["volume_mounts"] == [{"name": "home", "mountPath": "/home/jovyan"}]


def test_on_the_simulated_cluster_homes_are_scratch_volumes():
    # Nothing provisions volumes there; a claim would keep user pods from being scheduled.
    spawner = build(example_stack("kwok")).document()["traits"]["KubeSpawner"]
    assert spawner["storage_pvc_ensure"] is False
    assert spawner["volumes"] == [{"name": "home", "emptyDir": {}}]


def test_idle_culler_is_a_hub_managed_service_with_its_own_role():
    document = build(one_policy(cullIdleSeconds=1800)).document()
    (service,) = document["managedServices"]
    assert service == {"name": "jupyterhub-idle-culler", "module": "jupyterhub_idle_culler", "args": ["--timeout=1800", "--cull-every=600"]}
    (role,) = document["traits"]["JupyterHub"]["load_roles"]
    assert role["services"] == ["jupyterhub-idle-culler"]
    assert role["scopes"] == ["list:users", "read:users:activity", "read:servers", "delete:servers"]


def test_with_the_default_timeout_servers_report_every_five_minutes_and_routes_are_checked_every_minute():
    """A restarted proxy has no routes until the hub's next check (`last_activity_interval`):
    every 60 s, as Zero to JupyterHub, not JupyterHub's default 300 s."""
    document = build(one_policy(cullIdleSeconds=3600)).document()
    assert document["traits"]["JupyterHub"]["last_activity_interval"] == 60
    assert document["traits"]["KubeSpawner"]["environment"] == {"JUPYTERHUB_ACTIVITY_INTERVAL": "300"}


@pytest.mark.parametrize("timeout", [0, 3600, 90000])
def test_routes_are_checked_every_minute_with_or_without_culling(timeout):
    document = build(one_policy(cullIdleSeconds=timeout)).document()
    assert document["traits"]["JupyterHub"]["last_activity_interval"] == 60


def test_a_short_timeout_is_checked_often_and_hears_of_activity_in_time():
    """Activity reported every 300 s and a check every 600 s would cull a busy server after 60 s,
    and an idle one only after ten minutes."""
    document = build(one_policy(cullIdleSeconds=60)).document()
    (service,) = document["managedServices"]
    assert service["args"] == ["--timeout=60", "--cull-every=30"], service
    assert document["traits"]["JupyterHub"]["last_activity_interval"] == 20
    assert document["traits"]["KubeSpawner"]["environment"] == {"JUPYTERHUB_ACTIVITY_INTERVAL": "20"}


def test_culling_defaults_to_an_hour():
    config = one_policy()
    config["jupyterhub"].pop("cullIdleSeconds", None)
    (service,) = build(config).document()["managedServices"]
    assert "--timeout=3600" in service["args"]


def test_culling_off_removes_the_culler_and_its_role():
    document = build(one_policy(cullIdleSeconds=0)).document()
    assert document["managedServices"] == []
    assert "load_roles" not in document["traits"]["JupyterHub"]


GPU_IMAGE = "quay.io/jupyter/tensorflow-notebook:cuda-2025-12-01"


def test_gpu_count_choices_are_kubespawner_profile_options_that_set_the_gpu_limit():
    document = build(typed({"name": "GPU", "image": GPU_IMAGE, "gpus": 2, "gpuChoices": [1, 2, 4]})).document()
    gpu = profile(document, "GPU")
    choices = gpu["profile_options"]["gpus"]["choices"]
    assert list(choices) == ["1", "2", "4"]
    assert [c["default"] for c in choices.values()] == [False, True, False], "gpus is the preselected count"
    assert choices["4"]["kubespawner_override"] == {"extra_resource_limits": {"nvidia.com/gpu": "4"}}
    # Without types: the pool that holds the largest count, so that every choice fits.
    assert gpu["kubespawner_override"]["node_selector"] == {"agentpool": "a100"}
    assert "1, 2 or 4 NVIDIA GPUs" in gpu["description"]


def test_a_gpu_type_choice_places_the_server_on_the_pools_of_that_type():
    document = build(typed({"name": "GPU", "image": GPU_IMAGE, "gpus": 1, "gpuChoices": [1, 2], "gpuTypes": ["T4", "A100"]})).document()
    gpu = profile(document, "GPU")
    assert not {"node_selector", "node_affinity_required", "tolerations"} & set(gpu["kubespawner_override"]), (
        "the profile itself must not place the server: the chosen type does"
    )
    types = gpu["profile_options"]["gpu-type"]["choices"]
    assert [name for name, c in types.items() if c["default"]] == ["T4"], "the first type is preselected"
    assert types["A100"]["kubespawner_override"] == {
        "node_selector": {"agentpool": "a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
    }
    # Two T4 pools: either may take the server (terms are ORed); the scheduler finds the count.
    t4 = types["T4"]["kubespawner_override"]
    assert t4["node_affinity_required"] == [
        {"matchExpressions": [{"key": "agentpool", "operator": "In", "values": ["t4"]}]},
        {"matchExpressions": [{"key": "agentpool", "operator": "In", "values": ["t4x2"]}]},
    ]
    assert t4["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert "1 or 2 NVIDIA T4 or A100 GPUs" in gpu["description"]


def test_group_limited_profiles_and_the_groups_go_to_the_hub():
    config = typed({"name": "GPU", "image": GPU_IMAGE, "gpus": 1, "groups": ["gpu-users", "research"]},
                   groups={"gpu-users": ["carol", "alice"], "research": ["bob"]})
    document = build(config).document()
    assert document["profileGroups"] == {"gpu": ["gpu-users", "research"]}
    assert document["traits"]["JupyterHub"]["load_groups"] == {
        "gpu-users": {"users": ["alice", "carol"]}, "research": {"users": ["bob"]}
    }


def test_with_groups_from_azure_ad_sign_in_oauthenticator_manages_them():
    config, secrets = aks_stack()
    config["jupyterhub"]["groupsFromSignIn"] = True
    config["jupyterhub"]["profiles"][-1]["groups"] = ["0b3c2f4e-5a7d-4c4b-9f1e-2d6a8b9c0d1e"]
    traits = build(config, secrets).document()["traits"]
    assert traits["AzureAdOAuthenticator"]["manage_groups"] is True
    assert traits["AzureAdOAuthenticator"]["auth_state_groups_key"] == "user.groups"
    assert "load_groups" not in traits["JupyterHub"], "JupyterHub refuses load_groups with manage_groups"


def test_each_culling_policy_gets_a_culler_that_sees_only_its_profiles():
    document = build(dev(cullIdleSeconds=3600)).document()  # the dev stack's GPU profile: 1200 s idle, 8 h
    by_name = {s["name"]: s for s in document["managedServices"]}
    assert by_name == {
        "jupyterhub-idle-culler-idle-3600s": {
            "name": "jupyterhub-idle-culler-idle-3600s",
            "script": "cull_by_profile.py",
            "args": ["--profiles=tensorflow-cpu,tensorflow-cpu-research", "--", "--timeout=3600", "--cull-every=600"],
        },
        "jupyterhub-idle-culler-idle-1200s-age-28800s": {
            "name": "jupyterhub-idle-culler-idle-1200s-age-28800s",
            "script": "cull_by_profile.py",
            "args": ["--profiles=tensorflow-gpu", "--", "--timeout=1200", "--cull-every=600", "--max-age=28800"],
        },
    }
    (role,) = document["traits"]["JupyterHub"]["load_roles"]
    assert sorted(role["services"]) == sorted(by_name)
    # The view finds a server's profile by its user's groups when the request named none.
    assert "read:users:groups" in role["scopes"]
    assert not {s for s in role["scopes"] if s.startswith(("admin", "delete:users", "servers"))}


def test_a_profile_culled_by_age_alone_and_one_never_culled():
    config = one_policy(cullIdleSeconds=0)
    config["jupyterhub"]["profiles"][1].update(maxAgeSeconds=7200)
    (service,) = build(config).document()["managedServices"]
    # A server idle for its max age is that old too: the max age is the timeout as well.
    assert service["args"] == ["--profiles=tensorflow-gpu", "--", "--timeout=7200", "--cull-every=600", "--max-age=7200"]


def test_the_config_map_ships_the_profile_rules_and_the_cullers_view():
    data = build(example_stack("dev")).objects()["jupyterhub-config"]["data"]
    for shipped in hub_config.SHIPPED_FILES:
        assert data[shipped.name] == shipped.read_text(), f"{shipped.name} is not in the ConfigMap as written"


# --- network policies --------------------------------------------------------------------------------


@dataclass
class Peer:
    """A pod (namespace and labels) or an address outside the cluster (namespace None)."""

    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"this evaluator knows matchLabels only: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


def _peer_matches(rule_peer: dict[str, Any], peer: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        return address in ipaddress.ip_network(block["cidr"]) and not any(
            address in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if peer.namespace is None:
        return False
    if "namespaceSelector" in rule_peer:
        if not _selects(rule_peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer.namespace}):
            return False
    elif peer.namespace != policy_namespace:
        return False
    return _selects(rule_peer.get("podSelector", {}), peer.labels)


def allowed(policies: list[dict[str, Any]], source: Peer, destination: Peer, port: int, protocol: str = "TCP") -> bool:
    """Whether NetworkPolicies allow `source` to open `port` on `destination` (both directions checked)."""

    def admits(pod: Peer, other: Peer, direction: str) -> bool:
        key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        governing = [
            p for p in policies
            if pod.namespace == p["metadata"]["namespace"]
            and direction in p["spec"]["policyTypes"]
            and _selects(p["spec"]["podSelector"], pod.labels)
        ]
        if not governing:
            return True
        return any(
            (peers not in rule or any(_peer_matches(r, other, p["metadata"]["namespace"]) for r in rule[peers]))
            and ("ports" not in rule or any(q["port"] == port and q.get("protocol", "TCP") == protocol for q in rule["ports"]))
            for p in governing
            for rule in p["spec"].get(key, [])
        )

    return (source.namespace is None or admits(source, destination, "Egress")) and (
        destination.namespace is None or admits(destination, source, "Ingress")
    )


USER = Peer("10.244.1.10", NS, {**app_labels("jupyterhub", "singleuser-server"), "app.kubernetes.io/managed-by": "kubespawner"})
OTHER_USER = Peer("10.244.2.20", NS, USER.labels)
HUB = Peer("10.244.0.5", NS, app_labels("jupyterhub", "hub"))
PROXY = Peer("10.244.0.6", NS, app_labels("jupyterhub", "proxy"))
DNS = Peer("10.244.0.2", "kube-system", {"k8s-app": "kube-dns"})
OTHER_POD = Peer("10.244.3.30", "mnist", {"app": "tensorboard"})
INTERNET = Peer("140.82.112.3")
BROWSER = Peer("203.0.113.50")
# The API server as pods see it: the `kubernetes` Service address (kubeadm/kind, AKS, EKS) and
# typical endpoints (a control-plane node, a link-local konnectivity address, the local cluster's
# advertised address in TEST-NET-1).
API_SERVER = [Peer("10.96.0.1"), Peer("10.0.0.1"), Peer("172.20.0.1"), Peer("192.168.49.2"), Peer("100.64.0.1"),
              Peer("192.0.2.2")]
CLOUD_METADATA = Peer("169.254.169.254")


@pytest.fixture(scope="module")
def policies():
    return [o for o in build(example_stack("dev")).objects().values() if o["kind"] == "NetworkPolicy"]


def test_user_servers_reach_the_hub_api_dns_and_the_internet(policies):
    assert allowed(policies, USER, HUB, 8081)
    assert allowed(policies, USER, DNS, 53, "UDP") and allowed(policies, USER, DNS, 53, "TCP")
    assert allowed(policies, USER, INTERNET, 443)


def test_user_servers_cannot_reach_the_kubernetes_api_other_users_or_private_addresses(policies):
    for api in API_SERVER:
        assert not allowed(policies, USER, api, 443), f"user pod reaches the API server at {api.ip}"
        assert not allowed(policies, USER, api, 6443), f"user pod reaches the API server at {api.ip}"
    assert not allowed(policies, USER, OTHER_USER, 8888), "user pods reach each other"
    assert not allowed(policies, USER, OTHER_POD, 6006), "user pods reach other workloads"
    assert not allowed(policies, USER, CLOUD_METADATA, 80), "user pods reach cloud metadata"
    assert not allowed(policies, USER, HUB, 8001), "only the hub's API port"
    assert not allowed(policies, USER, PROXY, 8000), "in the cluster, only the hub's API"
    assert not allowed(policies, USER, PROXY, 8001), "not the proxy's API"


# One address of each IPv4 range that is not globally reachable (IANA's special-purpose registry).
NOT_GLOBAL = ["0.1.2.3", "10.1.2.3", "100.100.0.1", "127.0.0.1", "169.254.1.1", "172.31.0.1", "192.0.0.1", "192.0.2.2",
              "192.168.1.1", "198.19.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.251", "240.0.0.1", "255.255.255.255"]


@pytest.mark.parametrize("address", NOT_GLOBAL)
def test_user_servers_reach_no_address_outside_the_internet(policies, address):
    ip = ipaddress.ip_address(address)
    assert ip.is_multicast or not ip.is_global, f"{address} is a global unicast address; the table is wrong"
    assert not allowed(policies, USER, Peer(address), 443), f"user pod reaches {address}, which is not the internet"


def test_only_the_hub_and_the_proxy_reach_user_servers(policies):
    assert allowed(policies, PROXY, USER, 8888)
    assert allowed(policies, HUB, USER, 8888)
    assert not allowed(policies, OTHER_USER, USER, 8888)
    assert not allowed(policies, OTHER_POD, USER, 8888)


def test_the_proxy_is_public_and_its_api_is_for_the_hub_only(policies):
    assert allowed(policies, BROWSER, PROXY, 8000)
    assert allowed(policies, HUB, PROXY, 8001)
    assert not allowed(policies, USER, PROXY, 8001)
    assert not allowed(policies, BROWSER, PROXY, 8001)


def test_the_hub_api_is_reached_by_proxy_users_and_itself_only(policies):
    assert allowed(policies, PROXY, HUB, 8081)
    assert allowed(policies, HUB, HUB, 8081), "the culler calls the hub through its Service"
    assert not allowed(policies, BROWSER, HUB, 8081)
    assert not allowed(policies, OTHER_POD, HUB, 8081)


def test_the_hub_reaches_the_kubernetes_api_at_its_endpoint_and_no_other_address(policies):
    (address,), port = MOCK_API_SERVER
    assert allowed(policies, HUB, Peer(address), port), "KubeSpawner calls the API server"
    assert not allowed(policies, HUB, Peer(address), 10250), "only the API server's port"
    assert allowed(policies, HUB, PROXY, 8001) and allowed(policies, HUB, USER, 8888) and allowed(policies, HUB, HUB, 8081)
    assert allowed(policies, HUB, DNS, 53, "UDP")
    for other in (INTERNET, CLOUD_METADATA, OTHER_POD, Peer("10.243.0.2")):
        assert not allowed(policies, HUB, other, 443), f"the hub (native sign-in) reaches {other.ip}"
        assert not allowed(policies, HUB, other, 80), f"the hub (native sign-in) reaches {other.ip}"


def test_with_oauth_the_hub_reaches_the_internet_and_no_private_address():
    config, secret_keys = aks_stack()
    aks_policies = [o for o in build(config, secret_keys).objects().values() if o["kind"] == "NetworkPolicy"]
    assert allowed(aks_policies, HUB, INTERNET, 443), "the OAuth provider's endpoints"
    assert allowed(aks_policies, HUB, Peer("10.0.0.1"), 443), "an API server that cannot be asked: its port anywhere"
    assert not allowed(aks_policies, HUB, CLOUD_METADATA, 80)
    assert not allowed(aks_policies, HUB, OTHER_POD, 6006)


def test_every_pod_of_the_hubs_namespace_is_denied_what_no_rule_allows(policies):
    (deny,) = [p for p in policies if p["metadata"]["name"] == "default-deny"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    stray = Peer("10.244.1.99", NS, {"app": "anything-else"})
    assert not allowed(policies, stray, INTERNET, 443) and not allowed(policies, USER, stray, 80)
    assert not allowed(policies, HUB, stray, 80)


def test_the_evaluator_denies_what_no_rule_allows():
    # Proves the policy tests above can fail: one policy that allows nothing.
    deny_all = {"metadata": {"namespace": NS}, "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []}}
    assert not allowed([deny_all], USER, INTERNET, 443)
    assert allowed([], USER, INTERNET, 443)


# --- Pod Security --------------------------------------------------------------------------------


def test_the_hubs_namespace_enforces_restricted_with_a_pinned_version():
    (namespace,) = [o for o in build(example_stack("dev")).objects().values() if o["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    version = "v" + ".".join(PINS["KUBERNETES_VERSION"].lstrip("v").split(".")[:2])
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", labels
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == version, labels


def test_user_servers_are_restricted_shaped():
    spawner = build(example_stack("dev")).document()["traits"]["KubeSpawner"]
    assert spawner["uid"] == 1000 and spawner["fs_gid"] == 100
    assert spawner["allow_privilege_escalation"] is False
    assert spawner["pod_security_context"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert spawner["container_security_context"] == {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
    for profile in spawner["profile_list"]:
        overrides = profile["kubespawner_override"]
        assert not {"uid", "pod_security_context", "container_security_context", "allow_privilege_escalation"} & set(overrides), \
            f"profile {profile['slug']} changes the security settings without podSecurity"


def test_only_a_profile_that_says_baseline_starts_as_root_and_the_namespace_then_enforces_baseline():
    config = example_stack("dev")
    config["jupyterhub"]["profiles"][0]["podSecurity"] = "baseline"
    built = build(config)
    spawner = built.document()["traits"]["KubeSpawner"]
    first, *others = spawner["profile_list"]
    assert first["kubespawner_override"]["uid"] == 0
    assert first["kubespawner_override"]["allow_privilege_escalation"] is True
    assert first["kubespawner_override"]["pod_security_context"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert all("uid" not in p["kubespawner_override"] for p in others), "the other profiles stay restricted"
    (namespace,) = [o for o in built.objects().values() if o["kind"] == "Namespace"]
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_a_profiles_pod_security_accepts_only_the_two_levels():
    config = example_stack("dev")
    config["jupyterhub"]["profiles"][0]["podSecurity"] = "privileged"
    with pytest.raises(ConfigError, match=r"jupyterhub\.profiles\[0\]\.podSecurity"):
        parse(config)
