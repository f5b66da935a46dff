"""The training operator of the simulated mode as a cluster-manager part
(cluster/localcluster/trainingoperator.py, `bin/training-operator`), without a cluster: where its
files go, the command line it is started with, its ServiceAccount's kubeconfig, the certificates it
is given, and the readiness loop against a fake endpoint on 127.0.0.1. kubectl is a script that
answers as the API server would; tests/e2e runs the real operator against a real API server."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vocab.tfjob_api import CERT_DIR, OPERATOR_NAME, OPERATOR_NAMESPACE, WEBHOOK_SECRET
from vocab.versions import REPO

from cluster.localcluster import trainingoperator as to
from cluster.localcluster.process import Daemon
from cluster.localcluster.settings import ClusterPaths

ENTRY = REPO / "bin" / "training-operator"


@pytest.fixture
def fake_tools(tmp_path: Path) -> dict[str, str]:
    """A tools cache with a built operator (its .stamp) and a kubectl that answers from files:
    kubectl.<first argument>.json is what it prints; no such file, and it fails as for a missing object."""
    operator_dir, kube_dir = tmp_path / "tools" / "training-operator", tmp_path / "tools" / "kubernetes"
    (operator_dir / "bin").mkdir(parents=True)
    (operator_dir / ".stamp").touch()
    (kube_dir / "bin").mkdir(parents=True)
    kubectl = kube_dir / "bin" / "kubectl"
    kubectl.write_text(f"""#!/bin/sh
