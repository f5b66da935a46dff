"""The platform's images (images/, `make images`) on the real node: imported under the names the
dev stack's pods give them, never pulled, and each one's main process starts there and answers.

`kubectl logs/exec/port-forward` do not reach a kubelet inside its namespace yet, so servers are
checked from a busybox client pod on the node, whose termination message carries what it got;
a one-shot command writes its own. A server's pod is first waited for Ready (its readiness probe,
run by the kubelet), and a container that fails hands its last log lines over in its
termination message (FallbackToLogsOnError), which the assertion shows.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from components.hub_config import document as hub
from vocab.tfjob_api import OPERATOR_NAMESPACE
from components.training_operator import HEALTH_PORT
from images import pins
from images.build import built
from images.recipe import load, names
from program import example_stack, run_program
from real_cluster import RealCluster, pod, wait_for
from stacks import parse
from cluster.localcluster.containerd import Containerd
from cluster.localcluster import imagestore
from cluster.localcluster.images import digests, import_platform_images
from cluster.localcluster.settings import tools

SMALL = {"requests": {"cpu": "50m", "memory": "64Mi"}}  # the node's 2 cores are everyone's
# Waiting reasons that no wait cures: the image is not on the node, or the container keeps dying.
STUCK = ("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerError",
         "CreateContainerConfigError", "InvalidImageName")


@cache
def dev_stack() -> dict[str, dict]:
    """The dev stack's Kubernetes objects (Pulumi mocks), by Pulumi resource name."""
    return {r.name: integral(r.manifest()) for r in run_program(example_stack("dev")).kubernetes_objects()}


def named(kind: str, name: str) -> dict:
    return next(o for o in dev_stack().values() if o["kind"] == kind and o["metadata"]["name"] == name)


def integral(value: Any) -> Any:
    """`value` with the mocks' whole floats (ports, ids) as the integers the API server wants."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral(v) for v in value]
    return value


def on_real_node(spec: dict) -> dict:
    """A pod spec placed on the real node (its label and taint) instead of the stack's pools."""
    placement = pod("x", "")["spec"]
    spec = {k: v for k, v in spec.items() if k not in ("nodeSelector", "tolerations", "affinity")}
    return {**spec, "nodeSelector": placement["nodeSelector"], "tolerations": placement["tolerations"]}


def image_pod(pod_name: str, image: str, **container: Any) -> dict:
    """A pod of one container from a local build (`mlplatform/<name>:<tag>`, as the stack names
    it), never pulled, with small requests."""
    manifest = pod(pod_name, "")
    manifest["spec"]["containers"] = [{
        "name": "main", "image": image, "imagePullPolicy": "Never", "resources": SMALL,
        "terminationMessagePolicy": "FallbackToLogsOnError", **container}]
    manifest["spec"]["securityContext"] = {"runAsNonRoot": True}
    return manifest


def local(name: str) -> str:
    return load(name).reference()


def status(real: RealCluster, name: str, namespace: str = "default") -> dict:
    return real.get("pod", name, "-n", namespace)["status"]


def stuck(pod_status: dict) -> str | None:
    """Why a pod will never get Ready or finish, if it will not."""
    for container in pod_status.get("initContainerStatuses", []) + pod_status.get("containerStatuses", []):
        waiting = container.get("state", {}).get("waiting", {})
        if waiting.get("reason") in STUCK:
            return f"{container['name']}: {waiting['reason']}: {waiting.get('message', '')}"
        last = container.get("lastState", {}).get("terminated") or container.get("state", {}).get("terminated")
        if last and last.get("exitCode") and pod_status.get("phase") != "Succeeded":
            return f"{container['name']} exited {last['exitCode']}; its last lines:\n{last.get('message', '')}"
    return None


