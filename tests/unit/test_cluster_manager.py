"""The local cluster manager's parts alone (cluster/localcluster/): where a cluster lives, the ports
it may take, its control plane's processes, and the command line's answers. No control plane runs:
the processes here are `sleep`s standing in for its components (tests/controlplane starts a real one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vocab.versions import REPO

from cluster.localcluster import __main__ as cli
from cluster.localcluster import ports
from cluster.localcluster.controlplane import COMPONENTS, SIMULATED_LOAD_BALANCER, ControlPlane, fingerprint, stages
from cluster.localcluster.nodes import RealNodes
from cluster.localcluster.settings import ClusterPaths, tools


# --- where a cluster lives ------------------------------------------------------------------------

def test_defaults_are_local_env_s_relative_to_the_repository() -> None:
    paths = ClusterPaths.from_environment({})
    assert paths.name == "mlplatform"
    assert paths.workdir == REPO / ".local" / "kwok"
    assert paths.kubeconfig == REPO / ".local" / "kubeconfig"
    assert paths.stack_config == REPO / "Pulumi.dev.yaml"
    assert paths.nodes_dir == REPO / ".local" / "kwok" / "clusters" / "mlplatform" / "nodes"


def test_environment_moves_every_place(tmp_path: Path) -> None:
    paths = ClusterPaths.from_environment({
        "MLPLATFORM_CLUSTER_NAME": "other", "MLPLATFORM_CLUSTER_DIR": str(tmp_path / "kwok"),
        "MLPLATFORM_KUBECONFIG": "relative/kubeconfig", "MLPLATFORM_STACK_CONFIG": str(tmp_path / "stack.yaml"),
    })
    assert (paths.name, paths.cluster_dir) == ("other", tmp_path / "kwok" / "clusters" / "other")
    assert paths.kubeconfig == REPO / "relative" / "kubeconfig", "a relative path is the repository's"
    assert paths.stack_config == tmp_path / "stack.yaml"


def test_an_empty_variable_keeps_the_default() -> None:
    assert ClusterPaths.from_environment({"MLPLATFORM_CLUSTER_NAME": ""}).name == "mlplatform"


# --- ports ------------------------------------------------------------------------------------------

PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:5DC1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0
   1: 0100007F:5DC2 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0
"""
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0
"""


def test_listeners_are_read_from_proc_net_tcp_and_tcp6(tmp_path: Path) -> None:
    (tmp_path / "tcp").write_text(PROC_NET_TCP)
    (tmp_path / "tcp6").write_text(PROC_NET_TCP6)
    assert ports.listeners(tmp_path) == [ports.Listener("127.0.0.1", 24001, 111), ports.Listener("::1", 8080, 333)]


def test_a_socket_this_process_listens_on_is_found_with_its_owner() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        (found,) = [listener for listener in ports.listeners() if listener.port == port]
        assert found.address == "127.0.0.1"
        assert ports.owners({found.inode}) == {found.inode: os.getpid()}


def test_new_ports_are_distinct_free_and_in_range() -> None:
    taken = set(range(ports.FIRST_PORT, ports.LAST_PORT - 9))  # ten left free
    picked = ports.pick_free(6, taken)
    assert len(set(picked)) == 6
    assert all(ports.LAST_PORT - 9 <= p <= ports.LAST_PORT for p in picked), picked


def test_too_few_free_ports_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="only 2 free ports in 20000-29999, 6 needed"):
        ports.pick_free(6, set(range(ports.FIRST_PORT, ports.LAST_PORT - 1)))


# --- the control plane's processes -------------------------------------------------------------------

@pytest.fixture
def plane(tmp_path: Path) -> ControlPlane:
    """A control plane whose cluster directory exists, with no process of its own yet."""
    paths = ClusterPaths("unit", tmp_path / "kwok", tmp_path / "kubeconfig", tmp_path / "stack.yaml")
    paths.cluster_dir.joinpath("pids").mkdir(parents=True)
    return ControlPlane(paths, tools())


@pytest.fixture
def run_in(plane: ControlPlane) -> Iterator[Callable[..., subprocess.Popen]]:
    """run_in(CWD, [PID_FILE]): a process standing in for a component, the cluster's when CWD is
    its directory; PID_FILE names the component whose pid file gets its pid."""
    started: list[subprocess.Popen] = []

    def run(cwd: Path, pid_file: str | None = None, argv: tuple[str, ...] = ("sleep", "600")) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        if pid_file:
            (plane.dir / "pids" / f"{pid_file}.pid").write_text(str(proc.pid))
        return proc

    yield run
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_component_is_alive_while_its_pid_runs_in_the_cluster_s_directory(plane: ControlPlane, run_in,
                                                                              tmp_path: Path) -> None:
    etcd = plane.components[COMPONENTS.index("etcd")]
    assert not etcd.alive(), "no pid file"
    run_in(tmp_path, "etcd")
    assert not etcd.alive(), "a pid that runs elsewhere (another program, after a reboot) is not the component"
    proc = run_in(plane.dir, "etcd")
    assert etcd.pid() == proc.pid
    proc.kill()
    proc.wait()
    assert not etcd.alive(), "a dead pid is not the component"


def test_alive_only_with_every_component(plane: ControlPlane, run_in) -> None:
    for name in COMPONENTS[:-1]:
        run_in(plane.dir, name)
    assert not plane.alive(), f"{COMPONENTS[-1]} has no process"
    run_in(plane.dir, COMPONENTS[-1])
    assert plane.alive()


def test_stop_ends_every_process_of_the_cluster_and_no_other(plane: ControlPlane, run_in, tmp_path: Path) -> None:
    with_pid_file = run_in(plane.dir, "etcd")
    outliving_its_pid_file = run_in(plane.dir)
    elsewhere = run_in(tmp_path)
    plane.stop()
    assert with_pid_file.wait(5) is not None and outliving_its_pid_file.wait(5) is not None
    assert elsewhere.poll() is None, "stop() ended a process that is not the cluster's"
    assert not list((plane.dir / "pids").iterdir()), "pid files left"


def test_delete_returns_once_the_processes_kwokctl_stopped_have_exited(plane: ControlPlane, run_in, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """kwokctl's delete signals the components and removes the cluster's directory: a component
    still exiting then has no working directory to be found by, and delete() waits for it by pid."""
    (plane.dir / "kwok.yaml").write_text("kind: KwokctlConfiguration\n")
    # A component that takes 3 s to exit after SIGTERM, as a loaded API server does.
    slow = run_in(plane.dir, "kube-apiserver", argv=(sys.executable, "-c", "import signal, sys, time\n"
                  "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(3), sys.exit(0)))\n"
                  "print('ready', flush=True)\ntime.sleep(600)"))
    assert slow.stdout.readline() == "ready\n"
    # kwokctl's delete, as far as this is concerned: SIGTERM by pid file, then the directory gone.
    kwokctl = tmp_path / "kwokctl"
    kwokctl.write_text(f"#!/bin/sh\nkill -TERM $(cat {plane.dir}/pids/*.pid)\nrm -rf {plane.dir}\n")
    kwokctl.chmod(0o755)
    monkeypatch.setattr(plane, "kwokctl", kwokctl)
    plane.delete()
    assert slow.poll() is not None, "delete() returned while a process it stopped was still exiting"


def test_a_port_taken_by_another_program_is_named_with_it(plane: ControlPlane) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        (plane.dir / "kwok.yaml").write_text(f"  ports:\n  - name: http\n    port: {port}\n")
        # This test's process runs outside the cluster's directory: its listener is another program's.
        assert plane.taken_port().startswith(f"{port} (pid {os.getpid()}: "), plane.taken_port()
    assert plane.taken_port() is None, "a closed port is free again"


def test_the_cluster_s_own_listener_does_not_count_as_taken(plane: ControlPlane, run_in) -> None:
    listener = run_in(plane.dir, argv=(sys.executable, "-c", "import socket, time\n"
                                       "s = socket.create_server(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True)\n"
                                       "time.sleep(600)"))
    port = int(listener.stdout.readline())
    (plane.dir / "kwok.yaml").write_text(f"    port: {port}\n")
    assert plane.taken_port() is None


def test_the_fingerprint_changes_with_a_version(plane: ControlPlane) -> None:
    plane.fingerprint_file.write_text("not what it was created from\n")
    assert plane.config_changed()
    plane.fingerprint_file.unlink()
    assert not plane.config_changed(), "a cluster without a fingerprint (made before they were kept) is not warned"
    plane.fingerprint_file.write_text(fingerprint(plane.tools) + "\n")
    assert not plane.config_changed()
    assert fingerprint({**plane.tools, "KWOK_VERSION": "v0.0.1"}) != fingerprint(plane.tools)


def test_a_cluster_with_real_nodes_goes_without_kwok_s_load_balancer() -> None:
    assert SIMULATED_LOAD_BALANCER in {s.name for s in stages(real=False)}
    assert SIMULATED_LOAD_BALANCER not in {s.name for s in stages(real=True)}
    assert len(stages(real=True)) == len(stages(real=False)) - 1


# --- the command line --------------------------------------------------------------------------------

def cluster_env(tmp_path: Path) -> dict[str, str]:
    return {"MLPLATFORM_CLUSTER_NAME": "unit", "MLPLATFORM_CLUSTER_DIR": str(tmp_path / "kwok"),
            "MLPLATFORM_KUBECONFIG": str(tmp_path / "kubeconfig"),
            "MLPLATFORM_STACK_CONFIG": str(tmp_path / "Pulumi.test.yaml")}


def bin_cluster(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO / "bin" / "cluster"), *args], env={"PATH": "/usr/bin:/bin", **cluster_env(tmp_path)},
                          capture_output=True, text=True, timeout=60)


def test_status_of_no_cluster_is_absent(tmp_path: Path) -> None:
    out = bin_cluster(tmp_path, "status")
    assert (out.returncode, out.stdout) == (4, "absent\n"), out.stderr


def test_status_of_a_stopped_cluster_names_each_stopped_component(tmp_path: Path) -> None:
    cluster_dir = ClusterPaths.from_environment(cluster_env(tmp_path)).cluster_dir
    cluster_dir.mkdir(parents=True)
    (cluster_dir / "kwok.yaml").write_text("")
    out = bin_cluster(tmp_path, "status")
    assert (out.returncode, out.stdout) == (3, "stopped\n"), out.stderr
    assert out.stderr.splitlines() == [f"control-plane {name}: stopped" for name in COMPONENTS]


def test_status_of_a_cluster_whose_real_nodes_were_never_made_is_stopped(tmp_path: Path) -> None:
    """A cluster created for real nodes whose first node failed to come up: `up` makes them."""
    paths = ClusterPaths.from_environment(cluster_env(tmp_path))
    paths.nodes_dir.mkdir(parents=True)
    (paths.cluster_dir / "kwok.yaml").write_text("")
    out = bin_cluster(tmp_path, "status")
    assert (out.returncode, out.stdout) == (3, "stopped\n"), out.stderr
    lines = out.stderr.splitlines()
    assert lines[:len(COMPONENTS)] == [f"control-plane {name}: stopped" for name in COMPONENTS]
    assert "cluster network: stopped" in lines and "cluster egress: stopped" in lines, out.stderr
    assert "cluster nodes: none (`bin/cluster up` creates them)" in lines, out.stderr


def test_no_command_prints_the_usage(tmp_path: Path) -> None:
    out = bin_cluster(tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("Usage: bin/cluster up [--real] | down | status | kubectl ARGS...")


def nodes_of(tmp_path: Path) -> tuple[ClusterPaths, RealNodes]:
    paths = ClusterPaths.from_environment(cluster_env(tmp_path))
    return paths, RealNodes(paths.nodes_dir, tools())


@pytest.mark.parametrize(("args", "environ", "error"), [
    (["--rael"], {}, r"unknown option to up: --rael \(usage: bin/cluster up \[--real\]\)"),
    ([], {"MLPLATFORM_NODES": "yes"}, "MLPLATFORM_NODES=yes: must be real or simulated"),
])
def test_bad_up_options_are_refused(tmp_path: Path, args: list[str], environ: dict[str, str], error: str) -> None:
    with pytest.raises(SystemExit, match=error):
        cli.wants_real_nodes(*nodes_of(tmp_path), args, environ)


@pytest.mark.parametrize(("provider", "args", "environ", "real"), [
    ("kwok", [], {}, False),
    ("kwok", ["--real"], {}, True),
    ("kwok", [], {"MLPLATFORM_NODES": "real"}, True),
    ("local", [], {}, True),  # a `local` stack's pods run on real nodes: it gets them unasked
])
def test_who_gets_real_nodes(tmp_path: Path, provider: str, args: list[str], environ: dict[str, str],
                             real: bool) -> None:
    paths, nodes = nodes_of(tmp_path)
    paths.stack_config.write_text(f"config:\n  mlplatform:cluster:\n    provider: {provider}\n")
    assert cli.wants_real_nodes(paths, nodes, args, environ) is real


def test_a_cluster_with_real_nodes_keeps_them(tmp_path: Path) -> None:
    paths, nodes = nodes_of(tmp_path)
    paths.nodes_dir.mkdir(parents=True)
    assert cli.wants_real_nodes(paths, nodes, [], {}) is True
