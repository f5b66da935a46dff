"""Usage: bin/training-operator start | stop | status | logs
  start   start the operator against the local cluster, or leave the running one; wait until it is ready
  stop    stop it and remove what it was given (its token, its certificates); nothing to do when stopped
  status  print running | stopped (exit 0 | 3)
  logs    print its log

The Kubeflow training operator (v1.9, TFJobs only) as a process on this machine, against the local
cluster.

Why a local process: on the simulated cluster no container runs, so the operator Deployment that
the stack declares stands for it but reconciles nothing. This process is the real reconciler,
built from its Go module by `tools/build.sh operator`. It runs as the operator's own
ServiceAccount (a token from the TokenRequest API), so the least-privilege RBAC that the stack
declares is exactly what it has. Its admission webhook cannot be reached by the API server without
a pod network, so on the simulated cluster the stack's ValidatingWebhookConfiguration lists no
webhook and the TFJob CRD's validation rules stand in for it; the operator still generates its
webhook certificate into its Secret and its CA into that configuration (it waits for both before
starting its controllers).

Where: the cluster's places (settings.ClusterPaths: MLPLATFORM_CLUSTER_NAME, MLPLATFORM_CLUSTER_DIR,
MLPLATFORM_KUBECONFIG, defaults in cluster/local.env); its own files go to
<cluster dir>/training-operator/<cluster name>.{pid,log,kubeconfig,probe,certs}. The operator's
names are the stack's own, from vocab/tfjob_api.py.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from vocab.tfjob_api import CERT_DIR, OPERATOR_NAME, OPERATOR_NAMESPACE, WEBHOOK_SECRET

from .process import Daemon
from .settings import ClusterPaths, tools

USAGE = __doc__.split("\n\n")[0]
NAMESPACE = OPERATOR_NAMESPACE
SERVICE_ACCOUNT = OPERATOR_NAME
READY_TIMEOUT = 60
STOP_GRACE = 15
TOKEN_DURATION = "24h"
# What the kubelet would mount from the webhook Secret, in the order they are replaced.
CERTIFICATE_KEYS = ("ca.crt", "tls.crt", "tls.key")
# The operator's certificate directory is fixed, so each operator gets its own in a private mount
# namespace: the launcher binds its directory ($1) there ($2), then execs the operator.
MOUNT_CERTIFICATES = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'

# The probe is on loopback: a proxy from the environment must never be asked for it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def log(message: str) -> None:
    print(f"bin/training-operator: {message}", file=sys.stderr)


class TrainingOperator:
    def __init__(self, paths: ClusterPaths, tools: Mapping[str, str]):
        self.paths = paths
        self.admin_kubeconfig = paths.kubeconfig
        # Beside the cluster's own state, so that two clusters (a developer's and the tests') never share it.
        self.dir = paths.workdir / "training-operator"
        self.tool_dir = Path(tools["TRAINING_OPERATOR_DIR"])
        self.binary = self.tool_dir / "bin" / "training-operator"
        self.kubectl_binary = Path(tools["KUBERNETES_DIR"]) / "bin" / "kubectl"
        self.kubeconfig = self.dir / f"{paths.name}.kubeconfig"
        self.probe_file = self.dir / f"{paths.name}.probe"
        self.certs = self.dir / f"{paths.name}.certs"
        self.daemon = Daemon(paths.name, [str(self.binary)], self.dir, log_file=self.dir / f"{paths.name}.log",
                             launcher=launcher(self.certs),
                             env={"KUBECONFIG": str(self.kubeconfig), "MY_POD_NAMESPACE": NAMESPACE})

    @property
    def log_file(self) -> Path:
        return self.daemon.log_file

    def built(self) -> bool:
        return (self.tool_dir / ".stamp").is_file()

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.kubectl_binary), "--kubeconfig", str(self.admin_kubeconfig), *args],
                              check=check, capture_output=True, text=True)

    def declared(self) -> bool:
        """Whether the stack declares the operator (its ServiceAccount exists; mnist.enabled false has none)."""
        return self.kubectl("get", "serviceaccount", SERVICE_ACCOUNT, "-n", NAMESPACE, check=False).returncode == 0

    def start(self) -> None:
        if self.alive():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_kubeconfig()
        probe = free_port()
        self.probe_file.write_text(f"{probe}\n")
        shutil.rmtree(self.certs, ignore_errors=True)
        self.certs.mkdir(mode=0o700, parents=True)
        Path(CERT_DIR).mkdir(parents=True, exist_ok=True)  # the mount point, left empty outside
        self.daemon.argv = [str(self.binary), *operator_args(probe, free_port())]
        self.daemon.start()

    def ready(self) -> bool:
        port = self.probe_port()
        return self.alive() and port is not None and answers(port)

    def alive(self) -> bool:
        return self.daemon.alive()

    def stop(self) -> int | None:
        """Stops it and removes its token and certificates; the pid it stopped, if it ran."""
        pid = self.daemon.pid()
        self.daemon.stop(grace=STOP_GRACE)
        for path in (self.probe_file, self.kubeconfig):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.certs, ignore_errors=True)
        return pid

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        port = self.probe_port()
        if port is None:
            raise RuntimeError(f"no probe port in {self.probe_file}")
        wait_ready(port, self.alive, self.mount_certificates, timeout, self.log_file)

    def probe_port(self) -> int | None:
        try:
            return int(self.probe_file.read_text())
        except (OSError, ValueError):
            return None

    def write_kubeconfig(self) -> None:
        """A kubeconfig that authenticates as the operator's ServiceAccount, so it has the stack's
        RBAC and nothing more."""
        admin = json.loads(self.kubectl("config", "view", "--raw", "-o", "json").stdout)
        token = self.kubectl("create", "token", SERVICE_ACCOUNT, "-n", NAMESPACE,
                             "--duration", TOKEN_DURATION).stdout.strip()
        config = service_account_kubeconfig(admin["clusters"][0]["cluster"], token)
        write_private(self.kubeconfig, json.dumps(config, indent=2).encode())

    def mount_certificates(self) -> None:
        """In a pod the kubelet mounts the webhook Secret at the certificate directory, and the
        operator starts its controllers only once the files there match what it wrote into the
        Secret. Here this does the kubelet's part, once the Secret has its certificate."""
        secret = self.kubectl("get", "secret", WEBHOOK_SECRET, "-n", NAMESPACE, "-o", "json", check=False)
        files = certificate_files(json.loads(secret.stdout)) if secret.returncode == 0 else None
        if files is None:
            return
        # Each written whole before any is replaced: the operator never reads half a pair.
        for key, content in files.items():
            write_private(self.certs / f"{key}.new", content)
        for key in files:
            (self.certs / f"{key}.new").replace(self.certs / key)


