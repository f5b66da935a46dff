"""The control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
controller (the kubelet of every simulated node), built by `tools/build.sh kube` and started by
kwokctl's binary runtime, every one bound to 127.0.0.1 (cluster/kwokctl.yaml).

kwokctl creates, starts and stops the five together, with one configuration, so they are one
part here, with the node parts' start / ready / alive / stop; status() reports each component.

    start(real)  create the cluster on six ports picked now and kept with it, or start what is
                 not running of an existing one (kwokctl keeps the ports it was created with)
    ready()      the API server answers /readyz
    alive()      every component runs
    stop()       stop every process of the cluster; its state stays, start() runs it again
    delete()     stop it and remove its state and kubeconfig

The stages in cluster/stages/ replace kwok's defaults and decide how simulated nodes and their
pods behave.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import frontproxy, ports
from .process import exited, wait_exited
from .settings import CONTROL_PLANE_TOOLS, CONTROL_PLANE_VERSIONS, REPO, ClusterPaths, missing_tools

CONFIG_DIR = REPO / "cluster"
# What kwokctl's binary runtime starts, each with a pid file pids/<name>.pid.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")
# The options kwokctl takes a new cluster's ports from, in the order pick_ports() gives them.
PORT_OPTIONS = ("kubeApiserverPort", "etcdPort", "etcdPeerPort", "kubeControllerManagerPort",
                "kubeSchedulerPort", "kwokControllerPort")
# kwok's simulated load balancer, which a cluster with real nodes goes without (it has servicelb.py).
SIMULATED_LOAD_BALANCER = "service-load-balancer.yaml"
STOP_GRACE = 30  # seconds a process has to go after SIGTERM, before SIGKILL
READY_TIMEOUT = 120


def log(msg: str) -> None:
    print(f"bin/cluster: {msg}", file=sys.stderr, flush=True)


class Component:
    """One process kwokctl started. A pid counts as the component only while that process's
    working directory is the cluster's: kwokctl starts every component there, which tells them
    from any other cluster's, and from a program that took the pid over after a reboot."""

    def __init__(self, name: str, cluster_dir: Path):
        self.name = name
        self.cluster_dir = cluster_dir
        self.pid_file = cluster_dir / "pids" / f"{name}.pid"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if working_dir(pid) == self.cluster_dir else None

    def alive(self) -> bool:
        return self.pid() is not None


