"""The earlier commit the upgrade rehearsal deploys (UPGRADE_FROM_REF in versions.env), and a
worktree of it that runs with this checkout's virtualenv.

Standard library and vocab/ only, so the unit tier can check the message a clone without the
commit gets (tests/unit/test_upgrade_ref.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vocab.versions import PINS, REPO

PIN = "UPGRADE_FROM_REF"
# `make rehearse-upgrade FROM=<ref>` rehearses from another commit than the recorded one.
OVERRIDE = "MLPLATFORM_UPGRADE_FROM"


class MissingRef(Exception):
    pass


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=check)


def wanted_ref() -> str:
    return os.environ.get(OVERRIDE) or PINS[PIN]


def resolve(ref: str, repo: Path = REPO) -> str:
    """The full commit id of REF in REPO, or MissingRef saying which commit and how to fetch it."""
    found = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    if found.returncode == 0:
        return found.stdout.strip()
    shallow = git(repo, "rev-parse", "--is-shallow-repository", check=False).stdout.strip() == "true"
    where = f"{OVERRIDE}" if os.environ.get(OVERRIDE) else f"{PIN} in versions.env"
    fetch = "git fetch --unshallow" if shallow else f"git fetch origin {ref}"
    raise MissingRef(
        f"the upgrade rehearsal deploys commit {ref} ({where}), which this clone does not have"
        f"{' (it is a shallow clone)' if shallow else ''}: run `{fetch}` in {repo}, or clone the repository whole")


def add_worktree(commit: str, path: Path, repo: Path = REPO) -> Path:
    """A detached worktree of COMMIT at PATH, with this checkout's .venv (the same pins: the
    rehearsal's commit must not need other Python packages, which `pulumi up` would show)."""
    git(repo, "worktree", "add", "--detach", str(path), commit)
    (path / ".venv").symlink_to(os.path.realpath(repo / ".venv"))
    return path


def remove_worktree(path: Path, repo: Path = REPO) -> None:
    git(repo, "worktree", "remove", "--force", str(path), check=False)
    git(repo, "worktree", "prune", check=False)