def ready(real: RealCluster, name: str, timeout: float, namespace: str = "default") -> dict:
    """The pod's status once it is Ready; fails at once, saying why, when it never will be."""
    def check() -> dict | None:
        current = status(real, name, namespace)
        why = stuck(current)
        if why:
            raise AssertionError(f"pod {namespace}/{name} will not get Ready: {why}")
        conditions = {c["type"]: c["status"] for c in current.get("conditions", [])}
        return current if conditions.get("Ready") == "True" else None
    return wait_for(check, timeout, f"pod {namespace}/{name} Ready", interval=2)


def finished(real: RealCluster, name: str, timeout: float) -> dict:
    """The status of a pod that ran to its end (Succeeded or Failed)."""
    return wait_for(lambda: (s := status(real, name))["phase"] in ("Succeeded", "Failed") and s, timeout,
                    f"pod {name} finished", interval=2)


def message(container_status: dict) -> str:
    return container_status["state"]["terminated"].get("message", "")


ANSWER_SECONDS = 4  # how long a server has to answer one request of the client pod


def fetch(real: RealCluster, name: str, targets: dict[str, tuple[str, int, str]], limit: int = 700) -> dict[str, str]:
    """What a busybox pod on the node gets for each HTTP GET (label -> (ip, port, path)): the
    status line, headers and the start of the body. Debian's static busybox wget crashes, so the
    requests are written to nc by hand; nc's input stays open a while after the request, since
    Tornado and Node drop a request whose client has half-closed the connection before they answer."""
    steps = [f'r=$({{ printf "GET {path} HTTP/1.0\\r\\nHost: {ip}:{port}\\r\\n\\r\\n"; sleep {ANSWER_SECONDS}; }} | '
             f'nc -w 10 {ip} {port} 2>&1 | '
             f'head -c {limit}); echo "=={label}=="; echo "$r"' for label, (ip, port, path) in targets.items()]
    real.apply(pod(name, "{ " + "; ".join(steps) + "; } > /dev/termination-log",
                   container={"resources": SMALL}))
    done = finished(real, name, 60)
    text = message(done["containerStatuses"][0])
    real.kubectl("delete", "pod", name)
    answers = dict(re.findall(r"==([\w-]+)==\n(.*?)(?=\n==[\w-]+==\n|\Z)", text, re.S))
    assert set(answers) == set(targets), f"the client pod {name} did not report every request:\n{text}"
    return answers


def ok(answer: str) -> bool:
    return re.match(r"HTTP/1\.[01] 200 ", answer) is not None


def body(answer: str) -> str:
    return answer.split("\r\n\r\n", 1)[1].strip() if "\r\n\r\n" in answer else ""


def delete(real: RealCluster, *names: str) -> None:
    for name in names:
        real.kubectl("delete", "pod", name, "--wait=false", "--ignore-not-found")


# --- imported, under the stack's names -----------------------------------------------------------


def test_the_dev_stacks_images_are_imported_under_the_names_its_pods_use(real: RealCluster) -> None:
    config = parse(example_stack("dev"))
    used = {c["image"] for obj in dev_stack().values() if obj["kind"] == "Deployment"
            for c in obj["spec"]["template"]["spec"]["containers"]}
    used |= {c["image"] for obj in dev_stack().values() if obj["kind"] == "TFJob"
             for replica in obj["spec"]["tfReplicaSpecs"].values() for c in replica["template"]["spec"]["containers"]}
    used |= {profile.image for profile in config.jupyterhub.profiles}  # what KubeSpawner starts
    assert used and all(image.startswith("mlplatform/") for image in used), used
    for settings in real.nodes():  # every node: the scheduler may put any of them there
        held = digests(Containerd(settings, tools()))
        for image in used:
            name = image.split("/", 1)[1].split(":", 1)[0]
            record = built(load(name))
            assert record, f"{image} is not built"
            # The kubelet reads mlplatform/<name>:<tag> as docker.io/mlplatform/<name>:<tag>.
            assert held.get(f"docker.io/{image}") == record.metadata["manifest"], (settings.spec.name, image)
        assert not [n for n in held if n.endswith(":latest")], sorted(held)


