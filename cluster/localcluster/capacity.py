"""What a real node has and what its kubelet keeps from pods.

Every real node is namespaces on this machine, so each reports the whole machine as cadvisor reads
it (status.capacity), and offers pods that less the kubelet's reservations (status.allocatable).
The reservations are written here once, with the kubelet's sum over them (`local_allocatable`):
the kubelet's configuration (kubelet.py) takes them, and the stack's check that no pod asks for
more than a node offers (stacks/cluster.py) takes the sum.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from vocab.quantity import quantity

# Nothing is reserved for the kubelet and containerd or for the rest of the machine: a node shares
# two cores with the control plane, the other nodes and the developer, and a reservation the size
# of what they use would leave the tutorial's pods no room to be scheduled.
KUBE_RESERVED: dict[str, str] = {}
SYSTEM_RESERVED: dict[str, str] = {}
# The disk's ext4 reserve makes "available" far below "free" here, so the kubelet sees the disk as
# ~75% used: evict only when nearly full. The memory threshold is held back from pods' requests.
EVICTION_HARD = {"memory.available": "100Mi", "nodefs.available": "2%",
                 "imagefs.available": "2%", "nodefs.inodesFree": "2%"}

_PROCESSOR = re.compile(r"^processor\s*:", re.MULTILINE)


def machine_capacity(proc: Path = Path("/proc")) -> dict[str, str]:
    """This machine's cpu and memory as a real node's status.capacity has them, and its huge pages.

    cadvisor counts the processors /proc/cpuinfo lists (every online CPU, whatever the affinity or
    cgroup of the process asking) and takes MemTotal from /proc/meminfo. `hugetlb` is the memory
    set aside for huge pages, which the kubelet takes out of allocatable memory.
    """
    cpus = len(_PROCESSOR.findall((proc / "cpuinfo").read_text())) or os.cpu_count() or 1
    meminfo = {}
    for line in (proc / "meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        meminfo[name] = int(value.split()[0])
    # Hugetlb (Linux 4.16+) counts pages of every size; older kernels tell only the default size's.
    hugetlb_kib = meminfo.get("Hugetlb", meminfo.get("HugePages_Total", 0) * meminfo.get("Hugepagesize", 0))
    return {"cpu": str(cpus), "memory": f"{meminfo['MemTotal']}Ki", "hugetlb": f"{hugetlb_kib}Ki"}


@dataclass(frozen=True)
class Allocatable:
    """What one node offers pods' requests: its status.allocatable cpu and memory."""

    cpu: str
    memory: str


def local_allocatable(capacity: Mapping[str, str]) -> Allocatable:
    """What a real node of the local cluster offers pods, its status.capacity being `capacity`
    (machine_capacity's cpu, memory and hugetlb).

    The kubelet's sum: capacity less kubeReserved, systemReserved and the hard eviction threshold
    (a percentage is of the capacity), never below 0; memory less the huge pages as well.
    """
    found = {}
    for resource in ("cpu", "memory"):
        total = quantity(capacity[resource])
        held = sum((quantity(r.get(resource, "0")) for r in (KUBE_RESERVED, SYSTEM_RESERVED)), Decimal(0))
        if resource == "memory":
            threshold = EVICTION_HARD.get("memory.available", "0")
            held += total * Decimal(threshold[:-1]) / 100 if threshold.endswith("%") else quantity(threshold)
            held += quantity(capacity.get("hugetlb", "0"))
        found[resource] = max(total - held, Decimal(0))
    return Allocatable(cpu=_cpu_quantity(found["cpu"]), memory=_memory_quantity(found["memory"]))


def _cpu_quantity(cores: Decimal) -> str:
    return str(int(cores)) if cores == cores.to_integral_value() else f"{int(cores * 1000)}m"


def _memory_quantity(size: Decimal) -> str:
    """In KiB, as the kubelet shows memory."""
    return f"{int(size) // 1024}Ki" if size % 1024 == 0 else str(int(size))
