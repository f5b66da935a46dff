"""Records that every cluster on this machine shares, under /run/mlplatform (a tmpfs: a reboot,
which resets what they record, forgets them too).

Each is a JSON file changed under a lock file beside it. A change that leaves nothing to record
removes the file, and then its lock and the directory (a racing change makes them again), so a
machine without clusters keeps nothing of them.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

RUN_DIR = Path("/run/mlplatform")
T = TypeVar("T")


def change(record: Path, update: Callable[[Any], tuple[Any, T]]) -> T:
    """update(data) -> (new data, result), data None while there is no record; new data None (or
    empty) removes it. Returns the result."""
    record.parent.mkdir(parents=True, exist_ok=True)
    lock_file = record.with_suffix(".lock")
    with open(lock_file, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(record.read_text()) if record.exists() else None
        data, result = update(data)
        if data:
            record.write_text(json.dumps(data, indent=2) + "\n")
        else:
            record.unlink(missing_ok=True)
    if not record.exists():
        lock_file.unlink(missing_ok=True)
        try:
            record.parent.rmdir()
        except OSError:
            pass  # another record is there
    return result