def test_every_new_node_starts_on_the_machines_image_store(real: RealCluster) -> None:
    """The images were unpacked once for the machine (cluster/localcluster/imagestore.py), and each
    new node's containerd root shares the store's files: the same inodes, not copies."""
    store = imagestore.ensure(Path(tools()["CONTAINERD_DIR"]) / "bin", print)  # the one `up` used
    blobs = sorted((store / "io.containerd.content.v1.content" / "blobs" / "sha256").iterdir())
    # The images' layers (a manifest or config is a few KiB). The archives' own OCI indexes, which
    # no image references, a node's containerd collects as garbage: the node unlinks its link.
    layers = [blob for blob in blobs if blob.stat().st_size > 2**20]
    assert len(layers) >= len(names()), blobs
    nodes = real.nodes()
    assert real.up_run.stderr.count("containerd's root linked to the image store") == len(nodes), real.up_run.stderr
    for settings in nodes:
        root = Containerd(settings, tools()).root
        for blob in blobs:
            held = root / blob.relative_to(store)
            assert held.exists() or blob not in layers, (settings.spec.name, blob)
            assert not held.exists() or held.stat().st_ino == blob.stat().st_ino, (settings.spec.name, blob)
        for db in imagestore.WRITTEN_IN_PLACE:  # the node's own, written by its containerd alone
            assert (root / db).stat().st_ino != (store / db).stat().st_ino, (settings.spec.name, db)


def test_a_warm_up_imports_only_what_the_node_lacks(real: RealCluster) -> None:
    settings = real.node("cpu")
    containerd = Containerd(settings, tools())
    lines: list[str] = []
    started = time.monotonic()
    assert import_platform_images(containerd, lines.append) == {}
    assert lines == [] and time.monotonic() - started < 10
    out = real.cluster("up")
    assert "imported" not in out.stderr, out.stderr
    # A node that lost one image gets that one back, and only it.
    proxy = f"docker.io/{local('proxy')}"
    containerd.ctr("images", "rm", proxy)
    assert list(import_platform_images(containerd, lines.append)) == [proxy], lines
    assert digests(containerd)[proxy] == built(load("proxy")).metadata["manifest"]


# --- each image's main process, on the node --------------------------------------------------------


