"""Build the images of images/<name>/ without Docker or a registry: `python -m images.build`.

Each image is three layers:
  base    a Debian root filesystem from mmdebstrap (the recipe's [base] packages), shared by every
          image with the same package list and kept unpacked as the lower directory of the next;
  system  the user, directories and Python packages: commands run in a chroot on an overlay of
          the base, and the overlay's upper directory is the layer;
  app     files from the repository (or a tool's build) and the npm package tree, staged in a
          plain directory.
An image without a [base] (a static binary, such as the training operator's manager) is its app
layer alone, its directories made there.
The archive is an OCI layout in one tar, `$MLPLATFORM_CACHE/images/<name>-<tag>.oci.tar`, for
the image `mlplatform/<name>:<tag>`: the tag is a hash of everything the image is made from
(images/recipe.py), so a warm build is a file lookup and a changed pin rebuilds its image only.
A failed build raises BuildError naming the image, the step and, where it can tell, the package.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from images import oci
from images import pins as pinlib
from images.recipe import REPOSITORY, ROOT, Base, Recipe, RecipeError, expand, load, names

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Keep the image small the way Debian's slim images do: no manuals, translations or docs but
# the copyright files.
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
LOG_TAIL_LINES = 25


def cache_dir() -> Path:
    return Path(os.environ.get("MLPLATFORM_CACHE", Path.home() / ".cache" / "mlplatform")) / "images"


class BuildError(RuntimeError):
    """A build step failed: which image, which step, which package (when known), and the log."""

    def __init__(self, image: str, step: str, message: str, package: str | None = None, log: Path | None = None):
        self.image, self.step, self.package, self.log = image, step, package, log
        what = f" (package {package})" if package else ""
        text = f"image {image}: step {step!r} failed{what}: {message}"
        if log is not None and log.exists():
            tail = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            text += f"\n--- last lines of {log} ---\n" + "\n".join(tail)
        super().__init__(text)


# What the package tools print about the package they failed on.
_PACKAGE_PATTERNS = (
    r"E: Unable to locate package (\S+)",
    r"E: Package '([^']+)' has no installation candidate",
    r"E: Version '[^']+' for '([^']+)' was not found",
    r"No matching distribution found for (\S+)",
    r"Could not find a version that satisfies the requirement (\S+)",
    r"Failed to build (\S+)",
    r"Building wheel for (\S+) \(pyproject.toml\) (?:did not run successfully|\.\.\. error)",
    r"^(\S+ \S+) has requirement ",
    r"^(\S+ \S+) requires \S+, which is not installed",
    r"Cannot install (.+?) because these package versions have conflicting dependencies",
    r"No matching version found for (\S+)\.?$",
    r"404 Not Found - GET \S+/([^/\s]+) - Not found",
)


def failed_package(log: str) -> str | None:
    """The package a failed apt, pip or npm run names, if it names one."""
    for pattern in _PACKAGE_PATTERNS:
        match = re.search(pattern, log, re.MULTILINE)
        if match:
            return match.group(1).rstrip(".,")
    return None


@dataclass(frozen=True)
class Built:
    name: str
    reference: str
    archive: Path
    metadata: dict
    cached: bool


def archive_path(recipe: Recipe, tag: str | None = None) -> Path:
    return cache_dir() / f"{recipe.name}-{tag or recipe.tag()}.oci.tar"


def metadata_path(recipe: Recipe, tag: str | None = None) -> Path:
    return cache_dir() / f"{recipe.name}-{tag or recipe.tag()}.json"


@contextmanager
def _locked(name: str):
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / name, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _run(image: str, step: str, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
         echo: bool = True) -> None:
    with open(log, "a") as out:
        if echo:
            out.write(f"$ {' '.join(argv)}\n")
            out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if result.returncode != 0:
        # The work directory goes away with the failed build: keep its log where the error says.
        kept = cache_dir() / f"{image}-failed.log"
        shutil.copy(log, kept)
        raise BuildError(image, step, f"exit status {result.returncode}", failed_package(kept.read_text(errors="replace")), kept)


# --- checks before anything is built --------------------------------------------------------


def lock_pins(path: Path) -> dict[str, str]:
    return pinlib.read_requirements(path)


def check_pins(recipe: Recipe) -> None:
    """The frozen lock files must pin the top-level packages exactly as the project does."""
    if recipe.python:
        lock = recipe.directory / recipe.python.lock
        if not lock.exists():
            raise BuildError(recipe.name, "pins", f"{lock.relative_to(ROOT)} is missing: run `make images-lock IMAGE={recipe.name}`")
        frozen = lock_pins(lock)
        for package, version in recipe.pins.items():
            got = frozen.get(pinlib.canonical(package))
            if got != version:
                raise BuildError(
                    recipe.name, "pins",
                    f"{lock.relative_to(ROOT)} pins {package}=={got} but the project pins {version}: "
                    f"run `make images-lock IMAGE={recipe.name}`", package)
    if recipe.npm:
        manifest = json.loads((recipe.directory / "package.json").read_text())
        for package, version in manifest.get("dependencies", {}).items():
            want = pinlib.npm_pins().get(package)
            if want != version:
                raise BuildError(recipe.name, "pins", f"package.json pins {package} {version}, the project pins {want}", package)


# --- base: Debian from mmdebstrap -----------------------------------------------------------


def ensure_base(base: Base, image: str) -> tuple[Path, oci.Layer]:
    """The unpacked base root filesystem and its layer, built once per package list."""
    directory = cache_dir() / "base" / base.key()
    record = directory / "layer.json"
    with _locked(f"base-{base.key()}"):
        if record.exists():
            return directory / "rootfs", oci.Layer(**json.loads(record.read_text()))
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        log = directory / "build.log"
        rootfs = directory / "rootfs"
        argv = ["mmdebstrap", "--mode=root", "--variant=apt", "--format=directory",
                f"--include={','.join(base.packages)}",
                *[f"--dpkgopt={option}" for option in DPKG_OPTIONS],
                # Kubernetes and runc bind-mount these; they must exist to be mount points.
                "--customize-hook=touch \"$1/etc/resolv.conf\"",
                "--customize-hook=test -e \"$1/etc/hosts\" || printf '127.0.0.1 localhost\\n::1 localhost\\n' > \"$1/etc/hosts\"",
                "--customize-hook=rm -rf \"$1/var/log/\"*.log \"$1/var/cache/ldconfig/aux-cache\"",
                base.suite, str(rootfs), base.mirror]
        env = {**os.environ, "SOURCE_DATE_EPOCH": "0"}
        _run(image, "base (mmdebstrap)", argv, log, env)
        layer = oci.write_layer(rootfs, cache_dir() / "blobs", skip_contents_of=("dev", "proc", "sys"))
        record.write_text(json.dumps(layer.to_json()))
        return rootfs, layer


# --- system: commands in a chroot on an overlay of the base ---------------------------------

_CHROOT = r"""
set -eu
merged=$1; shift
mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$UPPER,workdir=$WORK" "$merged"
mount -t proc proc "$merged/proc"
mount --bind /dev "$merged/dev"
mount -t tmpfs -o mode=1777 tmpfs "$merged/tmp"
mount --bind /etc/resolv.conf "$merged/etc/resolv.conf"
mkdir "$merged/tmp/inputs" "$merged/tmp/pip-cache"
mount --bind "$INPUTS" "$merged/tmp/inputs"
mount --bind "$PIP_CACHE" "$merged/tmp/pip-cache"
touch "$merged/tmp/build-ca.crt"
mount --bind "$BUILD_CA" "$merged/tmp/build-ca.crt"
exec chroot "$merged" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 PIP_CACHE_DIR=/tmp/pip-cache \
    PIP_CERT=/tmp/build-ca.crt PIP_DEFAULT_TIMEOUT="$PIP_DEFAULT_TIMEOUT" "$@"