echo "$@" >> "{tmp_path}/kubectl.calls"
shift 2  # --kubeconfig PATH
[ -f "{tmp_path}/kubectl.$1.json" ] || {{ echo "Error from server (NotFound)" >&2; exit 1; }}
cat "{tmp_path}/kubectl.$1.json"
""")
    kubectl.chmod(0o755)
    return {"TRAINING_OPERATOR_DIR": str(operator_dir), "KUBERNETES_DIR": str(kube_dir)}


@pytest.fixture
def operator(tmp_path: Path, fake_tools: dict[str, str]) -> to.TrainingOperator:
    paths = ClusterPaths.from_environment({"MLPLATFORM_CLUSTER_NAME": "unit", "MLPLATFORM_CLUSTER_DIR": str(tmp_path / "kwok"),
                                           "MLPLATFORM_KUBECONFIG": str(tmp_path / "kubeconfig")})
    return to.TrainingOperator(paths, fake_tools)


def answer(tmp_path: Path, command: str, body: object) -> None:
    (tmp_path / f"kubectl.{command}.json").write_text(body if isinstance(body, str) else json.dumps(body))


# --- where its files go, and how it is started --------------------------------------------------


def test_its_files_are_beside_the_cluster_s_and_named_after_it(operator: to.TrainingOperator, tmp_path: Path) -> None:
    # tests/e2e and `make down` find them here; two clusters never share them.
    state = tmp_path / "kwok" / "training-operator"
    assert operator.dir == state
    assert (operator.daemon.pid_file, operator.log_file) == (state / "unit.pid", state / "unit.log")
    assert (operator.kubeconfig, operator.probe_file, operator.certs) == (
        state / "unit.kubeconfig", state / "unit.probe", state / "unit.certs")
    assert operator.admin_kubeconfig == tmp_path / "kubeconfig"


def test_it_runs_as_its_namespace_s_operator_with_its_own_kubeconfig(operator: to.TrainingOperator) -> None:
    assert operator.daemon.env == {"KUBECONFIG": str(operator.kubeconfig), "MY_POD_NAMESPACE": OPERATOR_NAMESPACE}
    # The pid file counts only while it names the operator's binary, never the launcher.
    assert operator.daemon.argv[0] == str(operator.binary)
    assert operator.daemon.launcher == to.launcher(operator.certs)


def test_the_launcher_binds_its_certificates_at_the_fixed_directory_privately(tmp_path: Path) -> None:
    argv = to.launcher(tmp_path / "certs")
    assert argv[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert argv[4:7] == ["sh", "-c", to.MOUNT_CERTIFICATES]
    assert argv[7:] == ["sh", str(tmp_path / "certs"), CERT_DIR]


def test_only_tfjobs_metrics_off_probes_on_loopback() -> None:
    assert to.operator_args(1234, 5678) == ["--enable-scheme=tfjob", "--metrics-bind-address=0",
                                            "--health-probe-bind-address=127.0.0.1:1234",
                                            "--webhook-server-port=5678"]


def test_a_launcher_that_execs_leaves_the_daemon_s_own_pid(tmp_path: Path) -> None:
    # The launcher's shape without its mount (which needs root): its operands, then exec "$@".
    sleep = shutil.which("sleep")
    assert sleep
    daemon = Daemon("sleeper", [sleep, "30"], tmp_path, launcher=["sh", "-c", 'shift 2 && exec "$@"', "sh", "a", "b"],
                    log_file=tmp_path / "sleeper.log")
    daemon.start()
    try:
        pid = daemon.pid()
        assert pid is not None and os.readlink(f"/proc/{pid}/exe") == os.path.realpath(sleep)
        assert (tmp_path / "sleeper.log").exists() and not (tmp_path / "logs").exists()
    finally:
        daemon.stop(grace=5)
    assert not daemon.alive() and not daemon.pid_file.exists()


# --- what it is given: a token, the webhook certificate ------------------------------------------


def test_the_service_account_kubeconfig_keeps_the_server_and_ca_and_no_admin_credential() -> None:
    cluster = {"server": "https://127.0.0.1:32766", "certificate-authority": "/pki/ca.crt",
               "client-certificate": "/pki/admin.crt"}
    config = to.service_account_kubeconfig(cluster, "TOKEN")
    assert config["clusters"] == [{"name": "local", "cluster": {"server": "https://127.0.0.1:32766",
                                                                 "certificate-authority": "/pki/ca.crt"}}]
    assert config["users"] == [{"name": OPERATOR_NAME, "user": {"token": "TOKEN"}}]
    context = config["contexts"][0]
    assert config["current-context"] == context["name"]
    assert context["context"] == {"cluster": "local", "user": OPERATOR_NAME, "namespace": OPERATOR_NAMESPACE}


def test_the_kubeconfig_is_written_for_its_owner_only(operator: to.TrainingOperator, tmp_path: Path) -> None:
    answer(tmp_path, "config", {"clusters": [{"name": "kwok", "cluster": {"server": "https://127.0.0.1:1",
                                                                          "certificate-authority": "/ca.crt"}}]})
    answer(tmp_path, "create", "the-token\n")
    operator.dir.mkdir(parents=True)
    operator.write_kubeconfig()
    assert stat.S_IMODE(operator.kubeconfig.stat().st_mode) == 0o600
    config = json.loads(operator.kubeconfig.read_text())
    assert config["users"][0]["user"] == {"token": "the-token"}
    calls = (tmp_path / "kubectl.calls").read_text().splitlines()
    assert f"--kubeconfig {tmp_path / 'kubeconfig'} create token {OPERATOR_NAME} -n {OPERATOR_NAMESPACE} --duration 24h" \
        in calls


def secret(**data: bytes) -> dict:
    return {"data": {key.replace("_", "."): base64.b64encode(value).decode() for key, value in data.items()}}


def test_the_secret_s_certificate_counts_only_when_whole() -> None:
    assert to.certificate_files({}) is None
    assert to.certificate_files(secret(ca_crt=b"CA", tls_crt=b"CERT")) is None
    assert to.certificate_files({"data": {"ca.crt": "", "tls.crt": "", "tls.key": ""}}) is None
    assert to.certificate_files(secret(ca_crt=b"CA", tls_crt=b"CERT", tls_key=b"KEY")) == {
        "ca.crt": b"CA", "tls.crt": b"CERT", "tls.key": b"KEY"}


def test_certificates_are_mounted_once_the_secret_has_them(operator: to.TrainingOperator, tmp_path: Path) -> None:
    operator.certs.mkdir(parents=True)
    operator.mount_certificates()  # no Secret yet
    assert list(operator.certs.iterdir()) == []
    answer(tmp_path, "get", secret(ca_crt=b"CA", tls_crt=b"CERT", tls_key=b"KEY"))
    operator.mount_certificates()
    assert {p.name: p.read_bytes() for p in operator.certs.iterdir()} == {
        "ca.crt": b"CA", "tls.crt": b"CERT", "tls.key": b"KEY"}
    # Among them the webhook's private key: no other user of this machine may read it.
    assert {stat.S_IMODE(p.stat().st_mode) for p in operator.certs.iterdir()} == {0o600}
    assert f"get secret {WEBHOOK_SECRET} -n {OPERATOR_NAMESPACE} -o json" in (tmp_path / "kubectl.calls").read_text()


# --- readiness --------------------------------------------------------------------------------


class Endpoint:
    """A fake /readyz on 127.0.0.1 that fails its first `failures` requests."""

    def __init__(self, failures: int):
        self.failures = failures
        self.requests: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.requests.append(self.path)
                self.send_response(500 if len(endpoint.requests) <= endpoint.failures else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    made = Endpoint(failures=2)
    thread = threading.Thread(target=made.server.serve_forever, daemon=True)
    thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()


def test_it_is_ready_once_readyz_answers_with_success(endpoint: Endpoint, tmp_path: Path) -> None:
    ticks: list[int] = []
    to.wait_ready(endpoint.port, lambda: True, lambda: ticks.append(1), 5, tmp_path / "log", interval=0.01)
    assert endpoint.requests == ["/readyz"] * 3
    # The certificates are looked for between polls, as long as it is not ready.
    assert len(ticks) == 2


def test_a_proxy_in_the_environment_is_never_asked(endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint.failures = 0
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert to.answers(endpoint.port)


def test_nothing_listening_is_not_ready() -> None:
    assert not to.answers(to.free_port())


def test_waiting_ends_when_the_process_is_gone(endpoint: Endpoint, tmp_path: Path) -> None:
    endpoint.failures = 1000
    with pytest.raises(RuntimeError, match=f"the operator exited; see {tmp_path / 'log'}"):
        to.wait_ready(endpoint.port, lambda: False, lambda: None, 5, tmp_path / "log", interval=0.01)


def test_waiting_ends_at_the_timeout(endpoint: Endpoint, tmp_path: Path) -> None:
    endpoint.failures = 1000
    with pytest.raises(RuntimeError, match="did not become ready in 0.2s"):
        to.wait_ready(endpoint.port, lambda: True, lambda: None, 0.2, tmp_path / "log", interval=0.01)
    assert len(endpoint.requests) > 1


# --- the command line -------------------------------------------------------------------------


def test_start_needs_the_built_operator(operator: to.TrainingOperator, capsys: pytest.CaptureFixture[str]) -> None:
    (operator.tool_dir / ".stamp").unlink()
    assert to.start(operator) == 1
    assert "Run `tools/build.sh operator` once" in capsys.readouterr().err


def test_start_needs_the_cluster(operator: to.TrainingOperator, capsys: pytest.CaptureFixture[str]) -> None:
    assert to.start(operator) == 1
    assert f"no cluster kubeconfig at {operator.admin_kubeconfig}: run `make up` first" in capsys.readouterr().err


def test_start_without_the_stack_s_operator_starts_nothing(operator: to.TrainingOperator, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    operator.admin_kubeconfig.write_text("{}")
    assert to.start(operator) == 0  # no ServiceAccount: kubectl's `get` finds nothing
    assert "mnist.enabled false?): not started" in capsys.readouterr().err
    assert not operator.dir.exists()


def test_stop_when_stopped_removes_what_is_left_and_signals_nothing(operator: to.TrainingOperator) -> None:
    operator.certs.mkdir(parents=True)
    # A pid file naming another program (after a reboot, say): this test's own process.
    operator.daemon.pid_file.write_text(f"{os.getpid()}\n")
    operator.kubeconfig.write_text("{}")
    operator.probe_file.write_text("1\n")
    operator.log_file.write_text("kept\n")
    assert to.stop(operator) == 0
    assert sorted(p.name for p in operator.dir.iterdir()) == ["unit.log"]


def test_status_without_a_process_is_stopped(operator: to.TrainingOperator, capsys: pytest.CaptureFixture[str]) -> None:
    assert to.status(operator) == 3
    assert capsys.readouterr().out == "stopped\n"


@pytest.mark.parametrize("argv", [[], ["restart"], ["start", "extra"]])
def test_anything_else_prints_the_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert to.main(argv, {}) == 2
    assert capsys.readouterr().err.startswith("Usage: bin/training-operator start | stop | status | logs")


def test_the_entry_runs_the_part_with_the_system_python(tmp_path: Path) -> None:
    # No virtualenv on PATH or PYTHONPATH: the entry must need none.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           "MLPLATFORM_CLUSTER_DIR": str(tmp_path / "kwok"), "MLPLATFORM_KUBECONFIG": str(tmp_path / "kubeconfig")}
    status = subprocess.run([str(ENTRY), "status"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (status.returncode, status.stdout) == (3, "stopped\n"), status.stderr
    stop = subprocess.run([str(ENTRY), "stop"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert stop.returncode == 0, stop.stderr
    usage = subprocess.run([str(ENTRY)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert usage.returncode == 2 and "Usage: bin/training-operator" in usage.stderr