def test_hub_and_proxy_answer_their_health_checks(real: RealCluster) -> None:
    """JupyterHub behind configurable-http-proxy in one pod: the hub's /hub/health (direct and
    through the proxy, which the hub configured over its API) and the proxy's /_chp_healthz."""
    token = {"name": hub.PROXY_TOKEN_ENV, "value": secrets.token_hex(32)}
    hub_url = f"http://127.0.0.1:{hub.HUB_PORT}"
    manifest = image_pod(
        "hub", local("hub"), name="hub", env=[token],
        # The image's entrypoint (tini) stays; these replace its command. No ConfigMap: the
        # defaults, a dummy sign-in and the proxy beside it, so that nothing but the image is tested.
        args=["jupyterhub", "--JupyterHub.authenticator_class=dummy", f"--JupyterHub.hub_bind_url=http://0.0.0.0:{hub.HUB_PORT}",
              f"--JupyterHub.hub_connect_url={hub_url}", "--ConfigurableHTTPProxy.should_start=False",
              f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{hub.PROXY_API_PORT}"],
        readinessProbe={"httpGet": {"path": "/hub/health", "port": hub.HUB_PORT}, "periodSeconds": 3, "failureThreshold": 100})
    manifest["spec"]["containers"].append({
        "name": "proxy", "image": local("proxy"), "imagePullPolicy": "Never", "resources": SMALL,
        "terminationMessagePolicy": "FallbackToLogsOnError", "command": hub.proxy_command(hub_url), "env": [token],
        "readinessProbe": {"httpGet": {"path": "/_chp_healthz", "port": hub.PROXY_PORT}, "periodSeconds": 3}})
    real.apply(manifest)
    try:
        ip = ready(real, "hub", 300)["podIP"]
        answers = fetch(real, "hub-client", {
            "health": (ip, hub.HUB_PORT, "/hub/health"),
            "api": (ip, hub.HUB_PORT, "/hub/api"),
            "chp": (ip, hub.PROXY_PORT, "/_chp_healthz"),
            "proxied": (ip, hub.PROXY_PORT, "/hub/health"),
        })
        assert ok(answers["health"]), answers["health"]
        assert ok(answers["api"]) and json.loads(body(answers["api"])) == {"version": pins.pin("jupyterhub")}, answers["api"]
        assert ok(answers["chp"]) and json.loads(body(answers["chp"])) == {"status": "OK"}, answers["chp"]
        # Through the proxy: the hub registered itself as the proxy's default route.
        assert ok(answers["proxied"]) and "x-jupyterhub-version" in answers["proxied"].lower(), answers["proxied"]
        # Lets the next test start a user server against this hub.
        _HUB["ip"] = ip
    except BaseException:
        delete(real, "hub")
        raise


_HUB: dict[str, str] = {}


def test_notebook_answers_version_and_starts_a_user_server_against_the_hub(real: RealCluster) -> None:
    """`jupyterhub-singleuser --version`, then start-notebook as KubeSpawner starts it: it hands
    over to jupyterhub-singleuser, which asks the hub of the test above for its version and serves."""
    if "ip" not in _HUB:
        pytest.skip("needs the hub of test_hub_and_proxy_answer_their_health_checks")
    user = "alice"
    prefix = f"/user/{user}/"
    env = {  # what KubeSpawner sets for alice's default server
        "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
        "JUPYTERHUB_API_URL": f"http://{_HUB['ip']}:{hub.HUB_PORT}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{user}",
        "JUPYTERHUB_USER": user,
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{hub.SINGLEUSER_PORT}{prefix}",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": f"{prefix}oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": f'["access:servers!server={user}/"]',
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": f'["access:servers!server={user}/"]',
    }
    manifest = image_pod("notebook", local("notebook"), env=[{"name": k, "value": v} for k, v in env.items()],
                         readinessProbe={"httpGet": {"path": f"{prefix}api", "port": hub.SINGLEUSER_PORT},
                                         "periodSeconds": 3, "failureThreshold": 100})
    manifest["spec"]["initContainers"] = [{
        "name": "version", "image": local("notebook"), "imagePullPolicy": "Never", "resources": SMALL,
        "command": ["sh", "-c", "{ id -u; jupyterhub-singleuser --version; } > /dev/termination-log 2>&1"]}]
    real.apply(manifest)
    try:
        current = ready(real, "notebook", 300)
        uid, version = message(current["initContainerStatuses"][0]).split()
        assert (uid, version) == ("1000", pins.pin("jupyterhub"))
        answers = fetch(real, "notebook-client", {"api": (current["podIP"], hub.SINGLEUSER_PORT, f"{prefix}api"),
                                                  "lab": (current["podIP"], hub.SINGLEUSER_PORT, f"{prefix}lab")})
        assert ok(answers["api"]) and "version" in json.loads(body(answers["api"])), answers["api"]
        # JupyterLab behind the hub's OAuth: an anonymous visitor is sent to the hub to sign in.
        assert re.match(r"HTTP/1\.[01] 302 ", answers["lab"]), answers["lab"]
    finally:
        delete(real, "notebook", "hub")


def test_trainer_answers_help(real: RealCluster) -> None:
    entrypoint = " ".join(load("trainer").config.entrypoint)
    real.apply(image_pod("trainer", local("trainer"),
                         command=["sh", "-c", f"{{ id -u; {entrypoint} --help; }} > /dev/termination-log 2>&1"]))
    done = finished(real, "trainer", 240)
    delete(real, "trainer")
    (container,) = done["containerStatuses"]
    text = message(container)
    assert done["phase"] == "Succeeded", text
    assert text.split()[0] == "10001" and "--train-steps" in text, text


def test_tensorboard_serves_its_page_as_the_dev_stack_runs_it(real: RealCluster) -> None:
    """The dev stack's TensorBoard Deployment, its container and security settings as they are
    (the local build it names, hardened, read-only root), on the node; only its volume of logs is
    an empty directory here (no storage provisioner on the real node yet)."""
    deployment = named("Deployment", "tensorboard")
    spec = on_real_node(deployment["spec"]["template"]["spec"])
    (container,) = spec["containers"]
    assert container["image"].startswith("mlplatform/") and container["imagePullPolicy"] == "Never", container
    spec["volumes"] = [v if "persistentVolumeClaim" not in v else {"name": v["name"], "emptyDir": {}}
                       for v in spec["volumes"]]
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    container["resources"] = {**container.get("resources", {}), **SMALL}
    port = container["ports"][0]["containerPort"]
    real.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tensorboard", "namespace": "default"},
                "spec": {**spec, "restartPolicy": "Never"}})
    try:
        ip = ready(real, "tensorboard", 300)["podIP"]
        answers = fetch(real, "tensorboard-client", {"page": (ip, port, "/"), "environment": (ip, port, "/data/environment")},
                        limit=1800)
        assert ok(answers["page"]) and '<meta name="tb-relative-root"' in answers["page"], answers["page"]
        assert ok(answers["environment"]), answers["environment"]
        assert json.loads(body(answers["environment"]))["version"] == pins.pin("tensorboard"), answers["environment"]
    finally:
        delete(real, "tensorboard")


