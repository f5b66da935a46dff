"""pytest setup shared by every test directory.

Helpers live in uniquely named modules beside this file (program.py, validation.py, podnet.py):
several directories have a conftest.py, and a module imported as `conftest` would be whichever
of them pytest loaded last.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def pytest_collection_modifyitems(config, items) -> None:
    """Each test gets its directory's tier as a marker (pytest.ini registers them), so
    `pytest -m unit` selects what `pytest tests/unit` runs. A directory without a registered
    marker fails here rather than escaping every tier."""
    registered = {line.split(":", 1)[0].strip() for line in config.getini("markers")}
    for item in items:
        tier = Path(item.path).relative_to(TESTS).parts[0]
        if tier not in registered:
            raise pytest.UsageError(f"{item.nodeid}: tests/{tier} has no tier marker registered in pytest.ini")
        item.add_marker(getattr(pytest.mark, tier))
