"""The node's container runtime: containerd (CRI) with runc, in the node's network namespace.

Everything it keeps is under the node's state directory (root, state, socket, runc's state, pod
network namespaces); the shims' socket directory, which containerd hardcodes as /run/containerd/s,
is the node's own in its mount namespace (mounts.py). Images are never pulled: images.py imports them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .process import KILL_GRACE, Daemon, wait_exited, wait_for
from .settings import NodeSettings, pause_image

K8S_NAMESPACE = "k8s.io"


def toml_str(value: str) -> str:
    return "'" + value.replace("'", "") + "'"


@dataclass(frozen=True)
class Client:
    """`ctr` against one containerd's socket, in the kubelet's namespace (a node's, or the image store's)."""

    bin: Path  # the directory of containerd's binaries
    socket: Path

    def ctr(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / "ctr"), "--address", str(self.socket), "-n", K8S_NAMESPACE, *args],
                              check=check, capture_output=True, text=True, **kwargs)


class Containerd:
    def __init__(self, node: NodeSettings, tools: dict[str, str]):
        self.node = node
        self.tools = tools
        self.dir = node.state_dir / "containerd"
        self.socket = self.dir / "containerd.sock"
        self.root = self.dir / "root"
        self.bin = Path(tools["CONTAINERD_DIR"]) / "bin"
        self.daemon = Daemon(
            "containerd",
            [str(self.bin / "containerd"), "--config", str(self.dir / "config.toml")],
            node.state_dir,
            netns=node.netns,
            mount_ns=node.mount_ns,
            # The shim is found on PATH; runc is named in the config.
            env={"PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"},
        )

    def config(self) -> str:
        d, runc = self.dir, Path(self.tools["RUNC_DIR"]) / "bin" / "runc"
        cni_bin = Path(self.tools["CNI_PLUGINS_DIR"]) / "bin"
        return f"""\
version = 3
root = {toml_str(str(self.root))}
state = {toml_str(str(d / 'state'))}
# NRI would listen on /var/run/nri; nothing here uses it.
disabled_plugins = ['io.containerd.nri.v1.nri']

[grpc]
  address = {toml_str(str(self.socket))}

[ttrpc]
  address = {toml_str(str(d / 'containerd.sock.ttrpc'))}

[plugins.'io.containerd.internal.v1.opt']
  path = {toml_str(str(d / 'opt'))}

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = {toml_str(pause_image(self.tools)[0])}

[plugins.'io.containerd.cri.v1.runtime']
  # Without CAP_SYS_RESOURCE nothing may lower an OOM score below its parent's; otherwise runc
  # fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = {toml_str(str(runc))}
        Root = {toml_str(str(d / 'runc'))}
        # cgroupfs, as the kubelet: there is no systemd to ask.
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [{toml_str(str(cni_bin))}]
    conf_dir = {toml_str(str(self.node.state_dir / 'cni' / 'net.d'))}

[plugins.'io.containerd.grpc.v1.cri']
  # exec/attach/port-forward streams, inside the node's namespace.
  stream_server_address = '127.0.0.1'
"""

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.toml").write_text(self.config())
        self.daemon.start()

    def client(self) -> Client:
        return Client(self.bin, self.socket)

    def ctr(self, *args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        return self.client().ctr(*args, check=check, **kwargs)

    def ready(self) -> bool:
        return self.socket.exists() and self.ctr("version", check=False).returncode == 0

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for("containerd answering on its socket", self.ready, timeout, self.daemon.log_file)

    def alive(self) -> bool:
        return self.daemon.alive()

    def version(self) -> str:
        return self.ctr("version").stdout

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        crictl = Path(self.tools["CRI_TOOLS_DIR"]) / "bin" / "crictl"
        return subprocess.run([str(crictl), "--runtime-endpoint", f"unix://{self.socket}", "--timeout", "30s", *args],
                              check=check, capture_output=True, text=True)

    def remove_pods(self) -> None:
        """Stops and removes every pod sandbox (their containers, network namespaces, CNI leases)."""
        if self.alive() and self.ready():
            self.crictl("rmp", "--all", "--force", check=False)

    def shim_pids(self) -> list[int]:
        """Shims of this containerd: their command line names its socket."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in cmdline:
                found.append(int(proc.name))
        return found

    def stop(self) -> None:
        self.remove_pods()
        self.daemon.stop()
        shims = self.shim_pids()
        for pid in shims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # Gone before their directories are: an exiting shim still holds its working directory there.
        wait_exited(shims, KILL_GRACE)
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def mounts_under(top: Path) -> list[str]:
    """Mount points at or below TOP, deepest first (from /proc/self/mountinfo)."""
    found = []
    prefix = str(top).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target.startswith(prefix) or target == str(top):
            found.append(target)
    return sorted(set(found), key=lambda t: -t.count("/"))


def unmount_under(top: Path) -> None:
    for target in mounts_under(top):
        subprocess.run(["umount", "--lazy", target], capture_output=True)