"""


def build_ca() -> str:
    """The CA bundle this machine trusts, for pip during the build only: the image keeps Debian's."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("no CA bundle on this machine (set PIP_CERT)")


class Overlay:
    """Run commands in a chroot of base + upper; the upper directory becomes the layer."""

    def __init__(self, image: str, lower: Path, work: Path) -> None:
        self.image = image
        self.lower = lower
        self.upper = work / "upper"
        self.inputs = work / "inputs"
        self._work = work / "overlay-work"
        self._merged = work / "merged"
        self.log = work / "build.log"
        for path in (self.upper, self.inputs, self._work, self._merged):
            path.mkdir(parents=True)
        self._pip_cache = cache_dir() / "pip-cache"
        self._pip_cache.mkdir(parents=True, exist_ok=True)

    def run(self, step: str, script: str) -> None:
        env = {"PATH": os.environ.get("PATH", PATH), "LOWER": str(self.lower), "UPPER": str(self.upper),
               "WORK": str(self._work), "INPUTS": str(self.inputs), "PIP_CACHE": str(self._pip_cache), "CHROOT_PATH": PATH,
               "BUILD_CA": build_ca(), "PIP_DEFAULT_TIMEOUT": os.environ.get("PIP_DEFAULT_TIMEOUT", "60")}
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _CHROOT, "chroot",
                str(self._merged), "/bin/sh", "-c", f"set -eu\n{script}"]
        with open(self.log, "a") as out:
            out.write(f"### step {step}\n{script}\n")
        _run(self.image, step, argv, self.log, env, echo=False)