def test_the_stacks_operator_deployment_runs_the_local_operator_and_answers_health(real: RealCluster) -> None:
    """The dev stack's training operator as it declares it (namespace, ServiceAccount, its
    least-privilege RBAC, webhook Secret and configuration, the TFJob CRD, the Deployment naming
    the local build), on the node: Ready means the manager reached the API server, generated its
    webhook certificate and serves; its health port then answers the client pod."""
    # Not its NetworkPolicies: they name the API server the mocked program was told of, and admit
    # no client pod; the deployed stack's tests prove them (tests/realnode/test_notebooks_on_real_nodes.py).
    objects = [obj for name, obj in dev_stack().items()
               if name.startswith("training-operator-") and obj["kind"] != "NetworkPolicy"]
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    template = deployment["spec"]["template"]
    template["spec"] = on_real_node(template["spec"])
    (container,) = template["spec"]["containers"]
    assert container["image"] == local("operator") and container["imagePullPolicy"] == "Never", container
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    # As declared: the manager reaches the API server as the `kubernetes` Service (its cluster IP is
    # in the API server's certificate, cluster/kwokctl.yaml).
    order = ("Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "Role", "ClusterRoleBinding",
             "RoleBinding", "Secret", "Service", "ValidatingWebhookConfiguration", "Deployment")
    objects.sort(key=lambda o: order.index(o["kind"]))
    try:
        for obj in objects:
            # Server-side: the CRD is too large for the last-applied annotation.
            real.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(obj))
        label = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        name = wait_for(lambda: next(iter(real.get("pod", "-n", OPERATOR_NAMESPACE, "-l", label)["items"]), None),
                        60, "the operator's pod")["metadata"]["name"]
        ip = ready(real, name, 300, OPERATOR_NAMESPACE)["podIP"]
        answers = fetch(real, "operator-client", {"healthz": (ip, HEALTH_PORT, "/healthz"),
                                                  "readyz": (ip, HEALTH_PORT, "/readyz")})
        for check, answer in answers.items():
            assert ok(answer) and body(answer) == "ok", (check, answer)
    finally:
        for obj in reversed(objects):
            if obj["kind"] != "Namespace":
                real.kubectl("delete", obj["kind"], obj["metadata"]["name"], "-n", obj["metadata"].get("namespace", "default"),
                             "--ignore-not-found", "--wait=false", check=False)
        real.kubectl("delete", "namespace", OPERATOR_NAMESPACE, "--wait=false", "--ignore-not-found", check=False)
