"""The tutorial's steps in a real browser, against the dev stack's hub run on this machine.

configurable-http-proxy (from npm, the version the cluster runs) and JupyterHub start with the
files the dev stack's ConfigMap holds, as in the cluster; only addresses, the database path and
the spawner's last step differ (local_jupyterhub_config.py: KubeSpawner builds the pod, a local
process stands in for it). The proxy serves https, as the dev stack's does (jupyterhub.https
selfSigned), with a certificate made by the stack's own code, which Chromium trusts by its key
and nothing else. Headless Chromium then signs up and logs in with the native
authenticator, opens KubeSpawner's spawn form, keeps a screenshot of it in
test-artifacts/spawn-form.png, chooses the GPU profile and starts the server. The proxy and the hub
are stopped before the tests look at what was seen, and must leave no process behind.

Needs chromium and the npm packages: run tests/hub/setup.sh once (CI does, before `make test`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components import tls
from components.hub_config import document as hub_config
from program import ROOT, example_stack
from stacks import parse
from rendered import render_hub

HERE = Path(__file__).resolve().parent
CHP = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
DRIVER = HERE / "spawn_form.mjs"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
USERNAME, PASSWORD = "admin", "correct horse battery staple"
GPU_PROFILE = "tensorflow-gpu"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 30,
             context: ssl.SSLContext | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{' '.join(process.args)} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
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


@dataclass(frozen=True, order=True)
class Process:
    """One process: its pid and start time (a pid alone may name another process once it ended)."""

    pid: int
    started: int
    command: str


def live_processes() -> dict[int, tuple[Process, int, int]]:
    """pid -> (process, parent pid, process group) of every process on the machine but zombies,
    which hold nothing but their pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # it ended meanwhile
        # proc(5): after "(comm)" come state, ppid, pgrp, ...; starttime is field 22.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            found[int(entry.name)] = (Process(int(entry.name), int(fields[19]), command), int(fields[1]), int(fields[2]))
    return found


def started_by(leader: int) -> set[Process]:
    """The processes below `leader` now, and the others of its process group (which outlive it)."""
    table = live_processes()
    children = defaultdict(list)
    for pid, (_, parent, _) in table.items():
        children[parent].append(pid)
    found, todo = set(), [leader]
    while todo:
        for child in children[todo.pop()]:
            found.add(table[child][0])
            todo.append(child)
    return found | {process for process, _, group in table.values() if group == leader and process.pid != leader}


def still_alive(processes: set[Process]) -> set[Process]:
    table = live_processes()
    return {p for p in processes if p.pid in table and table[p.pid][0].started == p.started}


