"""The notebook exercise on the real nodes, as a user meets it.

Against the session's stack (conftest.py), through `proxy-public` by port-forward and https with
the stack's CA: headless Chromium finds the admin's name taken at sign-up, signs up a user, signs
in as the admin with the password the stack generated (`pulumi stack output jupyterhubAdminPassword
--show-secrets`), the admin authorizes the user, the
user starts the CPU profile and JupyterLab loads (screenshots into docs/screenshots/). Then the
user's pod is checked as the profile says (image, the kernel's CPU and memory limits, the home
claim across a restart), a kernel imports TensorFlow and computes through the Jupyter server's
REST and websocket API, a GPU server lands on the GPU node with a GPU the kubelet allocated, the
NetworkPolicies hold from inside a user's pod, and the culler stops an idle server.

The tests share the servers and run in file order. The stack's culler (a short cullIdleSeconds,
realnode_stack.py) would stop a server the tests leave idle for long, so each test that uses
one first makes sure it runs and reports activity for it, as jupyterhub-singleuser does; the last
test stops reporting and waits for the culler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from e2e.local_stack import ROOT, LocalStack
from cluster.localcluster.gpuplugin import GPU_RESOURCE
from cluster.localcluster.network import METADATA_ADDRESS
from real_cluster import (
    RealCluster,
    hub_certificate,
    hub_context,
    refuses_privileged_pods,
    restricted_dry_run,
    spki_hash,
    wait_for,
)
from real_cluster import pod as busybox_pod
from realnode_stack import CULL_IDLE_SECONDS, stack_config
from stacks import parse

NAMESPACE = "jupyterhub"
HUB_DIR = ROOT / "tests" / "hub"
DRIVER = HUB_DIR / "notebook_flow.mjs"
SCREENSHOTS = ROOT / "docs" / "screenshots"
ADMIN, USER, OTHER = "admin", "alice", "bob"  # the dev stack's adminUsers is [admin]
PASSWORD = "correct horse battery staple"  # the user's
CPU_PROFILE, GPU_PROFILE = "tensorflow-cpu", "tensorflow-gpu"
NOTEBOOK_CONTAINER = "notebook"  # KubeSpawner's name for the server's container
HOME = "/home/jovyan"
# A server's start on the two shared cores: the notebook image is imported already, but the GPU
# server may first wait for the stack's TFJob to give its GPUs back.
START_TIMEOUT = 600


def profiles() -> dict[str, Any]:
    """The stack's profiles by slug, with the images the hub gets (the local builds)."""
    return {p.slug: p for p in parse(stack_config()).jupyterhub.profiles}


