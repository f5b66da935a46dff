"""`bin/cluster up --real` on a private cluster: real kubelets and containerd.

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

from e2e.local_stack import LocalStack
from real_cluster import RealCluster, machine_lock, not_built, sysctls_before_kubelets
from realnode_stack import stack_config

SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"real-node tests SKIPPED: {reason}", yellow=True, bold=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of the deployed stack run after the others (test_platform_images.py applies the
    stack's own objects by hand, the operator's namespace and CRD among them, and deletes them
    again; test_upgrade_rehearsal.py deploys a stack of its own into the dev stack's namespaces and
    deletes it), and the test that takes the cluster down runs last, whichever file each is in. Of the
    stack's tests, a module that sets WATCHES_THE_STACKS_JOB runs first: it follows the TFJob
    that `make up` starts from its first pod, which a longer test before it would let finish."""
    # The hook sees the whole session's items: only this directory's are moved.
    here = Path(__file__).parent

    def key(item: pytest.Item) -> tuple[bool, bool, bool]:
        if here not in Path(item.path).parents:
            return (False, False, False)
        watches_the_job = getattr(item.module, "WATCHES_THE_STACKS_JOB", False)
        return (item.name == "test_down_leaves_nothing", "stack" in item.fixturenames, not watches_the_job)

    items.sort(key=key)


# The session's cluster, once up: what a failed test's report shows of it.
CLUSTER: list[RealCluster] = []
# Reports that carry it, at most: one failure can fail many tests behind it, and each look at a
# struggling cluster may take its timeouts.
STATE_REPORTS = [5]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed real-node test's report carries the cluster as it was then (CI keeps only its log,
    and a failure there once said nothing more than its assertion): every pod, the Workloads and
    TFJobs, the last events, the hub's log."""
    report = yield
    if report.failed and call.when in ("setup", "call") and CLUSTER and STATE_REPORTS[0] > 0:
        STATE_REPORTS[0] -= 1
        report.sections.append(("the real cluster when it failed", cluster_state(CLUSTER[0])))
    return report


def cluster_state(cluster: RealCluster) -> str:
    commands = [
        ("get", "pods", "-A", "-o", "wide"),
        ("get", "tfjobs", "-A", "-o", "wide"),
        ("get", "workloads", "-A", "-o", "wide"),  # when Kueue is on
        ("get", "events", "-A", "--sort-by=.lastTimestamp"),
        ("logs", "-n", "jupyterhub", "deploy/hub", "--tail=80"),
    ]
    parts = []
    for args in commands:
        try:
            out = cluster.kubectl(*args, check=False, timeout=15)
            text = (out.stdout + out.stderr).splitlines()
        except Exception as error:  # noqa: BLE001 - a report must not fail on its diagnostics
            text = [f"({type(error).__name__}: {error})"]
        parts.append(f"$ kubectl {' '.join(args)}\n" + "\n".join(text[-80:]))
    return "\n\n".join(parts)


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
        # Importing the platform's images into both nodes' containerd dominates `up`; on a machine
        # shared with other test sessions it ran past 300 s (2026-12-06, load average 9 on 2 cores).
        cluster.up_run = cluster.cluster("up", "--real", timeout=900)
        cluster.sysctls_before = sysctls_before_kubelets()
        CLUSTER.append(cluster)
        yield cluster
    finally:
        CLUSTER.clear()
        cluster.cluster("down", check=False)
        shutil.rmtree(base, ignore_errors=True)
        lock.close()


# The session's stack, while deployed: `pulumi destroy` needs the cluster, so the test that takes
# the cluster down destroys it first (fixture `stack_destroyed`).
DEPLOYED: list[LocalStack] = []


def destroy_stacks() -> None:
    while DEPLOYED:
        DEPLOYED.pop().pulumi("destroy", "--yes", check=False, timeout=600)


@pytest.fixture(scope="session")
def stack(real: RealCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The dev stack as a `local` stack on this session's real cluster, deployed once by `make up`,
    with its own Pulumi backend and home."""
    config = stack_config()
    config["cluster"]["kubeconfig"] = str(real.kubeconfig)
    local = LocalStack(Path(tmp_path_factory.mktemp("local-stack")), stack="realnode", extra_config=config)
    # This session's real cluster, not a kwok cluster of the stack's own.
    local.cluster_dir, local.kubeconfig = real.cluster_dir, real.kubeconfig
    local.env.update({k: v for k, v in real.env.items() if k.startswith("MLPLATFORM_")})
    local.create_stack()
    DEPLOYED.append(local)
    try:
        local.up_run = local.make("up", timeout=900)
        yield local
    finally:
        destroy_stacks()


@pytest.fixture
def stack_destroyed() -> None:
    destroy_stacks()
