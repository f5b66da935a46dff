"""Every pin of the project, read from where it is written once.

`versions.env` holds the pinned upstream versions (tools, images, npm packages such as
configurable-http-proxy); the requirements files pin the Python packages. Image recipes name
packages, never versions; the frozen lock files beside the recipes add the transitive pins and
are checked against these. The Pulumi program reads its pins here too (vocab/versions.py),
and tools/versions.sh sources versions.env for the scripts. Standard library only, so the image
builder runs with the system Python.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSIONS_FILE = ROOT / "versions.env"

_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S*)\s*(#.*)?$")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as a shell sources them (no quoting, no expansion); comments and blank lines skipped."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: expected NAME=value, got {line!r}")
        values[match.group(1)] = match.group(2)
    return values

# Every file that pins Python packages (`name==version`); `-r` includes are followed.
PYTHON_PIN_FILES = ("requirements.txt", "trainer/requirements.txt", "trainer/notebook-requirements.txt")

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


class PinError(ValueError):
    """A package that has no pin, or two different ones."""


def canonical(name: str) -> str:
    """PEP 503 name: `jupyterhub_idle_culler` and `JupyterHub-Idle-Culler` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_requirements(path: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file (and the files it includes with -r)."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r"):
            pins.update(read_requirements(path.parent / line[2:].strip()))
            continue
        match = _PIN.match(line)
        if match:
            pins[canonical(match.group(1))] = match.group(3)
    return pins


def python_pins(root: Path = ROOT) -> dict[str, str]:
    """Every pinned Python package of the project, by canonical name; a conflict is an error."""
    pins: dict[str, str] = {}
    where: dict[str, str] = {}
    for name in PYTHON_PIN_FILES:
        for package, version in read_requirements(root / name).items():
            if package in pins and pins[package] != version:
                raise PinError(f"{package} is pinned to {pins[package]} in {where[package]} and to {version} in {name}")
            pins[package] = version
            where.setdefault(package, name)
    return pins


# npm packages the images install, and the versions.env name that pins each.
NPM_PIN_NAMES = {"configurable-http-proxy": "CONFIGURABLE_HTTP_PROXY_VERSION"}


def npm_pins(root: Path = ROOT) -> dict[str, str]:
    pins = read_env_file(root / VERSIONS_FILE.name)
    return {package: pins[name] for package, name in NPM_PIN_NAMES.items()}


def pin(package: str, root: Path = ROOT) -> str:
    """The version the project pins `package` to (Python or npm)."""
    pins = {**python_pins(root), **npm_pins(root)}
    try:
        return pins[canonical(package)] if canonical(package) in pins else pins[package]
    except KeyError:
        raise PinError(f"{package} has no pin in {', '.join(PYTHON_PIN_FILES)} or {VERSIONS_FILE.name}") from None
