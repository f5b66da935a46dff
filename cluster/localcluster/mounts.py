"""The node's mount namespace: its kubelet, containerd (with the shims and the pods) and GPU plugin
share one, in which the paths they hardcode for the whole machine are the node's own:

    /var/lib/kubelet      the device-plugin socket and checkpoint (device-plugins/), whatever --root-dir says
    /var/log/containers   the kubelet's links to the containers' logs
    /var/lib/cni          libcni's cache of network results
    /run/containerd       the shims' sockets

Inside the namespace each is a bind mount of a directory under the node's state directory; the
machine itself sees only the empty directory the mount needs (made when absent, and removed by
the last node on the machine to stop, if still empty). So two kubelets never bind one socket.

Propagation is slave: the machine's mounts show inside, and nothing made inside (the pods' root
filesystems, the kubelet's volumes, the pods' network namespaces) shows outside; all of it goes
when the namespace goes. The namespace outlives its processes (a killed kubelet restarts into it)
through a bind mount of its nsfs file at <state>/ns/mnt, as `ip netns` keeps network namespaces;
the kernel allows that only on a private mount, so <state>/ns is one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .settings import NodeSettings

MACHINE_PATHS = (Path("/var/lib/kubelet"), Path("/var/log/containers"), Path("/var/lib/cni"), Path("/run/containerd"))


def mount_points() -> set[str]:
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def _run(*argv: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()}")


class MountNamespace:
    def __init__(self, node: NodeSettings):
        self.node = node
        self.file = node.mount_ns
        self.dir = self.file.parent
        self.own = node.state_dir / "machine"

    def own_dir(self, machine_path: Path) -> Path:
        """Where MACHINE_PATH really lives for this node."""
        return self.own / str(machine_path).strip("/").replace("/", "-")

    def start(self) -> None:
        if self.alive():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if str(self.dir) not in mount_points():
            _run("mount", "--bind", str(self.dir), str(self.dir))
            _run("mount", "--make-private", str(self.dir))
        self.file.touch()
        binds = []
        for path in MACHINE_PATHS:
            path.mkdir(parents=True, exist_ok=True)
            self.own_dir(path).mkdir(parents=True, exist_ok=True)
            binds.append(f"mount --bind '{self.own_dir(path)}' '{path}'")
        _run("unshare", f"--mount={self.file}", "--propagation", "slave", "--", "sh", "-ec", " && ".join(binds))

    def ready(self) -> bool:
        return self.alive()

    def alive(self) -> bool:
        return str(self.file) in mount_points()

    def stop(self) -> None:
        """Once the node's processes are gone: the namespace and every mount in it go with the file."""
        for target in (self.file, self.dir):
            if str(target) in mount_points():
                subprocess.run(["umount", str(target)], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.own, ignore_errors=True)
