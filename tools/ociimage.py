#!/usr/bin/env python3
"""Packs files into a one-layer OCI image archive that `ctr images import` reads.

Usage: python3 -m tools.ociimage --name REF --out FILE.tar [--entrypoint ARG ...] [--user U:G] [--env K=V ...] SRC=DEST ...

A thin command over images/oci.py, the project's one OCI writer (the image builder's): the files
are staged at their destinations (symlinks kept) with zero timestamps and root ownership, so the
same inputs give the same archive. The image's full name goes into the index for containerd
(`io.containerd.image.name`), beside its tag (`org.opencontainers.image.ref.name`).

Run it from the repository root (or with it on PYTHONPATH), the import root of images/ too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from images import oci


def stage(files: list[tuple[str, str]], top: Path) -> None:
    """Copy each SRC to DEST below `top`, then zero every timestamp."""
    for source, destination in files:
        target = top / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(source):
            os.symlink(os.readlink(source), target)
        else:
            shutil.copyfile(source, target)
            os.chmod(target, os.stat(source).st_mode & 0o7777)
    for directory, subdirectories, names in os.walk(top, topdown=False):
        for name in names + subdirectories:
            os.utime(Path(directory) / name, (0, 0), follow_symlinks=False)


def pack(name: str, files: list[tuple[str, str]], entrypoint: list[str], user: str, env: list[str], out: Path) -> None:
    tag = name.rsplit(":", 1)[1]
    with tempfile.TemporaryDirectory() as scratch:
        top = Path(scratch) / "rootfs"
        top.mkdir()
        stage(files, top)
        layer = oci.write_layer(top, Path(scratch) / "blobs", owner=(0, 0))
        config = oci.image_config(
            [layer], user=user, workdir="/", entrypoint=entrypoint, cmd=[],
            env=dict(e.split("=", 1) for e in env), ports=[], labels={}, history=[],
        )
        oci.write_archive(out, tag, [layer], config, annotations={}, name=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="full reference with a tag, e.g. registry.k8s.io/pause:3.10.2")
    parser.add_argument("--out", required=True)
    parser.add_argument("--entrypoint", action="append", default=[], help="repeat for each argument")
    parser.add_argument("--user", default="0:0")
    parser.add_argument("--env", action="append", default=["PATH=/bin"])
    parser.add_argument("files", nargs="+", metavar="SRC=DEST")
    args = parser.parse_args(argv)
    repo, _, tag = args.name.rpartition(":")
    if not repo or "/" in tag or tag in ("", "latest"):
        # An untagged or :latest image gets pull policy Always, and nothing can be pulled here.
        parser.error(f"--name {args.name}: needs an explicit tag other than latest")
    pack(args.name, [tuple(f.split("=", 1)) for f in args.files], args.entrypoint, args.user, args.env, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
