"""The dev stack's hub and proxy run on this machine, for the tests that drive them as users do.

configurable-http-proxy (from npm, the version the cluster runs) and JupyterHub start with the
files a stack's ConfigMap holds, as in the cluster; only addresses, the database path and the
spawner's last step differ (local_jupyterhub_config.py: KubeSpawner builds the pod, a local
process stands in for it, standin_spawner.py). The proxy serves https with a certificate made by
the stack's own code, which Chromium trusts by its key and nothing else. Both are stopped with
everything they started when the `local_hub` context ends.

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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components import tls
from components.hub_config import document as hub_config
from program import ROOT
from rendered import RenderedHub, render_hub

HERE = Path(__file__).resolve().parent
CHP = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"


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


def require_browser_tools() -> None:
    missing = [str(p) for p in (CHP, Path(CHROMIUM)) if not p.exists()] + [
        tool for tool in ("node",) if shutil.which(tool) is None
    ]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run tests/hub/setup.sh first")


@dataclass
class LocalHub:
    base_url: str  # https://localhost:<port>, through the proxy
    rendered: RenderedHub
    work: Path
    hub: subprocess.Popen
    driver_env: dict[str, str]  # for a node driver: CHROMIUM, TRUSTED_SPKI
    trusted: ssl.SSLContext  # trusts the proxy's certificate and nothing else
    stopped: dict[str, Stopped]  # "proxy", "hub", once the context has ended
    proxy: subprocess.Popen
    proxy_command: list[str]
    env: dict[str, str]  # the hub's and the proxy's environment
    processes: ExitStack  # stops the hub, the proxy and what they started

    def stop_proxy(self) -> None:
        """As when the proxy's pod is deleted: the proxy ends (start_proxy starts a new one)."""
        self.proxy.terminate()
        self.proxy.wait(10)

    def start_proxy(self, name: str) -> None:
        """A new proxy with no routes on the same addresses (its log `<name>.log`), as a new pod."""
        log = self.work / f"{name}.log"
        self.proxy = start(self.processes, name, self.proxy_command, self.env, log, self.work, self.stopped)
        wait_for(f"{self.base_url}/_chp_healthz", self.proxy, log, context=self.trusted)

    @property
    def hub_log(self) -> str:
        return (self.work / "hub.log").read_text()

    def drive(self, script: str, *args: str, timeout: float = 60) -> dict[str, Any]:
        """Runs the node driver `script` (in this directory) against the hub; what it saw (its last line, JSON)."""
        driver = subprocess.run(
            ["node", str(HERE / script), self.base_url, *args],
            capture_output=True, text=True, timeout=timeout, env=self.driver_env, cwd=HERE,
        )
        logs = f"driver stderr:\n{driver.stderr[-2000:]}\nhub log:\n{self.hub_log[-4000:]}"
        assert driver.returncode == 0, logs
        seen = json.loads(driver.stdout.strip().splitlines()[-1])
        assert "error" not in seen, f"{seen}\n{logs}"
        return seen

    def api(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """The hub's REST API through the proxy: status and JSON answer."""
        request = urllib.request.Request(
            f"{self.base_url}/hub/api{path}", method=method, data=json.dumps(body or {}).encode(),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.trusted) as response:
                text = response.read().decode()
                return response.status, json.loads(text) if text else {}
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            return error.code, json.loads(text) if text.startswith("{") else {"message": text}


@contextmanager
def local_hub(config: dict[str, Any], work: Path, extra_env: dict[str, str] | None = None) -> Iterator[LocalHub]:
    """The hub of stack `config` and its proxy, serving https on a free loopback port, in `work`."""
    require_browser_tools()
    rendered = render_hub(config, (), work)
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
        **(extra_env or {}),
    }
    hub_address = f"http://127.0.0.1:{ports['HUB_PORT']}"
    base_url = f"https://localhost:{ports['PROXY_PORT']}"
    stopped: dict[str, Stopped] = {}
    with ExitStack() as stack:
        proxy_command = hub_config.proxy_command(
            hub_address, ip="127.0.0.1", port=ports["REDIRECT_PORT"], api_ip="127.0.0.1",
            api_port=ports["PROXY_API_PORT"], https_port=ports["PROXY_PORT"], tls_dir=str(tls_dir),
        )
        proxy_command = [str(CHP), *proxy_command[1:]]
        proxy = start(stack, "proxy", proxy_command, env, work / "proxy.log", work, stopped)
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
        driver_env = {**env, "CHROMIUM": CHROMIUM, "TRUSTED_SPKI": spki_hash(certificate.certificate)}
        yield LocalHub(base_url, rendered, work, hub, driver_env, trusted, stopped, proxy, proxy_command, env, stack)
