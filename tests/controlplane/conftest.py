"""The control plane alone (cluster/localcluster/controlplane.py): a private kwok cluster started,
checked, restarted and stopped through `bin/cluster` and the ControlPlane part, without the Pulumi
engine or real nodes. Needs the tools cache (`tools/build.sh kube`); without it these tests are
skipped and the summary says so.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.localcluster.controlplane import ControlPlane
from cluster.localcluster.settings import CONTROL_PLANE_TOOLS, ClusterPaths, missing_tools, tools

SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"control-plane tests SKIPPED: {reason}", yellow=True, bold=True)


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    """A private cluster's control plane, not started; removed at the end whatever the tests did."""
    t = tools()
    if missing := missing_tools(t, CONTROL_PLANE_TOOLS):
        reason = f"tools not built ({', '.join(missing)}): run `tools/build.sh kube` once"
        SKIPPED_BECAUSE.append(reason)
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="mlp-cp-", dir="/tmp"))
    control_plane = ControlPlane(ClusterPaths("mlp-cp", base / "kwok", base / "kubeconfig", base / "none.yaml"), t)
    try:
        yield control_plane
    finally:
        control_plane.delete()
        shutil.rmtree(base, ignore_errors=True)
