"""The system setup step on a machine that has nothing: a fresh Debian bookworm root made with
mmdebstrap (as the image builder makes its bases), tools/system/setup.sh run inside it, and then
every command and library that tools/system/packages.txt says the project takes from Debian is
looked for there. It proves the list is complete for a newcomer's machine, whatever this
machine happens to have installed by hand.

The .deb files apt downloads are kept between runs under the cache (only the download is
saved: apt-get update, the choice of what is missing and the install all run each time).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from commands_called import ROOT, SYSTEM, package_entries

CACHE = Path(os.environ.get("MLPLATFORM_CACHE", Path.home() / ".cache" / "mlplatform"))
ARCHIVES = CACHE / "system-test" / "archives"
# The suites this project's machine kind installs from (its /etc/apt/sources.list.d).
SOURCES = ["deb http://deb.debian.org/debian bookworm main",
           "deb http://deb.debian.org/debian bookworm-updates main",
           "deb http://deb.debian.org/debian-security bookworm-security main"]
RESULTS = "/root/system-check.txt"


def checks() -> list[tuple[str, str]]:
    """(what, a shell test that succeeds when it is there) for each thing the list provides."""
    found = []
    for entry in package_entries():
        for token in entry.provides:
            kind, _, name = token.rpartition(":")
            if kind == "lib":  # a C library linked by the build (statically, as the pause binary is)
                test = f"echo 'int main(void){{return 0;}}' | gcc -static -x c - -l{name} -o /tmp/linked"
            elif kind == "pkg":  # a C library found through pkg-config (cgo's `#cgo pkg-config`)
                test = f"pkg-config --exists {name}"
            else:
                test = f"command -v {shlex.quote(token)}"
            found.append((f"{token} ({entry.package})", test))
    return found


def check_script() -> str:
    lines = [f": > {RESULTS}"]
    for what, test in checks():
        lines.append(f"if ( {test} ) >/dev/null 2>&1; then echo 'ok {what}'; else echo 'missing {what}'; fi >> {RESULTS}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fresh_root(tmp_path_factory) -> tuple[Path, str]:
    """A bookworm minbase root in which setup.sh ran; and what setup.sh printed."""
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        pytest.fail("the fresh-root test needs root and mmdebstrap (make system installs it)")
    root = tmp_path_factory.mktemp("fresh") / "root"
    script = tmp_path_factory.mktemp("check") / "check.sh"
    script.write_text(check_script())
    ARCHIVES.mkdir(parents=True, exist_ok=True)
    argv = ["mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
            "--setup-hook=mkdir -p \"$1/var/cache/apt/archives\"",
            f"--setup-hook=sync-in {ARCHIVES} /var/cache/apt/archives",
            f"--customize-hook=copy-in {SYSTEM} /opt",
            "--customize-hook=chroot \"$1\" /opt/system/setup.sh --packages-only",
            # A second run finds everything installed: it must say nothing and change nothing.
            "--customize-hook=chroot \"$1\" /opt/system/setup.sh --packages-only > \"$1/root/second-run.txt\" 2>&1",
            f"--customize-hook=copy-in {script} /opt",
            "--customize-hook=chroot \"$1\" sh /opt/check.sh",
            f"--customize-hook=sync-out /var/cache/apt/archives {ARCHIVES}",
            "bookworm", str(root), *SOURCES]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=1500)
        assert out.returncode == 0, f"mmdebstrap or setup.sh failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
        yield root, out.stdout + out.stderr
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


def test_setup_installs_every_command_and_library_the_list_declares(fresh_root):
    root, _ = fresh_root
    results = (root / RESULTS.lstrip("/")).read_text().splitlines()
    assert len(results) == len(checks())
    missing = [line.removeprefix("missing ") for line in results if line.startswith("missing ")]
    assert not missing, f"after tools/system/setup.sh a fresh Debian root still lacks: {', '.join(missing)}"


def test_setup_said_what_it_installed_once(fresh_root):
    _, log = fresh_root
    assert "[system] installing " in log


def test_a_second_setup_is_quiet(fresh_root):
    root, _ = fresh_root
    assert (root / "root" / "second-run.txt").read_text() == ""


def test_the_list_is_the_one_the_project_reads():
    # The fresh root reads the same file as `make system`; nothing else lists packages.
    makefile = (ROOT / "Makefile").read_text()
    assert "tools/system/setup.sh" in makefile
    assert checks(), "tools/system/packages.txt lists nothing"
