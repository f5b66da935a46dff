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

from real_cluster import RealCluster, machine_lock, not_built, sysctls_before_kubelets

SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"real-node tests SKIPPED: {reason}", yellow=True, bold=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The test that takes the cluster down runs last, whichever file it is in."""
    items.sort(key=lambda item: item.name == "test_down_leaves_nothing")


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
    try:
        cluster.up_run = cluster.cluster("up", "--real")
        cluster.sysctls_before = sysctls_before_kubelets()
        yield cluster
    finally:
        cluster.cluster("down", check=False)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()