def _system_steps(recipe: Recipe) -> list[tuple[str, str]]:
    steps = []
    if recipe.user:
        user = recipe.user
        steps.append(("user", (
            f"if getent group {user.gid} >/dev/null; then\n"
            f"  test \"$(getent group {user.gid} | cut -d: -f1)\" = {user.group}\n"
            f"else groupadd --gid {user.gid} {user.group}; fi\n"
            f"useradd --no-log-init --uid {user.uid} --gid {user.gid} --create-home --home-dir {user.home} "
            f"--shell /bin/bash {user.name}\n"
            "rm -f /etc/passwd- /etc/group- /etc/shadow- /etc/gshadow- /etc/subuid- /etc/subgid-")))
    if recipe.dirs:
        steps.append(("dirs", "\n".join(
            f"mkdir -p {d.path} && chown {d.owner} {d.path} && chmod {d.mode} {d.path}" for d in recipe.dirs)))
    if recipe.python:
        venv = recipe.python.venv
        steps.append(("python venv", f"python3 -m venv {venv}"))
        steps.append(("pip install", (
            f"{venv}/bin/pip install --no-input --disable-pip-version-check --progress-bar off "
            "-r /tmp/inputs/requirements.txt\n"
            # pip runs at build time only: its bytecode is dead weight in the image.
            f"find {venv} -name __pycache__ -path '*/pip/*' -prune -exec rm -rf {{}} +")))
        steps.append(("pip check", f"{venv}/bin/pip check"))
        if recipe.python.owner != "0:0":
            steps.append(("venv owner", f"chown -R {recipe.python.owner} {venv}"))
        steps.append(("python smoke test", f"{venv}/bin/python -c 'import sys; print(sys.version)'"))
    return steps


def _system_layer(recipe: Recipe, lower: Path, work: Path) -> tuple[oci.Layer, Path]:
    overlay = Overlay(recipe.name, lower, work)
    if recipe.python:
        shutil.copy(recipe.directory / recipe.python.lock, overlay.inputs / "requirements.txt")
    for step, script in _system_steps(recipe):
        overlay.run(step, script)
    return oci.write_layer(overlay.upper, cache_dir() / "blobs"), overlay.upper


# --- app: files from the repository and the npm tree -----------------------------------------


def _app_layer(recipe: Recipe, work: Path) -> tuple[oci.Layer, Path]:
    stage = work / "app"
    stage.mkdir()
    log = work / "build.log"

    def inside(path: str) -> Path:
        return stage / path.lstrip("/")

    if recipe.base is None:  # no chroot to make them in (recipe.py allows root-owned ones only)
        for d in recipe.dirs:
            inside(d.path).mkdir(parents=True, exist_ok=True)
    for file in recipe.files:
        for source, destination in expand(file):
            target = inside(destination)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            if file.mode:
                os.chmod(target, int(file.mode, 8))
    for link in recipe.links:
        target = inside(link.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link.target, target)
    if recipe.npm:
        target = inside(recipe.npm.dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(recipe.directory / name, target / name)
        # Exactly the lock file, no dev dependencies, no install scripts (the tree is plain JavaScript).
        _run(recipe.name, "npm ci", ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund",
                                     "--loglevel=error", "--cache", str(cache_dir() / "npm-cache")], log, cwd=target)
    for directory, dirnames, _ in os.walk(stage):
        for name in dirnames:
            os.chmod(Path(directory) / name, 0o755)
    if recipe.base is None:
        for d in recipe.dirs:
            os.chmod(inside(d.path), int(d.mode, 8))
    return oci.write_layer(stage, cache_dir() / "blobs", owner=(0, 0)), stage


# --- the image --------------------------------------------------------------------------------


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def built(recipe: Recipe, tag: str | None = None) -> Built | None:
    tag = tag or recipe.tag()
    meta = metadata_path(recipe, tag)
    archive = archive_path(recipe, tag)
    if meta.exists() and archive.exists():
        return Built(recipe.name, f"{REPOSITORY}/{recipe.name}:{tag}", archive, json.loads(meta.read_text()), cached=True)
    return None


