"""What a real node needs from this machine, checked before anything starts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .settings import missing_tools

COMMANDS = ("ip", "nsenter", "umount", "iptables")


def problems(tools: dict[str, str]) -> list[str]:
    found = []
    if os.geteuid() != 0:
        found.append("root (network namespaces, cgroups and mounts)")
    if missing := missing_tools(tools):
        found.append("the node tools (`tools/build.sh node`): " + ", ".join(missing))
    filesystems = Path("/proc/filesystems").read_text().split()
    if "overlay" not in filesystems:
        found.append("overlayfs in the kernel (containerd's snapshotter)")
    if "cgroup" not in filesystems:
        found.append("cgroup v1 in the kernel")
    mounted = {option for line in Path("/proc/self/mounts").read_text().splitlines() if line.split()[2] == "cgroup"
               for option in line.split()[3].split(",")}
    for controller in ("cpu", "cpuacct", "cpuset", "memory", "pids"):
        if controller not in mounted:
            found.append(f"the cgroup v1 `{controller}` controller mounted under /sys/fs/cgroup")
    for command in COMMANDS:
        if shutil.which(command) is None:
            found.append(f"the `{command}` command")
    return found