def working_dir(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None  # gone, a zombie, or not ours to read


class ControlPlane:
    def __init__(self, paths: ClusterPaths, tools: dict[str, str]):
        self.paths = paths
        self.name = paths.name
        self.dir = paths.cluster_dir
        self.kwokctl = Path(tools["KWOK_DIR"]) / "bin" / "kwokctl"
        self.kubectl = Path(tools["KUBERNETES_DIR"]) / "bin" / "kubectl"
        self.tools = tools
        # kwokctl's own, with the admin certificate; the one written for users is a copy.
        self.admin_kubeconfig = self.dir / "kubeconfig.yaml"
        # Written at creation: what the cluster was created from.
        self.fingerprint_file = self.dir / "mlplatform-config.sha256"
        self.components = [Component(name, self.dir) for name in COMPONENTS]

    # --- the part -----------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.dir / "kwok.yaml").is_file()

    def alive(self) -> bool:
        return all(c.alive() for c in self.components)

    def ready(self, kubeconfig: Path | None = None) -> bool:
        """The API server answers ready. By default through kwokctl's own kubeconfig, so a deleted
        user kubeconfig does not count as a dead cluster."""
        probe = [str(self.kubectl), "--kubeconfig", str(kubeconfig or self.admin_kubeconfig),
                 "--request-timeout=5s", "get", "--raw", "/readyz"]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def healthy(self) -> bool:
        """Every component runs and the API server answers: anything less is restarted by `up`."""
        return self.alive() and self.ready()

    def start(self, real: bool, extra_args: tuple[str, ...] = ()) -> bool:
        """Creates the cluster, or starts what is not running of it; True when it created it.
        REAL: the cluster has real nodes (its stages, below). EXTRA_ARGS: kwokctl's
        `--extra-args component=flag=value`, which take effect when the cluster is created."""
        created = not self.exists()
        self.paths.workdir.mkdir(parents=True, exist_ok=True)
        config = self.paths.workdir / f"{self.name}.kwokctl.yaml"
        text = (CONFIG_DIR / "kwokctl.yaml").read_text()
        if created:
            # `options` is the file's last block: the ports join it.
            text += "".join(f"  {option}: {port}\n" for option, port in zip(PORT_OPTIONS, self.pick_ports()))
        config.write_text(text)
        if created:
            # The API server proxies aggregated APIs with a front-proxy certificate of the cluster's
            # own, which extension servers trust for the caller's identity (frontproxy.py).
            extra_args = (*frontproxy.api_server_args(frontproxy.make(self.dir)), *extra_args)
        try:
            self.kwokctl_create(config, real, extra_args)
        finally:
            config.unlink(missing_ok=True)
        if created:
            self.fingerprint_file.write_text(fingerprint(self.tools) + "\n")
        return created

    def stop(self, seen_before: frozenset[int] = frozenset()) -> None:
        """kwokctl's own stop first (it kills by pid file), then whatever is left (a component that
        outlived its pid file), by pid: SIGTERM, and SIGKILL after STOP_GRACE seconds. Returns once
        every one of them is gone, and every one of SEEN_BEFORE (the cluster's processes seen before
        the caller began stopping them)."""
        # Taken before anything stops: a process in the middle of exiting has no working directory
        # to read, so processes() no longer finds it, yet it runs on for a moment in the cluster's
        # directory (seen: the API server, after kwokctl's stop, outliving `down`).
        seen = set(seen_before) | set(self.processes())
        if self.exists():
            subprocess.run([str(self.kwokctl), "--name", self.name, "--v=ERROR", "stop", "cluster"],
                           env=self.kwokctl_env(), capture_output=True)
        deadline = time.monotonic() + STOP_GRACE
        while pids := self.processes():
            seen.update(pids)
            sent = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
            for pid in pids:
                try:
                    os.kill(pid, sent)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        wait_exited(sorted(seen), max(0.0, deadline + STOP_GRACE - time.monotonic()))
        for pid in [pid for pid in seen if not exited(pid)]:
            log(f"process {pid} of the cluster is still exiting after {2 * STOP_GRACE} s")
        for pid_file in (self.dir / "pids").glob("*.pid"):
            pid_file.unlink()

    def delete(self) -> None:
        """Stops the cluster and removes its state, its kubeconfig, and kwok's work directory once
        it holds no other cluster."""
        # Taken before kwokctl's delete, which stops the processes and removes their working
        # directory: one still exiting then has none, and is found only by its pid (seen: an API
        # server still exiting after `down` returned, under load).
        running = frozenset(self.processes())
        if self.exists() and self.kwokctl.is_file():
            # The context kwokctl removes is in its own kubeconfig, which goes with the cluster.
            done = subprocess.run([str(self.kwokctl), "--name", self.name, "--v=WARN", "delete", "cluster",
                                   "--kubeconfig", str(self.admin_kubeconfig)], env=self.kwokctl_env())
            if done.returncode != 0:
                log("kwokctl could not delete the cluster; stopping its processes directly")
        # Whatever kwokctl did not stop (a component restarted behind its back, say), and the end
        # of what it did.
        self.stop(running)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.paths.kubeconfig.unlink(missing_ok=True)
        clusters = self.paths.workdir / "clusters"
        if self.paths.workdir.is_dir() and not (clusters.is_dir() and any(clusters.iterdir())):
            shutil.rmtree(self.paths.workdir)

    def status(self) -> dict[str, str]:
        out = {}
        for component in self.components:
            pid = component.pid()
            out[component.name] = "stopped" if pid is None else f"running (pid {pid})"
        pid = self.components[COMPONENTS.index("kube-apiserver")].pid()
        if pid is not None:
            # A part counts as running when its state says so first: a hung API server does not.
            where = server(self.admin_kubeconfig)
            out["kube-apiserver"] = f"running (pid {pid}), ready at {where}" if self.ready() else \
                f"not ready (pid {pid}): {where}/readyz does not answer"
        return out

    def server(self) -> str:
        """The API server the user's kubeconfig names."""
        return server(self.paths.kubeconfig)

    # --- what `up` needs besides ----------------------------------------------------------------

    def missing_tools(self) -> list[str]:
        return missing_tools(self.tools, CONTROL_PLANE_TOOLS)

    def config_changed(self) -> bool:
        """cluster/ or the tool versions changed since the cluster was created (it takes a new one)."""
        return self.fingerprint_file.is_file() and self.fingerprint_file.read_text().strip() != fingerprint(self.tools)

    def taken_port(self) -> str | None:
        """A port of the cluster that another program now listens on, and that program: the cluster
        cannot start again on it."""
        by_port = {listener.port: listener.inode for listener in ports.listeners()}
        held = {port: by_port[port] for port in self.ports() if port in by_port}
        owners = ports.owners(set(held.values()))
        for port, inode in sorted(held.items()):
            owner = owners.get(inode)
            if owner is not None and working_dir(owner) != self.dir:
                return f"{port} (pid {owner}: {command_line(owner)[:120]})"
        return None

    def ports(self) -> list[int]:
        """The ports the cluster was created with, as kwokctl recorded them."""
        return sorted({int(p) for p in re.findall(r"^\s+port: (\d+)$", (self.dir / "kwok.yaml").read_text(), re.M)})

    def pick_ports(self) -> list[int]:
        return ports.pick_free(len(PORT_OPTIONS), {listener.port for listener in ports.listeners()})

    def release_node_leases(self, real: bool) -> None:
        """After a restart the nodes' leases still name the kwok that died. A new kwok waits them
        out (their term is 200 s) before it takes the nodes, and their pods, over: until then
        nothing would start or go away. So drop them with kwok stopped, and start kwok again; it
        creates fresh ones."""
        kwok = next(c for c in self.components if c.name == "kwok-controller")
        pid = kwok.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            while kwok.alive():
                time.sleep(0.2)
        kwok.pid_file.unlink(missing_ok=True)
        deleted = subprocess.run([str(self.kubectl), "--kubeconfig", str(self.admin_kubeconfig), "delete", "leases",
                                  "--all", "-n", "kube-node-lease", "--wait=false"], stdout=subprocess.DEVNULL)
        if deleted.returncode != 0:
            raise SystemExit("bin/cluster: could not delete the nodes' leases (above)")
        self.start(real)

    def write_kubeconfig(self) -> None:
        """The user's kubeconfig: a copy of kwokctl's (its certificates are named by path, inside
        the cluster's directory)."""
        self.paths.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        # Readable by its owner only from the first byte: it signs in as the cluster's admin.
        target = os.open(self.paths.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(target, 0o600)
        with os.fdopen(target, "wb") as out:
            out.write(self.admin_kubeconfig.read_bytes())

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready(self.paths.kubeconfig):
            if time.monotonic() > deadline:
                raise SystemExit(f"bin/cluster: the API server did not become ready in {READY_TIMEOUT}s; "
                                 f"logs: {self.dir / 'logs'}/")
            time.sleep(0.5)

    # --- kwokctl ---------------------------------------------------------------------------------

    def kwokctl_env(self) -> dict[str, str]:
        # kwokctl runs the first kubectl on PATH to see whether the API server serves: make it the
        # one built with the control plane (the system's may be another version, or none at all).
        return {**os.environ, "KWOK_WORKDIR": str(self.paths.workdir),
                "PATH": f"{self.kubectl.parent}:{os.environ.get('PATH', '')}"}

    def kwokctl_create(self, config: Path, real: bool, extra_args: tuple[str, ...]) -> None:
        """kwokctl creates the cluster, or starts what is not running of an existing one (which keeps
        the configuration it was created with). The first --config is kwokctl's own; the stages follow.
        --kubeconfig '' keeps kwokctl away from ~/.kube/config; ours is written by write_kubeconfig()."""
        t = self.tools
        kube = Path(t["KUBERNETES_DIR"]) / "bin"
        argv = [str(self.kwokctl), "--name", self.name, "--v=WARN", "--config", str(config),
                *(f"--config={stage}" for stage in stages(real)),
                "create", "cluster", *extra_args,
                "--runtime", "binary",
                "--kube-apiserver-binary", str(kube / "kube-apiserver"),
                "--kube-controller-manager-binary", str(kube / "kube-controller-manager"),
                "--kube-scheduler-binary", str(kube / "kube-scheduler"),
                "--etcd-binary", str(Path(t["ETCD_DIR"]) / "bin" / "etcd"),
                "--kwok-controller-binary", str(Path(t["KWOK_DIR"]) / "bin" / "kwok"),
                "--kubeconfig", "",
                "--wait", "60s"]
        if subprocess.run(argv, env=self.kwokctl_env()).returncode != 0:
            raise SystemExit(f"bin/cluster: kwokctl could not start cluster '{self.name}' (above); "
                             f"logs: {self.dir / 'logs'}/")

    def processes(self) -> list[int]:
        """Every process of the cluster: those whose working directory is the cluster's."""
        return [int(p.name) for p in Path("/proc").iterdir()
                if p.name.isdigit() and int(p.name) != os.getpid() and working_dir(int(p.name)) == self.dir]


def stages(real: bool) -> list[Path]:
    """The stages of a cluster. One with real nodes has a real load balancer (servicelb.py):
    kwok's simulated one, which acts on every Service whatever its node, would write its address
    into the same status first."""
    return [s for s in sorted((CONFIG_DIR / "stages").glob("*.yaml")) if not (real and s.name == SIMULATED_LOAD_BALANCER)]


def fingerprint(tools: dict[str, str]) -> str:
    """Everything a cluster is created from; a change needs a new cluster (`make down && make up`)."""
    digest = hashlib.sha256("".join(f"{tools[v]}\n" for v in CONTROL_PLANE_VERSIONS).encode())
    for path in [CONFIG_DIR / "kwokctl.yaml", *sorted((CONFIG_DIR / "stages").glob("*.yaml"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def server(kubeconfig: Path) -> str:
    """The API server a kubeconfig names (the first)."""
    found = re.search(r"^\s*server:\s*(\S+)", kubeconfig.read_text(), re.M) if kubeconfig.is_file() else None
    return found.group(1) if found else "?"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