@dataclass
class Hub:
    """The hub through a port-forward to proxy-public:443, as the stack's `jupyterhub` output says."""

    real: RealCluster
    port: int
    context: ssl.SSLContext
    certificate: str
    admin_password: str  # the stack's output jupyterhubAdminPassword
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                timeout: float = 30) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"token {token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=timeout) as response:
                text = response.read().decode()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def api(self, method: str, path: str, token: str | None = None, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        """The hub's REST API, as the admin unless TOKEN says otherwise."""
        status, answer = self.request(method, f"/hub/api{path}", token or self.token(ADMIN), body)
        assert status in ok, f"{method} /hub/api{path}: HTTP {status}: {answer}"
        return answer

    def token(self, user: str) -> str:
        """An API token of USER's: by password for those who signed up (NativeAuthenticator checks
        it), else one the admin makes."""
        if user not in self.tokens:
            path, body = f"/hub/api/users/{user}/tokens", {"note": "tests/realnode"}
            if user in (ADMIN, USER):
                password = self.admin_password if user == ADMIN else PASSWORD
                status, answer = self.request("POST", path, None, {**body, "auth": {"username": user, "password": password}})
            else:
                status, answer = self.request("POST", path, self.token(ADMIN), body)
            assert status in (200, 201), f"a token for {user}: HTTP {status}: {answer}"
            self.tokens[user] = answer["token"]
        return self.tokens[user]

    def server(self, user: str) -> dict[str, Any] | None:
        return self.api("GET", f"/users/{user}")["servers"].get("")

    def report_activity(self, user: str, as_admin: bool = False) -> None:
        """What jupyterhub-singleuser posts for a server in use: now, so the culler leaves it alone
        (with the user's token, or the admin's)."""
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        self.api("POST", f"/users/{user}/activity", token=self.token(ADMIN if as_admin else user), ok=(200, 204),
                 body={"last_activity": now, "servers": {"": {"last_activity": now}}})

    def running(self, user: str, profile: str = CPU_PROFILE) -> dict[str, Any]:
        """USER's server, started with PROFILE if it is not running (the culler may have stopped it);
        its activity is reported now. Returns its pod."""
        if user != USER:  # the admin makes the hub user for a server of someone who never signed in
            self.api("POST", f"/users/{user}", ok=(201, 409))

        def ready() -> bool:
            server = self.server(user)
            if server is None:  # never started, stopped, or culled (once a stop in progress is over)
                self.api("POST", f"/users/{user}/server", body={"profile": profile}, ok=(201, 202))
                return False
            return server["ready"]

        wait_for(ready, START_TIMEOUT, f"{user}'s server ready", interval=2)
        self.report_activity(user)
        return self.real.get("pod", "-n", NAMESPACE, pod_name(user))

    def stop(self, user: str) -> None:
        self.api("DELETE", f"/users/{user}/server", ok=(202, 204))
        wait_for(lambda: self.server(user) is None and pod_gone(self.real, user), 180, f"{user}'s server stopped", interval=2)


def pod_name(user: str) -> str:
    return f"jupyter-{user}"  # KubeSpawner's pod_name_template, jupyter-{user_server}


def pod_gone(real: RealCluster, user: str) -> bool:
    return real.kubectl("get", "pod", "-n", NAMESPACE, pod_name(user), check=False).returncode != 0


def in_pod(real: RealCluster, pod: str, *command: str) -> str:
    return real.kubectl("exec", "-n", NAMESPACE, pod, "--", *command).stdout


@pytest.fixture(scope="module")
def hub(stack: LocalStack, real: RealCluster) -> Iterator[Hub]:
    forward = subprocess.Popen([str(real.kubectl_bin), "--kubeconfig", str(real.kubeconfig), "port-forward", "-n",
                                NAMESPACE, "svc/proxy-public", ":443"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = forward.stdout.readline()
        found = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert found, f"kubectl port-forward said {line!r}: {forward.stderr.read() if forward.poll() is not None else ''}"
        # What the operator reads to sign in as the first admin (a secret output).
        admin_password = stack.pulumi("stack", "output", "jupyterhubAdminPassword", "--show-secrets").stdout.strip()
        hub = Hub(real, int(found.group(1)), hub_context(real), hub_certificate(real), admin_password)

        def healthy() -> bool:
            try:
                return hub.request("GET", "/hub/health", timeout=10)[0] == 200
            except OSError:
                return False

        wait_for(healthy, 120, "the hub's /hub/health through proxy-public", interval=1)
        yield hub
    finally:
        forward.terminate()
        forward.wait(10)


def keep_active_while(driver: subprocess.Popen, hub: Hub, user: str, timeout: float) -> tuple[str, str]:
    """Report USER's server as in use every 15 s until DRIVER ends (killed after TIMEOUT); its
    output (stdout, stderr), read all along so that a full pipe never stops it.

    This stack culls a server after CULL_IDLE_SECONDS (two minutes, for the culling test) without
    activity, and a JupyterLab page reports none until its application has started: on this
    2-core machine beside the other tiers' TensorFlow tests, Chromium took longer than that to
    start it once (2026-12-08), the culler stopped the server under the page, and the page never
    rendered. What the browser test checks is that the page renders, however long it takes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return driver.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            pass  # communicate keeps what it read; the next call goes on from there
        if time.monotonic() > deadline:
            driver.kill()
            driver.communicate()
            raise AssertionError(f"the browser driver ran past {timeout:.0f}s")
        try:
            if hub.server(user) is not None:
                hub.report_activity(user, as_admin=True)
        except (AssertionError, OSError):
            pass  # not signed up yet, or the hub busy with the sign-ups: the next round reports it


@pytest.fixture(scope="module")
def browser_run(hub: Hub) -> dict[str, Any]:
    """The exercise in headless Chromium, from sign-up to JupyterLab; what it saw."""
    if not (HUB_DIR / "node_modules" / "playwright-core").is_dir() or shutil.which("node") is None:
        pytest.fail("the browser harness is not installed: run tests/hub/setup.sh first (make test does)")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name in ("sign-in", "spawn-form", "jupyterlab"):
        (SCREENSHOTS / f"{name}.png").unlink(missing_ok=True)
    driver = subprocess.Popen(
        ["node", str(DRIVER), hub.url, str(SCREENSHOTS), ADMIN, hub.admin_password, USER, PASSWORD, CPU_PROFILE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HUB_DIR,
        env={**hub.real.env, "TRUSTED_SPKI": spki_hash(hub.certificate), "LAB_TIMEOUT_MS": str(START_TIMEOUT * 1000)},
    )
    stdout, stderr = keep_active_while(driver, hub, USER, START_TIMEOUT + 120)
    assert driver.returncode == 0, f"driver failed ({driver.returncode}):\n{stderr[-3000:]}"
    seen = json.loads(stdout.strip().splitlines()[-1])
    assert "error" not in seen, json.dumps(seen, indent=1)[:6000]
    return seen


# --- 2. the exercise in a real browser -----------------------------------------------------------


def test_signups_wait_for_the_admin_who_authorizes_the_user(browser_run: dict[str, Any]) -> None:
    assert "already in use" in browser_run["adminSignup"], f"the admin's name could be claimed: {browser_run['adminSignup']}"
    assert "sent to the admin" in browser_run["userSignup"], browser_run["userSignup"]
    refused = browser_run["loginBeforeAuthorization"]
    assert "/hub/login" in refused["url"] and refused["message"], f"{USER} logged in before authorization: {refused}"
    assert (browser_run["authorizedBefore"], browser_run["authorizedAfter"]) == ("No", "Yes"), browser_run


def test_the_spawn_form_lists_each_profile_with_its_image_and_limits(browser_run: dict[str, Any]) -> None:
    shown = {p["slug"]: p for p in browser_run["profiles"]}
    # USER is in no group: the profiles limited to groups are not shown to them.
    offered = {slug: p for slug, p in profiles().items() if not p.groups}
    assert list(shown) == list(offered), "the form lists the stack's profiles for everyone, in config order"
    for slug, profile in offered.items():
        description = shown[slug]["description"]
        assert shown[slug]["title"] == profile.name
        for fact in (f"Image {profile.image}", f"CPU {profile.cpu_guarantee} guaranteed, limit {profile.cpu_limit}",
                     f"memory {profile.memory_guarantee} guaranteed, limit {profile.memory_limit}"):
            assert fact in description, f"profile {slug}: {description!r} lacks {fact!r}"
    assert "1 or 2 NVIDIA GPUs" in shown[GPU_PROFILE]["description"]
    assert shown[CPU_PROFILE]["checked"], "the default profile is preselected"


def test_jupyterlab_loads_through_the_proxy(browser_run: dict[str, Any], hub: Hub) -> None:
    assert browser_run["labUrl"].startswith(f"{hub.url}/user/{USER}/lab"), browser_run["labUrl"]
    assert "JupyterLab" in browser_run["labTitle"], browser_run["labTitle"]
    for name in ("sign-in", "spawn-form", "jupyterlab"):
        assert (SCREENSHOTS / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"screenshot {name}.png"


# --- 3. the user's pod as the profile says -----------------------------------------------------


def test_the_server_runs_the_profiles_image_on_the_user_pool_as_jovyan(browser_run: dict[str, Any], hub: Hub) -> None:
    pod = hub.running(USER)
    profile = profiles()[CPU_PROFILE]
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == NOTEBOOK_CONTAINER]
    assert container["image"] == profile.image
    (status,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == NOTEBOOK_CONTAINER]
    assert status["image"].endswith(profile.image.rsplit("/", 1)[1]), f"the container runs {status['image']}"
    assert hub.real.get("node", pod["spec"]["nodeName"])["metadata"]["labels"].get("mlplatform.dev/pool") == "cpu"
    assert in_pod(hub.real, pod_name(USER), "id", "-u").strip() == "1000", "the server runs as jovyan, not root"


def test_the_kernel_enforces_the_profiles_cpu_and_memory_limits(browser_run: dict[str, Any], hub: Hub) -> None:
    """cgroup v1, as the container sees its own cgroups: CFS quota over period, and the memory limit."""
    hub.running(USER)
    profile = profiles()[CPU_PROFILE]
    quota, period, memory = in_pod(hub.real, pod_name(USER), "cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                                   "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
                                   "/sys/fs/cgroup/memory/memory.limit_in_bytes").split()
    assert int(quota) / int(period) == float(profile.cpu_limit), f"CFS quota {quota}/{period} for cpuLimit {profile.cpu_limit}"
    assert int(memory) == parse_bytes(profile.memory_limit), f"memory.limit_in_bytes {memory} for memoryLimit {profile.memory_limit}"


def parse_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(quantity[:-2]) * units[quantity[-2:]] if quantity[-2:] in units else int(quantity)


def test_the_home_claim_is_bound_mounted_and_survives_a_restart(browser_run: dict[str, Any], hub: Hub) -> None:
    pod = hub.running(USER)
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "home"]
    claim = hub.real.get("pvc", "-n", NAMESPACE, volume["persistentVolumeClaim"]["claimName"])
    assert claim["status"]["phase"] == "Bound", claim["status"]
    assert claim["spec"]["resources"]["requests"]["storage"] == parse(stack_config()).jupyterhub.storage.size
    mounts = in_pod(hub.real, pod_name(USER), "cat", "/proc/self/mounts")
    assert any(line.split()[1] == HOME for line in mounts.splitlines()), f"nothing mounted at {HOME}:\n{mounts}"
    marker = f"written before the restart {uuid.uuid4()}"
    in_pod(hub.real, pod_name(USER), "sh", "-c", f"echo '{marker}' > {HOME}/restart-marker.txt")
    hub.stop(USER)
    assert hub.real.get("pvc", "-n", NAMESPACE, claim["metadata"]["name"])["status"]["phase"] == "Bound", "the claim outlives the server"
    hub.running(USER)
    assert in_pod(hub.real, pod_name(USER), "cat", f"{HOME}/restart-marker.txt").strip() == marker


# --- 4. a notebook runs code ---------------------------------------------------------------------

# A 2x2 by 2x1 matrix product and TensorFlow's version, printed as one JSON line.
TENSORFLOW_CODE = """\
import json
import tensorflow as tf
product = tf.linalg.matmul(tf.constant([[1.0, 2.0], [3.0, 4.0]]), tf.constant([[5.0], [6.0]]))
print(json.dumps({"product": product.numpy().tolist(), "version": tf.__version__}))
"""


async def execute(hub: Hub, user: str, kernel_id: str, code: str, timeout: float) -> tuple[str, dict[str, Any]]:
    """Runs CODE on the kernel over its websocket (Jupyter's messaging protocol); (stdout, execute_reply)."""
    url = f"wss://localhost:{hub.port}/user/{user}/api/kernels/{kernel_id}/channels"
    request = HTTPRequest(url, headers={"Authorization": f"token {hub.token(user)}"}, ssl_options=hub.context,
                          request_timeout=60)
    socket = await websocket_connect(request)
    msg_id = uuid.uuid4().hex
    socket.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user, "session": uuid.uuid4().hex,
                   "version": "5.3", "date": datetime.now(timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    stdout, reply, idle = "", None, False
    deadline = time.monotonic() + timeout
    try:
        while reply is None or not idle:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to the execute request within {timeout:.0f}s; stdout so far {stdout!r}"
            raw = await asyncio.wait_for(socket.read_message(), left)
            assert raw is not None, f"the kernel's websocket closed; stdout so far {stdout!r}"
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = message["header"]["msg_type"]
            if kind == "stream" and message["content"]["name"] == "stdout":
                stdout += message["content"]["text"]
            elif kind == "error":
                raise AssertionError(f"the kernel raised {message['content']['ename']}: {message['content']['evalue']}")
            elif kind == "execute_reply":
                reply = message["content"]
            elif kind == "status" and message["content"]["execution_state"] == "idle":
                idle = True
    finally:
        socket.close()
    return stdout, reply


def test_a_kernel_on_the_users_server_imports_tensorflow_and_computes(browser_run: dict[str, Any], hub: Hub) -> None:
    hub.running(USER)
    token = hub.token(USER)
    status, kernel = hub.request("POST", f"/user/{USER}/api/kernels", token, {"name": "python3"})
    assert status == 201, f"starting a kernel: HTTP {status}: {kernel}"
    try:
        # The kernel answers once it has started; until then the server queues the request.
        # A loop of its own, never made the thread's current one: asyncio.run would leave the
        # main thread without one for the tests after this (which ask asyncio for it).
        loop = asyncio.new_event_loop()
        try:
            stdout, reply = loop.run_until_complete(execute(hub, USER, kernel["id"], TENSORFLOW_CODE, timeout=240))
        finally:
            loop.close()
    finally:
        hub.request("DELETE", f"/user/{USER}/api/kernels/{kernel['id']}", token)
    assert reply["status"] == "ok", reply
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["product"] == [[17.0], [39.0]], result
    assert re.fullmatch(r"2\.\d+\.\d+", result["version"]), result
    hub.report_activity(USER)


# --- 3. (the GPU profile) ----------------------------------------------------------------------


def test_the_gpu_profile_lands_on_the_gpu_node_with_a_gpu_the_kubelet_allocated(browser_run: dict[str, Any], hub: Hub) -> None:
    pod = hub.running(OTHER, GPU_PROFILE)
    profile = profiles()[GPU_PROFILE]
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == NOTEBOOK_CONTAINER]
    assert container["image"] == profile.image
    assert container["resources"]["limits"].get(GPU_RESOURCE) == "1", container["resources"]
    node = hub.real.get("node", pod["spec"]["nodeName"])
    assert node["metadata"]["labels"].get("mlplatform.dev/pool") == "gpu", pod["spec"]["nodeName"]
    # What the (simulated) device plugin hands out when the kubelet allocates a GPU to the container.
    devices = in_pod(hub.real, pod_name(OTHER), "printenv", "MLPLATFORM_SIMULATED_GPUS").strip()
    assert re.fullmatch(r"simulated-gpu-\d+", devices), f"the container got {devices!r}, not one GPU"


# --- 6. NetworkPolicies, from inside the pods ----------------------------------------------------

# Connects to each (host, port) of argv[1] (JSON) with a short timeout; prints which connected.
PROBE = """\
import json, socket, sys
result = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=4).close()
        result[f"{host}:{port}"] = True
    except OSError:
        result[f"{host}:{port}"] = False
print(json.dumps(result))
"""


def probe(real: RealCluster, pod: str, targets: list[tuple[str, int]]) -> dict[str, bool]:
    return json.loads(in_pod(real, pod, "python3", "-c", PROBE, json.dumps(targets)).strip().splitlines()[-1])


# A namespace of the test's own, without NetworkPolicies: its pod shows that every target answers,
# so a refusal from a user's pod is the policies' doing, not an address that answers nobody.
CONTROL_NAMESPACE = "netpol-control"
METADATA_PAGE = "stand-in-cloud-metadata"


@contextlib.contextmanager
def metadata_stand_in(real: RealCluster) -> Iterator[None]:
    """An HTTP server at the cloud metadata address in every node's network namespace (each carries
    the address, and pods a route to it: cluster/localcluster/network.py); nothing outside them."""
    root = tempfile.mkdtemp(prefix="mlp-metadata-")
    Path(root, "index.html").write_text(METADATA_PAGE)
    servers = [subprocess.Popen(["nsenter", f"--net=/run/netns/{node.netns}", "--", sys.executable, "-m", "http.server",
                                 "--bind", METADATA_ADDRESS, "--directory", root, "80"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for node in real.nodes()]
    try:
        for node in real.nodes():
            check = ["nsenter", f"--net=/run/netns/{node.netns}", "--", sys.executable, "-c",
                     f"import socket; socket.create_connection(({METADATA_ADDRESS!r}, 80), 2)"]
            wait_for(lambda check=check: subprocess.run(check, capture_output=True).returncode == 0, 30,
                     f"the metadata stand-in on {node.spec.name}")
        yield
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def control_probe(real: RealCluster, node: str, targets: list[tuple[str, int]]) -> dict[str, bool]:
    """Which targets a busybox pod on NODE, in a namespace without policies, connects to (it reports
    through its termination message)."""
    script = "; ".join(f'if nc -w 4 {host} {port} </dev/null >/dev/null 2>&1; then echo "{host}:{port} 1"; '
                       f'else echo "{host}:{port} 0"; fi' for host, port in targets)
    name = f"control-{uuid.uuid4().hex[:8]}"
    manifest = busybox_pod(name, f"({script}) > /dev/termination-log")
    manifest["metadata"]["namespace"] = CONTROL_NAMESPACE
    manifest["spec"].pop("nodeSelector")
    manifest["spec"]["nodeName"] = node
    real.apply(manifest)
    done = wait_for(lambda: (q := real.get("pod", name, "-n", CONTROL_NAMESPACE))["status"].get("phase")
                    in ("Succeeded", "Failed") and q, 120, f"pod {name} finished")
    message = done["status"]["containerStatuses"][0]["state"]["terminated"].get("message", "")
    return {line.split()[0]: line.split()[1] == "1" for line in message.splitlines() if line.strip()}


def test_from_a_users_pod_only_the_hub_answers(browser_run: dict[str, Any], hub: Hub) -> None:
    """A user's pod reaches the hub's API, and not another user's server, the proxy's API, the
    Kubernetes API, the kubelets, the operator, TensorBoard or the cloud metadata address (a
    stand-in in the node's namespace). Each target is shown to answer: the hub pod reaches the
    servers and the proxy's API (its policy allows them), a pod on the same node in a namespace
    without policies reaches the API server, the kubelets, the operator's webhook and the metadata
    stand-in (no ingress policy guards them), and TensorBoard is Ready (its readiness probe
    connects; no pod may reach it)."""
    real = hub.real
    hub.running(OTHER, GPU_PROFILE)
    user_pod = hub.running(USER)
    other_ip = real.get("pod", "-n", NAMESPACE, pod_name(OTHER))["status"]["podIP"]
    (proxy,) = real.get("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=proxy")["items"]
    (hub_pod,) = real.get("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=hub")["items"]
    (operator,) = real.get("pods", "-n", "kubeflow", "-l", "app.kubernetes.io/name=training-operator")["items"]
    (board,) = real.get("pods", "-n", "mnist", "-l", "app.kubernetes.io/name=tensorboard")["items"]
    nodes = [a["address"] for n in real.get("nodes")["items"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
    assert nodes and all(re.fullmatch(r"10\.243\.\d+\.2", a) for a in nodes), nodes
    kubernetes = real.get("service", "-n", "default", "kubernetes")["spec"]["clusterIP"]
    proxy_api = real.get("service", "-n", NAMESPACE, "proxy-api")["spec"]["clusterIP"]
    hub_reaches = [(other_ip, 8888), (proxy_api, 8001), (proxy["status"]["podIP"], 8001)]
    any_pod_reaches = [(kubernetes, 443), *((address, 10250) for address in nodes), (operator["status"]["podIP"], 9443),
                       (METADATA_ADDRESS, 80)]
    denied = [*hub_reaches, *any_pod_reaches, (board["status"]["podIP"], 6006)]
    hub_api = [(hub_pod["status"]["podIP"], 8081)]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in board["status"]["conditions"]), board["status"]
    from_hub = probe(real, hub_pod["metadata"]["name"], hub_reaches)
    assert all(from_hub.values()), f"the hub pod should reach these: {from_hub}"
    real.kubectl("create", "namespace", CONTROL_NAMESPACE)
    try:
        wait_for(lambda: real.kubectl("get", "serviceaccount", "default", "-n", CONTROL_NAMESPACE,
                                      check=False).returncode == 0, 30, f"service account {CONTROL_NAMESPACE}/default")
        with metadata_stand_in(real):
            control = control_probe(real, user_pod["spec"]["nodeName"], any_pod_reaches)
            assert control and all(control.values()), f"from a pod without policies, not every target answers: {control}"
            from_user = probe(real, pod_name(USER), hub_api + denied)
        # The dry run that proves the stack's namespaces restricted does see a pod that is not (the
        # control pod: no seccomp profile, root, capabilities kept).
        said = restricted_dry_run(real, CONTROL_NAMESPACE)
        assert "warning" in said.lower() and "control-" in said, said
    finally:
        real.kubectl("delete", "namespace", CONTROL_NAMESPACE, "--wait=false", check=False)
    hub_key = f"{hub_api[0][0]}:8081"
    assert from_user.pop(hub_key), "a user's server must reach the hub's API"
    assert not any(from_user.values()), f"reachable from {USER}'s pod: {[t for t, ok in from_user.items() if ok]}"
    answer = in_pod(real, pod_name(USER), "python3", "-c",
                    "import urllib.request; print(urllib.request.urlopen('http://hub:8081/hub/api/', timeout=10).read().decode())")
    assert "version" in json.loads(answer), answer


def test_user_servers_meet_the_restricted_pod_security_standard(browser_run: dict[str, Any], hub: Hub) -> None:
    """With user servers running, every pod of the hub's namespace meets `restricted`: a server-side
    dry run of enforcing it warns of nothing; a privileged pod is refused there outright."""
    real = hub.real
    pod = hub.running(USER)
    context = {**pod["spec"].get("securityContext", {}), **pod["spec"]["containers"][0].get("securityContext", {})}
    assert context.get("runAsNonRoot") is True and context.get("seccompProfile") == {"type": "RuntimeDefault"}, context
    assert context.get("capabilities") == {"drop": ["ALL"]} and context.get("allowPrivilegeEscalation") is False, context
    said = restricted_dry_run(real, NAMESPACE)
    assert "warning" not in said.lower() and "labeled" in said, said
    assert refuses_privileged_pods(real, NAMESPACE)
    # The stack's other namespaces, whatever the job's pods are doing by now (a dry run checks
    # finished pods too): the operator, TensorBoard and the replicas meet restricted as well.
    for namespace in ("mnist", "kubeflow"):
        assert real.get("pods", "-n", namespace)["items"], f"no pod in {namespace} to check"
        said = restricted_dry_run(real, namespace)
        assert "warning" not in said.lower() and "labeled" in said, f"{namespace}: {said}"
        assert refuses_privileged_pods(real, namespace), f"{namespace} admits a privileged pod"


# --- 5. idle culling -----------------------------------------------------------------------------


def test_the_culler_stops_an_idle_server(browser_run: dict[str, Any], hub: Hub) -> None:
    """Nothing reports activity for the user's server any more: within cullIdleSeconds and one of the
    culler's rounds after (hub_config.culling_cadence), the culler stops it; the home claim stays."""
    hub.running(USER)
    claim = f"claim-{USER}"
    started = time.monotonic()
    wait_for(lambda: hub.server(USER) is None and pod_gone(hub.real, USER), CULL_IDLE_SECONDS * 3 + 60,
             f"the culler to stop {USER}'s idle server", interval=3)
    idle = time.monotonic() - started
    assert idle >= CULL_IDLE_SECONDS - 5, f"stopped after {idle:.0f}s, before cullIdleSeconds ({CULL_IDLE_SECONDS}s)"
    log = hub.real.kubectl("logs", "-n", NAMESPACE, "deploy/hub").stdout
    assert re.search(rf"Culling server {USER}\b", log), f"no culler entry for {USER} in the hub's log:\n{log[-3000:]}"
    assert hub.real.get("pvc", "-n", NAMESPACE, claim)["status"]["phase"] == "Bound", "the home claim outlives culling"
    hub.stop(OTHER)
