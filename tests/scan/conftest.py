"""The manifest scan needs kube-score from the tools cache (`tools/build.sh scan`); without it the
scan is skipped and the summary says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools.layout import tools_layout

SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"manifest scan SKIPPED: {reason}", yellow=True, bold=True)


@pytest.fixture(scope="session")
def binary() -> Path:
    """kube-score, where tools/versions.sh says it is built."""
    directory = Path(tools_layout()["KUBE_SCORE_DIR"])
    if not (directory / ".stamp").exists():
        reason = "kube-score is not built: run `tools/build.sh scan` once"
        SKIPPED_BECAUSE.append(reason)
        pytest.skip(reason)
    return directory / "bin" / "kube-score"
