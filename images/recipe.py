"""An image's recipe: `images/<name>/image.toml`, read into frozen dataclasses.

A recipe says what the image is made from (Debian bookworm packages, a user, directories,
Python packages by name, an npm package tree, files from the repository or from a tool that
tools/build.sh built) and how it runs (the OCI config: user, working directory, entrypoint,
command, environment, ports). A recipe without [base] is an image of its files alone, as
distroless's `static` is: for a static binary, which needs no Debian underneath. Versions are not
written here: they come from the project's pins (images/pins.py), and the frozen lock files
beside the recipe pin the rest. Unknown keys are errors, named with the file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from images import pins as pinlib
from tools.layout import tools_layout

IMAGES = Path(__file__).resolve().parent
ROOT = IMAGES.parent
RECIPE = "image.toml"
# Bump when the builder changes what it makes from the same recipe: every tag changes with it.
BUILDER_VERSION = "1"
REPOSITORY = "mlplatform"


class RecipeError(ValueError):
    pass


@dataclass(frozen=True)
class Base:
    suite: str
    mirror: str
    packages: tuple[str, ...]

    def key(self) -> str:
        text = "\n".join([BUILDER_VERSION, self.suite, self.mirror, *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    group: str
    gid: int
    home: str


@dataclass(frozen=True)
class Directory:
    path: str
    owner: str = "0:0"
    mode: str = "0755"


@dataclass(frozen=True)
class Python:
    packages: tuple[str, ...]  # top-level packages; versions from the project's pins
    lock: str  # the frozen requirements file beside the recipe
    venv: str = "/opt/venv"
    owner: str = "0:0"  # who owns the virtualenv (the notebook user may install packages into it)


@dataclass(frozen=True)
class Npm:
    dir: str  # where package.json, package-lock.json and node_modules go in the image


@dataclass(frozen=True)
class File:
    src: str  # relative to the repository root, or to the tool's directory
    dst: str
    mode: str | None = None
    ignore: str | None = None  # a .dockerignore-style file, relative to the repository root
    # A tool directory of tools/versions.sh (TRAINING_OPERATOR_DIR, say): `src` is then a file
    # that tools/build.sh built there, in the tools cache, instead of one in the repository.
    tool: str | None = None


@dataclass(frozen=True)
class Link:
    path: str
    target: str


@dataclass(frozen=True)
class Config:
    user: str
    workdir: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    ports: tuple[int, ...]


@dataclass(frozen=True)
class Recipe:
    name: str
    directory: Path
    summary: str
    base: Base | None  # None: no Debian, the image is its files alone
    config: Config
    user: User | None = None
    dirs: tuple[Directory, ...] = ()
    python: Python | None = None
    npm: Npm | None = None
    files: tuple[File, ...] = ()
    links: tuple[Link, ...] = ()
    _pins: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def pins(self) -> dict[str, str]:
        """Top-level packages and the versions the project pins them to."""
        return dict(self._pins)

    def inputs(self) -> list[tuple[str, bytes]]:
        """Everything the image is made from, as (name, content), in a fixed order."""
        base = self.base.key() if self.base else "none"
        items: list[tuple[str, bytes]] = [("builder", BUILDER_VERSION.encode()), ("base", base.encode())]
        for path in sorted(p for p in self.directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.relative_to(self.directory.parent)
            items.append((str(name), path.read_bytes()))
        items.append(("pins", repr(sorted(self._pins)).encode()))
        for file in self.files:
            for source, _ in expand(file):
                name = f"{file.tool}:{file.src}" if file.tool else str(source.relative_to(ROOT))
                items.append((name, _content(source) + oct(source.stat().st_mode & 0o111).encode()))
        return items

    def tag(self) -> str:
        digest = hashlib.sha256()
        for name, content in self.inputs():
            digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
        return digest.hexdigest()[:16]

    def reference(self) -> str:
        return f"{REPOSITORY}/{self.name}:{self.tag()}"


def ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        bare = pattern.rstrip("/")
        if bare.startswith("**/"):
            if any(fnmatch.fnmatch(part, bare[3:]) for part in parts):
                return True
        elif fnmatch.fnmatch(relative, bare) or fnmatch.fnmatch(parts[0], bare):
            return True
    return False


_DIGESTS: dict[tuple[str, int, int], bytes] = {}


def _content(path: Path) -> bytes:
    """What of a file goes into the tag: its bytes, or for a large one (a tool's binary, read for
    every tag the stack computes) their digest, remembered while the file is unchanged."""
    st = path.stat()
    if st.st_size < 1 << 20:
        return path.read_bytes()
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.digest()
    return _DIGESTS[key]


def tool_dir(name: str) -> Path:
    """A tool's directory as tools/versions.sh (which tools/build.sh builds into) names it."""
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*_DIR", name):
        raise RecipeError(f"files: tool {name!r} is not a tool directory of tools/versions.sh (NAME_DIR)")
    try:
        directory = tools_layout().get(name)
    except subprocess.CalledProcessError as error:
        raise RecipeError(f"files: tools/versions.sh failed: {error.stderr.strip()}") from None
    if not directory:
        raise RecipeError(f"files: tools/versions.sh names no {name}")
    return Path(directory)


