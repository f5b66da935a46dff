"""A private control plane through its life: created, reused, reported, restarted after a killed or
a hung API server (objects kept, node leases released), refused a restart on a port another program
took, and removed. The tests share one cluster and run in file order."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

from cluster.localcluster import frontproxy
from cluster.localcluster.controlplane import COMPONENTS, ControlPlane, command_line, fingerprint
from cluster.localcluster.ports import FIRST_PORT, LAST_PORT, listeners
from polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
# kwok plays this node's kubelet (cluster/kwokctl.yaml: kwok takes the nodes annotated so).
NODE = """{"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": "sim-0", "annotations": {"kwok.x-k8s.io/node": "fake"}}}"""


def cluster(plane: ControlPlane, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("KWOK_", "MLPLATFORM_"))},
           "MLPLATFORM_CLUSTER_NAME": plane.name, "MLPLATFORM_CLUSTER_DIR": str(plane.paths.workdir),
           "MLPLATFORM_KUBECONFIG": str(plane.paths.kubeconfig),
           "MLPLATFORM_STACK_CONFIG": str(plane.paths.stack_config)}
    out = subprocess.run([str(ROOT / "bin" / "cluster"), *args], env=env, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"bin/cluster {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out


def pids(plane: ControlPlane) -> dict[str, int | None]:
    return {c.name: c.pid() for c in plane.components}


def api_server(plane: ControlPlane) -> int:
    pid = pids(plane)["kube-apiserver"]
    assert pid is not None, "the API server does not run"
    return pid


def lease_holder(plane: ControlPlane) -> str:
    out = cluster(plane, "kubectl", "get", "lease", "-n", "kube-node-lease", "sim-0", "-o",
                  "jsonpath={.spec.holderIdentity}", check=False)
    return out.stdout if out.returncode == 0 else ""


def test_start_creates_a_cluster_on_six_free_loopback_ports(plane: ControlPlane) -> None:
    assert plane.start(real=False) is True, "start() did not create the cluster"
    plane.write_kubeconfig()
    plane.wait_ready()
    assert plane.healthy()
    ports = plane.ports()
    assert len(ports) == 6 and all(FIRST_PORT <= p <= LAST_PORT for p in ports), ports
    bound = {(listener.address, listener.port) for listener in listeners() if listener.port in ports}
    assert bound == {("127.0.0.1", p) for p in ports}, "every component listens on its port, on loopback only"
    assert not plane.config_changed()


def test_up_reuses_a_running_cluster(plane: ControlPlane) -> None:
    before = pids(plane)
    out = cluster(plane, "up")
    assert "ready (reused)" in out.stderr, out.stderr
    assert pids(plane) == before, "up restarted components of a running cluster"


def test_status_reports_every_component(plane: ControlPlane) -> None:
    out = cluster(plane, "status")
    assert out.stdout == "running\n"
    lines = dict(line.split(": ", 1) for line in out.stderr.splitlines())
    assert list(lines) == [f"control-plane {name}" for name in COMPONENTS], out.stderr
    for name, pid in pids(plane).items():
        assert lines[f"control-plane {name}"].startswith(f"running (pid {pid})"), out.stderr
    assert lines["control-plane kube-apiserver"].endswith(f"ready at {plane.server()}"), out.stderr


def test_kubectl_reaches_the_cluster(plane: ControlPlane) -> None:
    cluster(plane, "kubectl", "create", "configmap", "survivor", "--from-literal=kept=yes")
    subprocess.run([str(plane.kubectl), "--kubeconfig", str(plane.paths.kubeconfig), "apply", "-f", "-"],
                   input=NODE, check=True, capture_output=True, text=True)
    out = cluster(plane, "kubectl", "get", "configmap", "survivor", "-o", "jsonpath={.data.kept}")
    assert out.stdout == "yes"
    wait_for(lambda: lease_holder(plane), 60, "kwok to hold node sim-0's lease")


def test_the_api_server_proxies_aggregated_apis_with_a_front_proxy_certificate(plane: ControlPlane) -> None:
    """What an aggregated API server (Kueue's visibility API) reads to trust the caller's identity
    the API server forwards: the cluster's own front-proxy CA and the one name it signs for, not
    the admin certificate kwokctl would lend the proxy."""
    out = cluster(plane, "kubectl", "get", "configmap", "-n", "kube-system", "extension-apiserver-authentication",
                  "-o", "json")
    data = json.loads(out.stdout)["data"]
    directory = plane.dir / frontproxy.DIRECTORY
    ca = (directory / f"{frontproxy.CA}.crt").read_text()
    assert data["requestheader-client-ca-file"].strip() == ca.strip(), "the published request-header CA is not ours"
    assert data["client-ca-file"].strip() != ca.strip(), "the front-proxy CA must not be the cluster CA"
    assert json.loads(data["requestheader-allowed-names"]) == [frontproxy.CLIENT_NAME]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    # The proxy's certificate is the one the CA signed, for client auth only; the keys are private.
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(directory / f"{frontproxy.CA}.crt"),
                               "-purpose", "sslclient", str(directory / f"{frontproxy.CLIENT}.crt")],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    args = command_line(api_server(plane))
    assert f"--proxy-client-cert-file={directory / frontproxy.CLIENT}.crt" in args, args
    for key in (directory / f"{frontproxy.CA}.key", directory / f"{frontproxy.CLIENT}.key"):
        assert key.stat().st_mode & 0o077 == 0, f"{key} is readable by others"


def test_killed_api_server_is_restarted_on_the_same_ports(plane: ControlPlane) -> None:
    ports, before, holder = plane.ports(), pids(plane), lease_holder(plane)
    killed = api_server(plane)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: pids(plane)["kube-apiserver"] is None, 10, "the killed API server to exit")
    out = cluster(plane, "status", check=False)
    assert (out.returncode, out.stdout) == (3, "stopped\n")
    assert "control-plane kube-apiserver: stopped" in out.stderr.splitlines(), out.stderr
    out = cluster(plane, "up")
    assert "ready (restarted)" in out.stderr, out.stderr
    assert plane.ports() == ports
    after = pids(plane)
    assert None not in after.values() and not set(after.values()) & set(before.values()), (before, after)
    kept = cluster(plane, "kubectl", "get", "configmap", "survivor", "-o", "jsonpath={.data.kept}")
    assert kept.stdout == "yes", "the objects did not survive the restart (etcd's data should)"
    # Without the old lease dropped, the new kwok would wait it out (200 s) before taking the node over.
    wait_for(lambda: lease_holder(plane) not in ("", holder), 30, "the new kwok to hold node sim-0's lease")


def test_hung_api_server_is_restarted(plane: ControlPlane) -> None:
    hung = api_server(plane)
    os.kill(hung, signal.SIGSTOP)
    try:
        out = cluster(plane, "status", check=False)
        assert (out.returncode, out.stdout) == (3, "stopped\n")
        assert f"control-plane kube-apiserver: not ready (pid {hung})" in out.stderr, out.stderr
        out = cluster(plane, "up")
        assert "ready (restarted)" in out.stderr, out.stderr
        assert api_server(plane) != hung and plane.healthy()
    finally:
        if pids(plane)["kube-apiserver"] == hung:
            os.kill(hung, signal.SIGCONT)


def test_a_changed_configuration_is_reported(plane: ControlPlane) -> None:
    plane.fingerprint_file.write_text("what an older cluster/ would have given\n")
    try:
        out = cluster(plane, "up")
        assert "changed since this cluster was created" in out.stderr, out.stderr
        assert "ready (reused)" in out.stderr, out.stderr
    finally:
        plane.fingerprint_file.write_text(fingerprint(plane.tools) + "\n")
    assert "changed since" not in cluster(plane, "up").stderr


def test_a_port_another_program_took_stops_the_restart(plane: ControlPlane) -> None:
    plane.stop()
    assert not plane.processes()
    port = plane.ports()[0]

    def take() -> socket.socket | None:
        try:
            return socket.create_server(("127.0.0.1", port))
        except OSError:
            return None

    # The killed components' connections may hold the port a while after they are gone (orphaned
    # sockets closing, up to net.ipv4.tcp_fin_timeout, 60 s by default).
    try:
        taker = wait_for(take, 90, f"port {port} free with the cluster stopped", interval=1)
    except AssertionError:
        sockets = subprocess.run(["ss", "-tanp", f"sport = :{port}"], capture_output=True, text=True).stdout
        raise AssertionError(f"port {port} is not free with the cluster stopped:\n{sockets}") from None
    with taker:
        out = cluster(plane, "up", check=False)
    assert out.returncode == 1, out.stderr
    assert f"its port {port} (pid {os.getpid()}: " in out.stderr, out.stderr
    assert "make down && make up" in out.stderr
    out = cluster(plane, "up")
    assert "ready (restarted)" in out.stderr, out.stderr


def test_down_leaves_nothing(plane: ControlPlane) -> None:
    assert plane.processes(), "the cluster is not running before down"
    cluster(plane, "down")
    base = str(plane.paths.workdir)
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (os.readlink(proc / "cwd").startswith(base)
                                        or base in (proc / "cmdline").read_bytes().decode(errors="replace")):
                left.append(proc.name)
        except OSError:
            continue
    assert not left, f"processes of the cluster left: {left}"
    assert not plane.paths.workdir.exists() and not plane.paths.kubeconfig.exists()
    out = cluster(plane, "status", check=False)
    assert (out.returncode, out.stdout) == (4, "absent\n")
