"""pytest setup shared by every test directory.

Helpers live in uniquely named modules beside this file (program.py, validation.py, podnet.py):
several directories have a conftest.py, and a module imported as `conftest` would be whichever
of them pytest loaded last.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
for path in (TESTS.parent, TESTS):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
