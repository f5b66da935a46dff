"""The manifest scan needs kube-score from the tools cache (`tools/build.sh scan`); without it the
scan is skipped and the summary says so."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED_BECAUSE: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for reason in SKIPPED_BECAUSE:
        terminalreporter.write_line(f"manifest scan SKIPPED: {reason}", yellow=True, bold=True)


@pytest.fixture(scope="session")
def binary() -> Path:
    """kube-score, where tools/versions.sh says it is built."""
    script = f'. "{ROOT}/tools/versions.sh"; printf "%s" "$KUBE_SCORE_DIR"'
    directory = Path(subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout)
    if not (directory / ".stamp").exists():
        reason = "kube-score is not built: run `tools/build.sh scan` once"
        SKIPPED_BECAUSE.append(reason)
        pytest.skip(reason)
    return directory / "bin" / "kube-score"
