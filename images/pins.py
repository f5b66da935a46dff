"""The versions the images install, read from where the project pins them today.

There is one pin per package in the repository: the Python packages in the requirements files,
configurable-http-proxy in components/versions.py. Image recipes name packages, never versions;
the frozen lock files beside the recipes add the transitive pins and are checked against these.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every file that pins Python packages (`name==version`); `-r` includes are followed.
PYTHON_PIN_FILES = ("requirements.txt", "trainer/requirements.txt", "trainer/notebook-requirements.txt")
VERSIONS_MODULE = "components/versions.py"

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


def versions_constant(name: str, root: Path = ROOT) -> str:
    """A string constant of components/versions.py, read without importing the components package."""
    tree = ast.parse((root / VERSIONS_MODULE).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                return node.value.value
    raise PinError(f"{VERSIONS_MODULE} has no string constant {name}")


# npm packages the images install, and the constant that pins each.
NPM_PIN_CONSTANTS = {"configurable-http-proxy": "CONFIGURABLE_HTTP_PROXY_VERSION"}


def npm_pins(root: Path = ROOT) -> dict[str, str]:
    return {package: versions_constant(constant, root) for package, constant in NPM_PIN_CONSTANTS.items()}


def pin(package: str, root: Path = ROOT) -> str:
    """The version the project pins `package` to (Python or npm)."""
    pins = {**python_pins(root), **npm_pins(root)}
    try:
        return pins[canonical(package)] if canonical(package) in pins else pins[package]
    except KeyError:
        raise PinError(f"{package} has no pin in {', '.join(PYTHON_PIN_FILES)} or {VERSIONS_MODULE}") from None
