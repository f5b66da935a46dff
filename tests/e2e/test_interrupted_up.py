"""An interrupted `make up` recovers without hand edits, and no secret is kept or shown in clear.

A stack of its own (the simulated one, with a GitHub OAuth client secret set as a Pulumi secret)
on a private kwok cluster, so the shared e2e stack is never left locked or half-updated. The hub
is held back by a ValidatingAdmissionPolicy that refuses its pods, so `pulumi up` waits on the
hub's Deployment for as long as the test wants (as it would on a hub that cannot start); the
policy goes before the next `make up`. The tests run in file order on the one stack:

1. the CLI SIGKILLed while the first `make up` waits on the hub: its lock and pending creates stay
   behind; the next `make up` clears them (bin/pulumi, stacks/interrupted.py) and succeeds;
2. no secret of the stack in clear or base64 in the state files, nor in what `up`, `preview
   --diff` and `stack output --json` print;
3. the stack destroyed, then Ctrl-C (SIGINT to make's process group, as a terminal sends it) while
   `make up` waits on the hub: Pulumi cancels cleanly, and the next `make up` succeeds.

After each recovery `pulumi preview --expect-no-changes` passes and the Secrets in the cluster
hold exactly what the state holds.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import jupyterhub, tls
from components.hub_config import document as hub
from leaks import leaks, secret_data
from local_stack import ROOT, LocalStack, missing_tools, wait_for
from vocab.tfjob_api import OPERATOR_NAMESPACE, WEBHOOK_SECRET

OAUTH_CLIENT_SECRET = "e2e-oauth-client-secret-5b0d8c1f2a7e4e93"
OAUTH_CONFIG = {
    "jupyterhub.auth.type": "github",
    "jupyterhub.auth.clientId": "e2e-client-id",
    "jupyterhub.auth.callbackUrl": "https://localhost/hub/oauth_callback",
}
HOLD = "e2e-hold-hub"
HOLD_MESSAGE = "the e2e test holds the hub back"
# Refuses every pod of the hub (the Deployment's template label), nothing else.
HOLD_POLICY = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": HOLD},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                ]
            },
            "validations": [
                {
                    "expression": "!has(object.metadata.labels) || "
                    "!('app.kubernetes.io/component' in object.metadata.labels) || "
                    f"object.metadata.labels['app.kubernetes.io/component'] != '{hub.HUB_COMPONENT}'",
                    "message": HOLD_MESSAGE,
                }
            ],
        },
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": HOLD},
        "spec": {"policyName": HOLD, "validationActions": ["Deny"]},
    },
]
HUB_NAMESPACE = "jupyterhub"  # the simulated stack's jupyterhub.namespace (the default)
HUB_DEPLOYMENT = hub.HUB_SERVICE
HUB_DEPLOYMENT_URN = "$kubernetes:apps/v1:Deployment::jupyterhub-hub"


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack's cluster, up, with its config written; nothing deployed yet."""
    missing = missing_tools()
    if missing:
        pytest.fail(f"tools not built ({', '.join(missing)}): run `tools/build.sh pulumi kube operator` once")
    stack = LocalStack(tmp_path_factory.mktemp("interrupt"), stack="interrupt", cluster_name="mlplatform-e2e-interrupt")
    stack.create_stack()
    for path, value in OAUTH_CONFIG.items():
        stack.set_config(path, value)
    stack.pulumi("config", "set", "--secret", "--path", "jupyterhub.auth.clientSecret", OAUTH_CLIENT_SECRET)
    try:
        stack.run([str(ROOT / "bin" / "cluster"), "up"])
        yield stack
    finally:
        stack.make("down", check=False)
        kill_orphans(stack)
        stack.force_cleanup()


# --- helpers -----------------------------------------------------------------------------------


