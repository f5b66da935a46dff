"""The tutorial's steps in a real browser, against the dev stack's hub run on this machine.

configurable-http-proxy (from npm, the version the cluster runs) and JupyterHub start with the
files the dev stack's ConfigMap holds, as in the cluster; only addresses, the database path and
the spawner's last step differ (local_jupyterhub_config.py: KubeSpawner builds the pod, a local
process stands in for it). The proxy serves https, as the dev stack's does (jupyterhub.https
selfSigned), with a certificate made by the stack's own code, which Chromium trusts by its key
and nothing else. Headless Chromium then signs up and logs in with the native
authenticator, opens KubeSpawner's spawn form, keeps a screenshot of it in
test-artifacts/spawn-form.png, chooses the GPU profile and starts the server.

Needs chromium and the npm packages: run tests/hub/setup.sh once (CI does, before `make test`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components import hub_config, tls
from program import ROOT, example_stack
from stacks import parse
from rendered import render_hub

HERE = Path(__file__).resolve().parent
CHP = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
DRIVER = HERE / "spawn_form.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
USERNAME, PASSWORD = "admin", "correct horse battery staple"
GPU_PROFILE = "tensorflow-1-gpu"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 30,
             context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{process.args[:3]} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{log.read_text()[-4000:]}")


def spki_hash(certificate_pem: str) -> str:
    """The certificate's public key as Chromium's --ignore-certificate-errors-spki-list names one."""
    key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def start(stack: ExitStack, command: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    output = stack.enter_context(log.open("w"))
    process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, cwd=cwd)

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    stack.callback(stop)
    return process


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    missing = [str(p) for p in (CHP, Path(CHROMIUM)) if not p.exists()] + [
        tool for tool in ("node",) if shutil.which(tool) is None
    ]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run tests/hub/setup.sh first")
    work = tmp_path_factory.mktemp("browser")
    rendered = render_hub(example_stack("dev"), (), work)
    ports = {name: free_port() for name in ("HUB_PORT", "PROXY_PORT", "PROXY_API_PORT", "REDIRECT_PORT")}
    certificate = tls.self_signed(("localhost", "127.0.0.1"))
    tls_dir = work / "tls"
    tls_dir.mkdir()
    for key, text in certificate.secret_data().items():
        (tls_dir / key).write_text(text)
    trusted = ssl.create_default_context(cadata=certificate.ca)
    reports = work / "pods"
    reports.mkdir()
    env = {
        **os.environ,
        **rendered.environment,
        **{name: str(port) for name, port in ports.items()},
        "HUB_CONFIG_FILE": str(rendered.config_file),
        "HUB_DATA_DIR": str(work),
        "STANDIN_REPORT_DIR": str(reports),
    }
    hub_address = f"http://127.0.0.1:{ports['HUB_PORT']}"
    base_url = f"https://localhost:{ports['PROXY_PORT']}"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "spawn-form.png"
    screenshot.unlink(missing_ok=True)
    with ExitStack() as stack:
        proxy_command = hub_config.proxy_command(
            hub_address, ip="127.0.0.1", port=ports["REDIRECT_PORT"], api_ip="127.0.0.1",
            api_port=ports["PROXY_API_PORT"], https_port=ports["PROXY_PORT"], tls_dir=str(tls_dir),
        )
        proxy = start(stack, [str(CHP), *proxy_command[1:]], env, work / "proxy.log", work)
        hub = start(
            stack,
            [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "local_jupyterhub_config.py")],
            env,
            work / "hub.log",
            work,
        )
        wait_for(f"{base_url}/_chp_healthz", proxy, work / "proxy.log", context=trusted)
        # Through the proxy: the hub registered itself as the proxy's default route.
        wait_for(f"{base_url}/hub/health", hub, work / "hub.log", context=trusted)
        driver = subprocess.run(
            ["node", str(DRIVER), base_url, str(screenshot), str(work / "chromium-profile"), USERNAME, PASSWORD, GPU_PROFILE],
            capture_output=True,
            text=True,
            timeout=50,
            env={**env, "CHROMIUM": CHROMIUM, "TRUSTED_SPKI": spki_hash(certificate.certificate)},
            cwd=HERE,
        )
        logs = f"driver stderr:\n{driver.stderr[-2000:]}\nhub log:\n{(work / 'hub.log').read_text()[-4000:]}"
        assert driver.returncode == 0, logs
        seen = json.loads(driver.stdout.strip().splitlines()[-1])
        assert "error" not in seen, f"{seen}\n{logs}"
        report = reports / f"{USERNAME}.json"
        pod = json.loads(report.read_text()) if report.exists() else None
        yield seen, pod, screenshot, (work / "hub.log").read_text()


def test_the_spawn_form_offers_each_profile_with_its_image_and_limits(browser_run):
    seen, _, _, _ = browser_run
    profiles = {p["title"]: p for p in seen["profiles"]}
    # As the hub gets them: the dev stack's images are the local builds (images.local).
    configured = [p.model_dump(by_alias=True) for p in parse(example_stack("dev")).jupyterhub.profiles]
    assert list(profiles) == [p["name"] for p in configured], "the form lists the profiles in config order"
    for profile in configured:
        shown = profiles[profile["name"]]["description"]
        for fact in (profile["image"], f"CPU {profile['cpuGuarantee']} guaranteed, limit {profile['cpuLimit']}",
                     f"memory {profile['memoryGuarantee']} guaranteed, limit {profile['memoryLimit']}"):
            assert fact in shown, f"profile {profile['name']!r} shows {shown!r}, without {fact!r}"
    assert "1 NVIDIA GPU" in profiles["TensorFlow (1 GPU)"]["description"]
    assert profiles["TensorFlow (CPU)"]["checked"], "the default profile is preselected"


def test_the_admin_signs_up_and_is_authorized_at_once(browser_run):
    seen, _, _, _ = browser_run
    assert "successful" in seen["signup"].lower(), seen["signup"]


def test_the_spawn_form_screenshot_is_kept(browser_run):
    _, _, screenshot, _ = browser_run
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{screenshot} is not a PNG"


def test_starting_the_gpu_profile_builds_a_gpu_pod_and_opens_the_server(browser_run):
    seen, pod, _, _ = browser_run
    assert pod is not None, "the spawner never built a pod"
    container = pod["spec"]["containers"][0]
    assert container["image"] == parse(example_stack("dev")).jupyterhub.profiles[1].image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}
    assert seen["serverUrl"].startswith("https://localhost:") and f"/user/{USERNAME}/" in seen["serverUrl"]
    assert f"Stand-in notebook server for admin, image {container['image']}" in seen["serverPage"]


def test_the_idle_culler_runs_and_its_role_lets_it_list_users(browser_run):
    *_, hub_log = browser_run
    # The culler checks once at start; a 403 here would mean its role lacks a scope.
    culler_calls = [line for line in hub_log.splitlines() if "(jupyterhub-idle-culler@" in line]
    assert any(" 200 GET /hub/api/users" in line for line in culler_calls), culler_calls or hub_log[-3000:]