def end(processes: set[Process], grace: float = 10) -> None:
    """SIGTERM each of `processes` that still runs, and SIGKILL those that outlast `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in still_alive(processes):
            try:
                os.kill(process.pid, sig)
            except ProcessLookupError:
                pass  # it ended between the look and the signal
        deadline = time.monotonic() + grace
        while still_alive(processes) and time.monotonic() < deadline:
            time.sleep(0.1)


class Stopped(NamedTuple):
    exited_by_itself: bool  # within the grace after SIGTERM, not killed
    left_behind: list[Process]  # what still ran once it had exited


# Longer than the hub needs to stop its services and servers, shorter than JupyterHub's
# interrupt_timeout (10 s): a hub that takes longer waited for a process that ignored its SIGINT.
STOP_GRACE = 8


def start(stack: ExitStack, name: str, command: list[str], env: dict[str, str], log: Path, cwd: Path,
          stopped: dict[str, Stopped]) -> subprocess.Popen:
    """Start `command`, to be stopped with everything it starts when `stack` closes (in `stopped[name]`).

    It leads a process group of its own, so that what it starts stays findable once it has gone.
    SIGINT is given back its default action: a test run from a background job inherits it ignored,
    and so would the hub's services, which JupyterHub stops with SIGINT first (waiting
    interrupt_timeout before it sends SIGTERM).
    """
    output = stack.enter_context(log.open("w"))
    process = subprocess.Popen(["env", "--default-signal=INT", *command], env=env, stdout=output,
                               stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)

    def stop() -> None:
        # Asked first, so that it stops what it started its own way (the hub its services and the
        # user's server); then whatever it left: its group, and what was below it when asked
        # (JupyterHub starts each service in a session of its own, outside the group).
        below = started_by(process.pid)
        process.terminate()
        try:
            process.wait(timeout=STOP_GRACE)
            by_itself = True
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            by_itself = False
        left = still_alive(below | started_by(process.pid))
        end(left)
        stopped[name] = Stopped(by_itself, sorted(left))

    stack.callback(stop)
    return process


class BrowserRun(NamedTuple):
    seen: dict[str, Any]  # what the driver saw (spawn_form.mjs)
    pod: dict[str, Any] | None  # the pod KubeSpawner built
    screenshot: Path
    hub_log: str
    stopped: dict[str, Stopped]  # "proxy", "hub"


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
    stopped: dict[str, Stopped] = {}
    with ExitStack() as stack:
        proxy_command = hub_config.proxy_command(
            hub_address, ip="127.0.0.1", port=ports["REDIRECT_PORT"], api_ip="127.0.0.1",
            api_port=ports["PROXY_API_PORT"], https_port=ports["PROXY_PORT"], tls_dir=str(tls_dir),
        )
        proxy = start(stack, "proxy", [str(CHP), *proxy_command[1:]], env, work / "proxy.log", work, stopped)
        hub = start(
            stack,
            "hub",
            [sys.executable, "-m", "jupyterhub", "-f", str(HERE / "local_jupyterhub_config.py")],
            env,
            work / "hub.log",
            work,
            stopped,
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
    # Stopped (the hub first, while the proxy it deletes the user's route from still runs) before
    # any test looks: the tests need only what was seen and logged.
    yield BrowserRun(seen, pod, screenshot, (work / "hub.log").read_text(), stopped)


def test_the_spawn_form_offers_each_profile_with_its_image_and_limits(browser_run):
    profiles = {p["title"]: p for p in browser_run.seen["profiles"]}
    # As the hub gets them: the dev stack's images are the local builds (images.local).
    configured = [p.model_dump(by_alias=True) for p in parse(example_stack("dev")).jupyterhub.profiles]
    assert list(profiles) == [p["name"] for p in configured], "the form lists the profiles in config order"
    for profile in configured:
        shown = profiles[profile["name"]]["description"]
        for fact in (profile["image"], f"CPU {profile['cpuGuarantee']} guaranteed, limit {profile['cpuLimit']}",
                     f"memory {profile['memoryGuarantee']} guaranteed, limit {profile['memoryLimit']}"):
            assert fact in shown, f"profile {profile['name']!r} shows {shown!r}, without {fact!r}"
    assert "1 or 2 NVIDIA GPUs" in profiles["TensorFlow (GPU)"]["description"]
    assert profiles["TensorFlow (CPU)"]["checked"], "the default profile is preselected"


def test_the_admin_signs_up_and_is_authorized_at_once(browser_run):
    signup = browser_run.seen["signup"]
    assert "successful" in signup.lower(), signup


def test_the_spawn_form_screenshot_is_kept(browser_run):
    screenshot = browser_run.screenshot
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{screenshot} is not a PNG"


def test_starting_the_gpu_profile_builds_a_gpu_pod_and_opens_the_server(browser_run):
    seen, pod = browser_run.seen, browser_run.pod
    assert pod is not None, "the spawner never built a pod"
    container = pod["spec"]["containers"][0]
    assert container["image"] == parse(example_stack("dev")).jupyterhub.profiles[1].image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}
    assert seen["serverUrl"].startswith("https://localhost:") and f"/user/{USERNAME}/" in seen["serverUrl"]
    assert f"Stand-in notebook server for admin, image {container['image']}" in seen["serverPage"]


def test_each_idle_culler_runs_and_its_role_lets_it_list_users(browser_run):
    hub_log = browser_run.hub_log
    # Each culler checks once at start (the dev stack's GPU profile has rules of its own, so one
    # per policy, through its per-profile view); a 403 here would mean its role lacks a scope.
    for culler in ("jupyterhub-idle-culler-idle-3600s", "jupyterhub-idle-culler-idle-1200s-age-28800s"):
        calls = [line for line in hub_log.splitlines() if f"({culler}@" in line]
        assert any(" 200 GET /hub/api/users" in line for line in calls), calls or hub_log[-3000:]


def test_the_hub_and_proxy_stop_with_everything_they_started(browser_run):
    # The hub stops its managed services (the idle culler) and the user's server itself on SIGTERM.
    # It used to be killed at a 10 s timeout while it still waited for a culler that ignored SIGINT,
    # and the culler and the stand-in server ran on, parented to init.
    assert set(browser_run.stopped) == {"proxy", "hub"}
    for name, stopped in browser_run.stopped.items():
        left = "\n".join(f"  {p.pid}: {p.command}" for p in stopped.left_behind)
        assert stopped.exited_by_itself, f"the {name} did not exit within {STOP_GRACE} s of SIGTERM and was killed"
        assert not stopped.left_behind, f"the {name} exited leaving these running (ended since):\n{left}"
