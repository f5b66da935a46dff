"""The node's cgroups: one directory, the kubelet's cgroupRoot, in every cgroup hierarchy.

The kubelet (cgroupfs driver) makes kubepods/ and the pods' cgroups under cgroupRoot, and
expects that path in every hierarchy. It nests under the caller's own cgroup (settings.py);
the directories made here are recorded so that stop() removes exactly those, deepest first.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")


def v1_hierarchies() -> list[Path]:
    """Mount points of the cgroup hierarchies: v1 (cpu, memory, pids, ..., name=systemd) and, on a
    hybrid machine like this one, the v2 one beside them, where runc makes each container's cgroup too."""
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, target, fstype, *_ = line.split()
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Path(target))
    return mounts


class Cgroups:
    def __init__(self, root: str, state_dir: Path):
        self.root = root.strip("/")
        self.record = state_dir / "cgroups.made"

    def paths(self) -> list[Path]:
        return [h / self.root for h in v1_hierarchies()]

    def start(self) -> None:
        made = self._made()
        for hierarchy in v1_hierarchies():
            path = hierarchy
            for part in self.root.split("/"):
                parent, path = path, path / part
                if path.is_dir():
                    continue
                path.mkdir()
                made.append(str(path))
                if hierarchy.name == "cpuset":
                    # A new cpuset has no CPUs or memory nodes until given its parent's.
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (path / knob).write_text((parent / knob).read_text())
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text("".join(f"{p}\n" for p in made))

    def _made(self) -> list[str]:
        return self.record.read_text().split() if self.record.exists() else []

    def ready(self) -> bool:
        return all(p.is_dir() for p in self.paths())

    def alive(self) -> bool:
        return self.ready()

    def pids(self) -> set[int]:
        """Every process left anywhere under the node's cgroups."""
        found: set[int] = set()
        for top in self.paths():
            for dirpath, _, files in os.walk(top):
                if "cgroup.procs" in files:
                    found.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
        return found

    def stop(self) -> None:
        # Containers outlive a stopped runtime; none may keep a cgroup (or anything) alive.
        for sig in (signal.SIGKILL,):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        # The kubelet's own directories (kubepods/...) first, deepest first, then ours.
        for top in self.paths():
            if top.is_dir():
                for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                    if dirpath != str(top):
                        Path(dirpath).rmdir()
        for path in sorted(self._made(), key=lambda p: -p.count("/")):
            try:
                Path(path).rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                # A parent made here that another cluster's node (started meanwhile from the same
                # cgroup) still uses: it goes when that node goes. The node's own root never is.
                if path.endswith(self.root):
                    raise
        self.record.unlink(missing_ok=True)