def expand(file: File) -> list[tuple[Path, str]]:
    """(source path, path in the image) for every regular file or link a `files` entry copies."""
    if file.tool:
        source = tool_dir(file.tool) / file.src
        if not source.is_file():
            raise RecipeError(f"files: {source} ({file.tool}) is not built: tools/build.sh builds it "
                              "(`make images` runs it; or `make tools`)")
        return [(source, file.dst)]
    source = ROOT / file.src
    if not source.exists():
        raise RecipeError(f"files: {file.src} does not exist")
    if source.is_file():
        return [(source, file.dst)]
    patterns: list[str] = []
    if file.ignore:
        lines = (ROOT / file.ignore).read_text().splitlines()
        patterns = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    found = []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            relative = str(path.relative_to(source))
            if not ignored(relative, patterns):
                found.append((path, f"{file.dst.rstrip('/')}/{relative}"))
    return found


def _take(table: dict[str, Any], where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    unknown = sorted(set(table) - set(required) - set(optional))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(required + optional)}")
    missing = [key for key in required if key not in table]
    if missing:
        raise RecipeError(f"{where}: missing key(s) {', '.join(missing)}")
    return table


def load(name: str, images: Path = IMAGES) -> Recipe:
    directory = images / name
    path = directory / RECIPE
    if not path.is_file():
        raise RecipeError(f"no image {name!r}: {path} does not exist (images: {', '.join(names(images))})")
    where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{where}: {error}") from None
    _take(data, where, ("summary", "config"), ("base", "user", "dirs", "python", "npm", "files", "links"))
    base = data.get("base")
    if base is None:
        # Users, directories with owners and packages are made by commands in a Debian chroot.
        needs_debian = [key for key in ("user", "python", "npm") if key in data]
        needs_debian += ["dirs (owned by anyone but root)" for d in data.get("dirs", []) if d.get("owner", "0:0") != "0:0"][:1]
        if needs_debian:
            raise RecipeError(f"{where}: {', '.join(needs_debian)} need a [base] (Debian packages to run in)")
    else:
        _take(base, f"{where} [base]", ("packages",), ("suite", "mirror"))
    config = _take(data["config"], f"{where} [config]", ("user", "workdir", "entrypoint"), ("cmd", "env", "ports"))
    user = data.get("user")
    python = data.get("python")
    npm = data.get("npm")
    resolved: dict[str, str] = {}
    if python:
        _take(python, f"{where} [python]", ("packages", "lock"), ("venv", "owner"))
        for package in python["packages"]:
            try:
                resolved[package] = pinlib.pin(package)
            except pinlib.PinError as error:
                raise RecipeError(f"{where} [python] packages: {error}") from None
    if npm:
        _take(npm, f"{where} [npm]", ("dir",))
        manifest = directory / "package.json"
        if not manifest.is_file():
            raise RecipeError(f"{where} [npm]: {manifest.relative_to(ROOT)} is missing")
        for package in json.loads(manifest.read_text()).get("dependencies", {}):
            try:
                resolved[package] = pinlib.npm_pins()[package]
            except KeyError:
                raise RecipeError(f"{where} [npm]: {package} has no pin in versions.env "
                                  f"(images/pins.py NPM_PIN_NAMES)") from None
    return Recipe(
        name=name,
        directory=directory,
        summary=data["summary"],
        base=Base(
            suite=base.get("suite", "bookworm"),
            mirror=base.get("mirror", "http://deb.debian.org/debian"),
            packages=tuple(base["packages"]),
        ) if base is not None else None,
        config=Config(
            user=config["user"],
            workdir=config["workdir"],
            entrypoint=tuple(config["entrypoint"]),
            cmd=tuple(config.get("cmd", ())),
            env=tuple(config.get("env", {}).items()),
            ports=tuple(config.get("ports", ())),
        ),
        user=User(**_take(user, f"{where} [user]", ("name", "uid", "group", "gid", "home"))) if user else None,
        dirs=tuple(Directory(**_take(d, f"{where} [[dirs]]", ("path",), ("owner", "mode"))) for d in data.get("dirs", [])),
        python=Python(packages=tuple(python["packages"]), lock=python["lock"], venv=python.get("venv", "/opt/venv"),
                      owner=python.get("owner", "0:0")) if python else None,
        npm=Npm(dir=npm["dir"]) if npm else None,
        files=tuple(File(**_take(f, f"{where} [[files]]", ("src", "dst"), ("mode", "ignore", "tool")))
                    for f in data.get("files", [])),
        links=tuple(Link(**_take(link, f"{where} [[links]]", ("path", "target"))) for link in data.get("links", [])),
        _pins=tuple(sorted(resolved.items())),
    )


# The upstream repositories each local build stands in for: the dev stack (`images.local`) runs
# these builds wherever the stack names the upstream image, whatever its tag (the CUDA notebook
# and the GPU TensorFlow image included: the local cluster's GPUs are simulated).
STANDS_FOR = {
    "quay.io/jupyterhub/k8s-hub": "hub",
    "quay.io/jupyterhub/configurable-http-proxy": "proxy",
    "quay.io/jupyter/tensorflow-notebook": "notebook",
    "tensorflow/tensorflow": "trainer",
    "ghcr.io/kubeflow/training-v1/training-operator": "operator",
    "registry.k8s.io/kueue/kueue": "kueue",
}


def local_reference(image: str) -> str | None:
    """The local build that stands in for `image` (`mlplatform/<name>:<tag>`), or None."""
    name = image.split("@", 1)[0]
    repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    name = STANDS_FOR.get(repository)
    return load(name).reference() if name else None


def names(images: Path = IMAGES) -> list[str]:
    return sorted(p.parent.name for p in images.glob(f"*/{RECIPE}"))
