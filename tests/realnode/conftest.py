"""`bin/cluster up --real` on a private cluster: real kubelets and containerd (issue 12).

One cluster serves the tests of this directory, in file order; the last one takes it down and
checks that nothing of it is left. Needs root, cgroup v1 and the tools cache (`tools/build.sh
kube node`, which `make test` runs first). Without the tools the tests are skipped and the
summary says so; a machine that lacks a kernel feature fails them, naming what is missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from real_cluster import RealCluster, machine_lock, not_built
from localcluster.kubelet import KUBELET_SYSCTLS, read_sysctl

SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"real-node tests SKIPPED: {reason}", yellow=True, bold=True)


@pytest.fixture(scope="session")
def real() -> Iterator[RealCluster]:
    missing = not_built()
    if missing:
        reason = f"tools not built ({', '.join(missing)}): run `tools/build.sh kube node` once"
        SKIPPED_BECAUSE.append(reason)
        pytest.skip(reason)
    assert os.geteuid() == 0, "real nodes need root (network namespaces, cgroups, mounts)"
    # Short: the nodes' unix sockets live below it.
    lock = machine_lock()
    base = Path(tempfile.mkdtemp(prefix="mlp-rn-", dir="/tmp"))
    cluster = RealCluster(base)
    # Read with the lock held: while another session's node runs, its kubelet's settings are in place.
    cluster.sysctls_before = {k: read_sysctl(k) for k in KUBELET_SYSCTLS}
    try:
        cluster.up_run = cluster.cluster("up", "--real")
        yield cluster
    finally:
        cluster.cluster("down", check=False)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()