def launcher(certs: Path) -> list[str]:
    """What runs the operator in a mount namespace of its own, with CERTS at its certificate directory."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", MOUNT_CERTIFICATES, "sh",
            str(certs), CERT_DIR]


def operator_args(probe_port: int, webhook_port: int) -> list[str]:
    # Metrics off and probes on loopback: nothing of it listens beyond this machine but its
    # webhook server, which serves only the TLS certificate the operator made itself.
    return ["--enable-scheme=tfjob", "--metrics-bind-address=0",
            f"--health-probe-bind-address=127.0.0.1:{probe_port}", f"--webhook-server-port={webhook_port}"]


def service_account_kubeconfig(cluster: Mapping[str, str], token: str) -> dict:
    """A kubeconfig for the admin kubeconfig's CLUSTER (its server and CA) that signs in with TOKEN."""
    kept = {key: cluster[key] for key in ("server", "certificate-authority", "certificate-authority-data")
            if key in cluster}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": kept}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": SERVICE_ACCOUNT,
                      "context": {"cluster": "local", "user": SERVICE_ACCOUNT, "namespace": NAMESPACE}}],
        "current-context": SERVICE_ACCOUNT,
    }


def certificate_files(secret: Mapping) -> dict[str, bytes] | None:
    """The webhook Secret's files as the kubelet would mount them; None until it has every one."""
    data = secret.get("data") or {}
    if not all(data.get(key) for key in CERTIFICATE_KEYS):
        return None
    return {key: base64.b64decode(data[key]) for key in CERTIFICATE_KEYS}


def write_private(path: Path, content: bytes) -> None:
    """Readable by its owner only from the first byte: a token, a private key."""
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(target, 0o600)
    with os.fdopen(target, "wb") as out:
        out.write(content)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int, timeout: float = 2) -> bool:
    """Whether the operator's readiness endpoint on 127.0.0.1:PORT answers with success."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}/readyz", timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, http.client.HTTPException):  # refused, reset, timed out, or an HTTP error status
        return False


def wait_ready(port: int, alive: Callable[[], bool], each: Callable[[], None], timeout: float,
               log_file: Path, interval: float = 0.5) -> None:
    """Polls the readiness endpoint until it answers, running EACH between polls; fails as soon as
    the process is gone, or after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while not answers(port):
        each()
        if not alive():
            raise RuntimeError(f"the operator exited; see {log_file}")
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the operator did not become ready in {timeout:g}s; see {log_file}")
        time.sleep(interval)


def start(operator: TrainingOperator) -> int:
    if not operator.built():
        log("the training operator is not built. Run `tools/build.sh operator` once.")
        return 1
    if not operator.admin_kubeconfig.is_file():
        log(f"no cluster kubeconfig at {operator.admin_kubeconfig}: run `make up` first.")
        return 1
    if not operator.kubectl_binary.is_file():
        log(f"kubectl is not built ({operator.kubectl_binary}). Run `tools/build.sh kube` once.")
        return 1
    if (pid := operator.daemon.pid()) is not None:
        log(f"already running (pid {pid})")
        return 0
    if not operator.declared():
        log(f"the stack declares no training operator (ServiceAccount {NAMESPACE}/{SERVICE_ACCOUNT} is absent; "
            "mnist.enabled false?): not started")
        return 0
    try:
        operator.start()
        operator.wait_ready()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        detail = f": {error.stderr.strip()}" if isinstance(error, subprocess.CalledProcessError) else ""
        log(f"{error}{detail}")
        # Nothing half-started stays behind: no process, no token, no certificates.
        if (pid := operator.stop()) is not None:
            log(f"stopped it (pid {pid})")
        return 1
    log(f"running as {NAMESPACE}/{SERVICE_ACCOUNT} (pid {operator.daemon.pid()}), log {operator.log_file}")
    return 0


def stop(operator: TrainingOperator) -> int:
    if (pid := operator.stop()) is not None:
        log(f"stopped (pid {pid})")
    return 0


def status(operator: TrainingOperator) -> int:
    running = operator.ready()
    print("running" if running else "stopped")
    return 0 if running else 3


def logs(operator: TrainingOperator) -> int:
    try:
        sys.stdout.write(operator.log_file.read_text(errors="replace"))
    except FileNotFoundError:
        log(f"no log at {operator.log_file}: it never ran here")
        return 1
    return 0


COMMANDS = {"start": start, "stop": stop, "status": status, "logs": logs}


def main(argv: list[str], environ: Mapping[str, str] = os.environ) -> int:
    if len(argv) != 1 or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](TrainingOperator(ClusterPaths.from_environment(environ), tools()))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
