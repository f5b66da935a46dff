"""The real Pulumi CLI over a private copy of the project (its own state, stacks and .local/)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True)
    return [name for name in listed.stdout.split("\0") if name]


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A copy of the project as a clean clone would have it, plus the shared virtualenv."""
    copy = tmp_path_factory.mktemp("project")
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    os.symlink((ROOT / ".venv").resolve(), copy / ".venv")
    return copy