def hold_hub(stack: LocalStack, held_back: bool) -> None:
    documents = yaml.safe_dump_all(HOLD_POLICY)
    if held_back:
        stack.run([str(stack.kubectl_bin), "--kubeconfig", str(stack.kubeconfig), "apply", "-f", "-"], input_text=documents)
        # The policy takes effect once the API server has loaded it: a hub pod is refused then.
        probe = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default",
                 "labels": {"app.kubernetes.io/component": hub.HUB_COMPONENT}},
                 "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}
        wait_for(lambda: HOLD_MESSAGE in stack.run(
            [str(stack.kubectl_bin), "--kubeconfig", str(stack.kubeconfig), "create", "--dry-run=server", "-f", "-"],
            check=False, input_text=json.dumps(probe)).output, 60, "the policy holding the hub back")
    else:
        stack.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", HOLD, "--ignore-not-found")


def cli_pid(stack: LocalStack) -> int | None:
    """The pulumi CLI running `up` on this stack (bin/pulumi execs it, so it has the lock's pid)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if proc.name.isdigit() and os.path.basename(argv[0]) == "pulumi" and "up" in argv and str(stack.config_file) in argv:
            return int(proc.name)
    return None


def kill_orphans(stack: LocalStack) -> list[str]:
    """The processes of this stack's CLI once it is gone (a SIGKILLed CLI leaves its provider
    running, waiting on the hub, and its language host): its plugins, under its PULUMI_HOME, and
    the language host that runs with that PULUMI_HOME (the cluster's processes have it too, so
    nothing else goes by the environment), stopped by pid; what they were."""
    home = str(stack.base / "pulumi-home")
    killed = []
    for proc in Path("/proc").iterdir():
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
            environment = (proc / "environ").read_bytes().split(b"\0")
            language_host = Path(argv0).name.startswith("pulumi-language-") and f"PULUMI_HOME={home}".encode() in environment
            if proc.name.isdigit() and (argv0.startswith(home) or language_host) and cli_pid(stack) is None:
                os.kill(int(proc.name), signal.SIGKILL)
                killed.append(f"{proc.name} {argv0}")
        except (OSError, ProcessLookupError):
            continue
    return killed


def pending(stack: LocalStack, *, while_running: bool = False) -> list[dict[str, Any]]:
    """The checkpoint's pending operations. While an update runs, an export can catch the backend
    between two writes of the checkpoint ("failed to load checkpoint: EOF"): that look finds none."""
    exported = stack.pulumi("stack", "export", check=not while_running)
    if exported.returncode != 0:
        return []
    return list(json.loads(exported.stdout)["deployment"].get("pending_operations") or [])


def lock_files(stack: LocalStack) -> list[Path]:
    return sorted((stack.base / "state" / ".pulumi" / "locks").rglob("*.json"))


def start_make_up(stack: LocalStack, log: Path) -> subprocess.Popen[bytes]:
    """`make up` in a process group of its own, as a terminal's foreground job."""
    return subprocess.Popen(
        ["make", "--no-print-directory", "up", f"STACK={stack.stack}", f"CONFIG_FILE={stack.config_file}"],
        cwd=ROOT, env=stack.env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_until_waiting_on_hub(stack: LocalStack, make: subprocess.Popen[bytes], op: str, log: Path) -> None:
    def waiting() -> bool:
        assert make.poll() is None, f"make up ended ({make.returncode}) before it waited on the hub:\n{log.read_text()[-4000:]}"
        return any(p["type"] == op and p["resource"]["urn"].endswith(HUB_DEPLOYMENT_URN) for p in pending(stack, while_running=True))

    wait_for(waiting, 300, f"pulumi up {op} the hub's Deployment", interval=2)
    time.sleep(3)  # well inside the provider's wait on the Deployment


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # marks a secret value in Pulumi's state


def plain(value: Any) -> Any:
    """A value from `stack export --show-secrets`: a secret comes as {SECRET_SIG: ..., plaintext: JSON}."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return json.loads(value["plaintext"])
    return value


def secrets_in_state(stack: LocalStack) -> dict[str, dict[str, str]]:
    """The Secrets whose values the program gives (their `data` inputs), as the state holds them
    (decrypted; base64, as in the API). The operator's webhook Secret, created empty for the
    operator to fill, is not among them."""
    exported = json.loads(stack.pulumi("stack", "export", "--show-secrets").stdout)
    found = {}
    for resource in exported["deployment"]["resources"]:
        if resource["type"] == "kubernetes:core/v1:Secret" and plain((resource.get("inputs") or {}).get("data")):
            outputs = resource["outputs"]
            meta = plain(outputs["metadata"])
            found[f"{meta['namespace']}/{meta['name']}"] = plain(outputs["data"])
    return found


def assert_recovered(stack: LocalStack) -> None:
    preview = stack.pulumi("preview", "--expect-no-changes", check=False)
    assert preview.returncode == 0, f"the preview after the recovering `make up` plans changes:\n{preview.output[-4000:]}"
    in_state = secrets_in_state(stack)
    made = {f"{HUB_NAMESPACE}/{name}" for name in (jupyterhub.SECRET_NAME, jupyterhub.OAUTH_SECRET_NAME, hub.TLS_SECRET_NAME)}
    assert made <= set(in_state), f"Secrets in the state: {sorted(in_state)}"
    for name, data in in_state.items():
        namespace, secret = name.split("/")
        live = stack.kubectl_json("get", "secret", "-n", namespace, secret)["data"]
        assert live == data, f"Secret {name}: the cluster holds other values than Pulumi's state"
    assert not lock_files(stack), f"locks left: {lock_files(stack)}"
    assert not pending(stack), f"pending operations left: {pending(stack)}"


# --- 1. SIGKILL -----------------------------------------------------------------------------------


def test_killed_first_up_leaves_lock_and_pending_creates_then_next_make_up_recovers(held: LocalStack) -> None:
    hold_hub(held, True)
    log = held.base / "killed-up.log"
    make = start_make_up(held, log)
    try:
        wait_until_waiting_on_hub(held, make, "creating", log)
        pid = cli_pid(held)
        assert pid is not None, "no pulumi CLI found running `up`"
        os.kill(pid, signal.SIGKILL)
        assert make.wait(timeout=60) != 0
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    held.killed_output = log.read_text()  # type: ignore[attr-defined]
    # What a killed CLI leaves: its lock, and the hub's create pending in the checkpoint.
    locks = lock_files(held)
    assert len(locks) == 1 and json.loads(locks[0].read_text())["pid"] == pid, locks
    left = pending(held)
    assert any(p["type"] == "creating" and p["resource"]["urn"].endswith(HUB_DEPLOYMENT_URN) for p in left), left
    kill_orphans(held)
    hold_hub(held, False)

    held.up_run = held.make("up")
    said = held.up_run.stderr
    assert f"bin/pulumi: stack {held.stack} is locked by an update that is no longer running" in said, said[-3000:]
    assert "`bin/pulumi cancel --yes" in said, said[-3000:]
    assert "`bin/pulumi refresh --clear-pending-creates --yes" in said, said[-3000:]
    assert_recovered(held)
    hub_pods = held.kubectl_json("get", "pods", "-n", HUB_NAMESPACE, "-l", f"app.kubernetes.io/component={hub.HUB_COMPONENT}")
    assert [p["status"]["phase"] for p in hub_pods["items"]] == ["Running"], hub_pods["items"]


# --- 2. secrets ---------------------------------------------------------------------------------


def secret_values(held: LocalStack) -> dict[str, str]:
    """Every secret of the stack, by where it is: the values of each Secret in its namespaces (the
    program's, and what the operator writes into its webhook Secret) and the client key of the
    kubeconfig the stack deploys with (the provider's `kubeconfig`; an AKS stack's is an output)."""
    values = {}
    for secret in held.kubectl_json("get", "secrets", "--all-namespaces")["items"]:
        meta = secret["metadata"]
        for key, value in secret_data(secret.get("data") or {}).items():
            values[f"Secret {meta['namespace']}/{meta['name']} key {key}"] = value
    kubeconfig = yaml.safe_load(held.kubeconfig.read_text())
    for user in kubeconfig["users"]:
        if user["user"].get("client-key-data"):
            values[f"kubeconfig user {user['name']} client key"] = base64.b64decode(user["user"]["client-key-data"]).decode()
        elif user["user"].get("client-key"):
            values[f"kubeconfig user {user['name']} client key"] = Path(user["user"]["client-key"]).read_text()
    return values


def test_no_secret_in_clear_in_state_or_cli_output(held: LocalStack) -> None:
    # The operator (run here by `make up`) writes its webhook's key into the Secret the stack made.
    wait_for(lambda: (held.kubectl_json("get", "secret", "-n", OPERATOR_NAMESPACE, WEBHOOK_SECRET).get("data") or {}).get(tls.PRIVATE_KEY_KEY),
             120, "the operator's webhook key")
    values = secret_values(held)
    assert OAUTH_CLIENT_SECRET in values.values(), f"the OAuth client secret is in no Secret: {sorted(values)}"
    names = set(values)
    for secret, key in ((jupyterhub.SECRET_NAME, jupyterhub.PROXY_TOKEN_KEY), (jupyterhub.SECRET_NAME, jupyterhub.COOKIE_SECRET_KEY),
                        (jupyterhub.OAUTH_SECRET_NAME, jupyterhub.CLIENT_SECRET_KEY), (hub.TLS_SECRET_NAME, tls.PRIVATE_KEY_KEY),
                        (WEBHOOK_SECRET, tls.PRIVATE_KEY_KEY)):
        assert any(name.endswith(f"/{secret} key {key}") for name in names), f"no {secret} {key} among {sorted(names)}"
    assert any("client key" in name for name in names), sorted(names)
    places = {
        f"state file {path.relative_to(held.base)}": path.read_text(errors="replace")
        for path in (held.base / "state").rglob("*")
        if path.is_file()
    }
    assert any("checkpoint" in text for text in places.values()), "no checkpoint among the state files"
    places["the killed `make up`"] = held.killed_output  # type: ignore[attr-defined]
    places["the recovering `make up`"] = held.up_run.output  # type: ignore[union-attr]
    places["`pulumi preview --diff`"] = held.pulumi("preview", "--diff").output
    places["`pulumi stack output --json`"] = held.pulumi("stack", "output", "--json").output
    found = leaks(values, places)
    assert not found, "secrets in the clear:\n" + "\n".join(found)


# --- 3. SIGINT ----------------------------------------------------------------------------------


def test_ctrl_c_while_make_up_waits_on_the_hub_cancels_cleanly_and_next_make_up_succeeds(held: LocalStack) -> None:
    # Ctrl-C during a first `make up` too: an update that rolls the hub is no reliable wait, as
    # the provider can take the Recreate rollout's new ReplicaSet, still at 0 replicas, for done.
    held.pulumi("destroy", "--yes")
    hold_hub(held, True)
    log = held.base / "interrupted-up.log"
    make = start_make_up(held, log)
    try:
        wait_until_waiting_on_hub(held, make, "creating", log)
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        make.wait(timeout=120)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    said = log.read_text()
    assert make.returncode != 0, said[-3000:]
    assert "cancelling" in said and "Resource operation was cancelled" in said, said[-3000:]
    assert not lock_files(held), "a Ctrl-C left the stack locked"
    assert not pending(held), f"a Ctrl-C left pending operations: {pending(held)}"
    hold_hub(held, False)

    up = held.make("up")
    assert "bin/pulumi: stack" not in up.stderr, f"nothing should have been left to recover:\n{up.stderr[-3000:]}"
    assert_recovered(held)
    hub_pods = held.kubectl_json("get", "pods", "-n", HUB_NAMESPACE, "-l", f"app.kubernetes.io/component={hub.HUB_COMPONENT}")
    assert [p["status"]["phase"] for p in hub_pods["items"]] == ["Running"], hub_pods["items"]
