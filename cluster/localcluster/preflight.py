"""What a real node needs from this machine, checked before anything starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .netpol import BRIDGE_NF_CALL_IPTABLES
from .settings import missing_tools

COMMANDS = ("ip", "nsenter", "umount", "iptables")
# kube-router's network-policy controller (netpol.py) runs these by name from PATH.
NETPOL_COMMANDS = ("iptables-save", "iptables-restore", "ipset")


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
            found.append(f"the `{command}` command (`make system` installs it)")
    for command in NETPOL_COMMANDS:
        if shutil.which(command) is None:
            found.append(f"the `{command}` command (NetworkPolicy: kube-router runs it; `make system` installs it)")
    found += netpol_kernel_problems()
    return found


def netpol_kernel_problems() -> list[str]:
    """What the kernel lacks for NetworkPolicy: bridge netfilter and ipset (netpol.py)."""
    found = []
    if not BRIDGE_NF_CALL_IPTABLES.exists():
        # Without it, packets between two pods on the node's bridge never meet a policy's rules.
        found.append(f"bridge netfilter in the kernel ({BRIDGE_NF_CALL_IPTABLES}; module br_netfilter)")
    if shutil.which("ipset") is not None:
        # Lists the sets of this (the machine's) namespace, changing nothing; fails without ip_set.
        out = subprocess.run(["ipset", "list", "-name"], capture_output=True, text=True)
        if out.returncode != 0:
            found.append(f"ipset in the kernel (module ip_set; `ipset list` said: {out.stderr.strip()})")
    return found
