"""The upgrade rehearsal's earlier commit (UPGRADE_FROM_REF in versions.env): a commit of this
repository's history, and a clone that lacks it is told which commit and how to fetch it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from realnode.upgrade_from import PIN, MissingRef, resolve
from vocab.versions import PINS, REPO


def test_the_recorded_commit_is_in_this_repositorys_history() -> None:
    commit = resolve(PINS[PIN])
    assert commit == PINS[PIN], f"{PIN} is written as the full commit id, {commit}"
    ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", commit, "HEAD"])
    assert ancestor.returncode == 0, f"{PIN} {commit} is not an ancestor of HEAD"


def test_a_shallow_clone_is_told_the_commit_and_how_to_fetch_it(tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone)], check=True,
                   capture_output=True)
    with pytest.raises(MissingRef, match=rf"commit {PINS[PIN]} \({PIN} in versions.env\), which this clone does not have "
                                         r"\(it is a shallow clone\): run `git fetch --unshallow`"):
        resolve(PINS[PIN], clone)
