"""tools/system/setup.sh on this machine, after `make system` (which `make test` runs first)."""

from __future__ import annotations

import subprocess

from commands_called import SYSTEM


def test_setup_is_quiet_when_nothing_is_missing():
    # Every package is installed on this machine by `make test`'s own `make system`.
    out = subprocess.run([str(SYSTEM / "setup.sh")], capture_output=True, text=True, timeout=10)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_setup_refuses_an_unknown_option():
    out = subprocess.run([str(SYSTEM / "setup.sh"), "--yes"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "--yes" in out.stderr and "--check" in out.stderr