def build(recipe: Recipe) -> Built:
    """Build `recipe` unless its archive is already in the cache."""
    check_pins(recipe)
    # The tag is what the inputs are now; if they change while the build runs, the result is
    # not published under either tag (checked at the end).
    tag = recipe.tag()
    reference = f"{REPOSITORY}/{recipe.name}:{tag}"
    cached = built(recipe, tag)
    if cached:
        return cached
    with _locked(recipe.name):
        cached = built(recipe, tag)
        if cached:
            return cached
        started = time.monotonic()
        timings: dict[str, float] = {}
        work = cache_dir() / "work" / f"{recipe.name}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "build.log").touch()  # kept beside the archive, even for an image that ran no command
        try:
            layers, trees, history = [], [], []
            if recipe.base:
                lower, base_layer = ensure_base(recipe.base, recipe.name)
                timings["base"] = round(time.monotonic() - started, 1)
                mark = time.monotonic()
                system_layer, upper = _system_layer(recipe, lower, work)
                timings["system"] = round(time.monotonic() - mark, 1)
                layers, trees = [base_layer, system_layer], [lower, upper]
                history = [f"mmdebstrap {recipe.base.suite} {' '.join(recipe.base.packages)}",
                           "user, directories, Python packages (images/build.py)"]
            mark = time.monotonic()
            app_layer, stage = _app_layer(recipe, work)
            timings["app"] = round(time.monotonic() - mark, 1)
            layers, trees, history = [*layers, app_layer], [*trees, stage], [*history, "files and npm packages"]
            config = recipe.config
            image_config = oci.image_config(
                layers, user=config.user, workdir=config.workdir, entrypoint=list(config.entrypoint),
                cmd=list(config.cmd), env=dict(config.env), ports=list(config.ports),
                labels={"org.opencontainers.image.title": reference,
                        "org.opencontainers.image.description": recipe.summary},
                history=history)
            if recipe.tag() != tag:
                raise BuildError(recipe.name, "inputs", "the recipe, its pins or its files changed during the build: run it again")
            archive = archive_path(recipe, tag)
            manifest = oci.write_archive(archive, tag, layers, image_config,
                                         {"org.opencontainers.image.ref.name": tag,
                                          "io.mlplatform.image.reference": reference})
            rootfs_bytes = sum(_du(tree) for tree in trees)
            timings["total"] = round(time.monotonic() - started, 1)
            metadata = {"reference": reference, "manifest": manifest, "archive_bytes": archive.stat().st_size,
                        "rootfs_bytes": rootfs_bytes, "layers": [layer.to_json() for layer in layers],
                        "seconds": timings, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "pins": recipe.pins}
            metadata_path(recipe, tag).write_text(json.dumps(metadata, indent=2))
            _prune(recipe, tag)
            (work / "build.log").replace(cache_dir() / f"{recipe.name}-{tag}.log")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Built(recipe.name, reference, archive, metadata, cached=False)


# Builds kept per image: the new one and the newest before it, so that two clones or branches
# on one machine (a developer's and a test's, say), which share this cache, keep each other's.
KEPT_BUILDS = 3


def _prune(recipe: Recipe, keep: str) -> None:
    """Builds of this image beyond the newest KEPT_BUILDS (`keep` among them), and the layer blobs
    that only they used.

    Only blobs named by the removed builds' records are candidates, so the blobs of a build
    still in progress elsewhere are never touched.
    """
    builds: dict[str, list[Path]] = {}
    for path in cache_dir().glob(f"{recipe.name}-*"):
        stem = path.name[len(recipe.name) + 1:].split(".")[0]
        if re.fullmatch(r"[0-9a-f]{16}", stem):
            builds.setdefault(stem, []).append(path)

    def built_at(stem: str) -> float:
        return max(path.stat().st_mtime for path in builds[stem])

    older = sorted((stem for stem in builds if stem != keep), key=built_at, reverse=True)
    candidates: set[str] = set()
    for stem in older[KEPT_BUILDS - 1:]:
        for path in builds[stem]:
            if path.suffix == ".json":
                candidates.update(Path(layer["path"]).name for layer in json.loads(path.read_text()).get("layers", []))
            path.unlink(missing_ok=True)
    used = set()
    for meta in cache_dir().glob("*.json"):
        used.update(Path(layer["path"]).name for layer in json.loads(meta.read_text()).get("layers", []))
    for base in (cache_dir() / "base").glob("*/layer.json"):
        used.add(Path(json.loads(base.read_text())["path"]).name)
    for name in candidates - used:
        (cache_dir() / "blobs" / name).unlink(missing_ok=True)


# --- locks: freeze the transitive pins ---------------------------------------------------------


def lock(recipe: Recipe) -> Path:
    """Install the top-level pins into a scratch image and write the frozen lock beside the recipe."""
    if recipe.npm:
        target = recipe.directory
        log = cache_dir() / f"{recipe.name}-lock.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        manifest = json.loads((target / "package.json").read_text())
        manifest["dependencies"] = {package: pinlib.npm_pins()[package] for package in manifest["dependencies"]}
        (target / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _run(recipe.name, "npm lock", ["npm", "install", "--package-lock-only", "--omit=dev", "--ignore-scripts",
                                       "--no-audit", "--no-fund"], log, cwd=target)
        return target / "package-lock.json"
    if not recipe.python:
        raise RecipeError(f"image {recipe.name} has no Python or npm packages to lock")
    work = cache_dir() / "work" / f"{recipe.name}-lock-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        lower, _ = ensure_base(recipe.base, recipe.name)
        overlay = Overlay(recipe.name, lower, work)
        (overlay.inputs / "top-level.txt").write_text("".join(f"{p}=={v}\n" for p, v in recipe.pins.items()))
        # Whatever else the project pins (PyYAML for the Pulumi program, say) resolves to that
        # same version here: one version of each package across the project.
        (overlay.inputs / "constraints.txt").write_text("".join(f"{p}=={v}\n" for p, v in pinlib.python_pins().items()))
        venv = recipe.python.venv
        overlay.run("python venv", f"python3 -m venv {venv}")
        overlay.run("pip install (lock)", f"{venv}/bin/pip install --no-input --disable-pip-version-check "
                                          "--progress-bar off -r /tmp/inputs/top-level.txt -c /tmp/inputs/constraints.txt")
        overlay.run("pip freeze", f"{venv}/bin/pip freeze --all --disable-pip-version-check > /tmp/inputs/frozen.txt")
        frozen = (overlay.inputs / "frozen.txt").read_text()
        header = (f"# Frozen by `make images-lock IMAGE={recipe.name}` from the project's pins of "
                  f"{', '.join(recipe.python.packages)}\n# (images/pins.py); every other line is what they pulled in. "
                  "Do not edit by hand.\n")
        path = recipe.directory / recipe.python.lock
        path.write_text(header + frozen)
        return path
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- command line --------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.build", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_cmd = sub.add_parser("build", help="build the images (all by default) that the cache lacks")
    build_cmd.add_argument("names", nargs="*")
    tag_cmd = sub.add_parser("reference", help="print an image's reference, mlplatform/<name>:<tag>, without building")
    tag_cmd.add_argument("name")
    path_cmd = sub.add_parser("archive", help="print the path of an image's archive (built or not)")
    path_cmd.add_argument("name")
    sub.add_parser("list", help="every image: reference, whether it is built, sizes and build time")
    check_cmd = sub.add_parser("check", help="fail, naming them, if images (all by default) are not built")
    check_cmd.add_argument("names", nargs="*")
    lock_cmd = sub.add_parser("lock", help="re-freeze an image's lock file from the project's pins")
    lock_cmd.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for name in args.names or names():
                started = time.monotonic()
                result = build(load(name))
                how = "cached" if result.cached else f"built in {time.monotonic() - started:.0f} s"
                print(f"{result.reference}  {how}  {_size(result.metadata['archive_bytes'])}  {result.archive}", flush=True)
        elif args.command == "reference":
            print(load(args.name).reference())
        elif args.command == "archive":
            print(archive_path(load(args.name)))
        elif args.command == "list":
            for name in names():
                recipe = load(name)
                done = built(recipe)
                if done:
                    meta = done.metadata
                    seconds = meta["seconds"]
                    print(f"{recipe.reference()}  built  archive {_size(meta['archive_bytes'])}  "
                          f"rootfs {_size(meta['rootfs_bytes'])}  took {seconds['total']:.0f} s"
                          + (f" (base {seconds['base']:.0f} s, 0 when it was cached)" if "base" in seconds else ""))
                else:
                    print(f"{recipe.reference()}  not built (make images)")
        elif args.command == "check":
            missing = [load(name).reference() for name in args.names or names() if not built(load(name))]
            if missing:
                print(f"error: not built: {', '.join(missing)}; build with `make images`", file=sys.stderr)
                return 1
        elif args.command == "lock":
            for name in args.names:
                print(lock(load(name)))
    except (BuildError, RecipeError, pinlib.PinError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
