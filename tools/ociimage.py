#!/usr/bin/env python3
"""Packs files into a one-layer OCI image archive that `ctr images import` reads.

Usage: ociimage.py --name REF --out FILE.tar [--entrypoint PATH] [--user U:G] SRC=DEST ...

No Docker, registry or umoci: an OCI image layout (oci-layout, index.json, blobs/sha256/...) is
three JSON documents and a tar of the layer, written here with the standard library. Every
timestamp is zero and every file is owned by root, so the same inputs give the same digest, and
the image's name never changes by rebuilding it. The name goes into the index as
`io.containerd.image.name` (what containerd names the imported image) and its tag as
`org.opencontainers.image.ref.name` (the OCI convention).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _tarinfo(name: str, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def layer(files: list[tuple[str, str]]) -> tuple[bytes, bytes]:
    """The layer (gzipped, and its uncompressed tar for the diff id) of SRC files at DEST paths."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for _, dest in files:
            parts = dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            tar.addfile(_tarinfo(d + "/", type=tarfile.DIRTYPE, mode=0o755))
        for src, dest in sorted(files, key=lambda f: f[1]):
            if os.path.islink(src):
                tar.addfile(_tarinfo(dest.strip("/"), type=tarfile.SYMTYPE, linkname=os.readlink(src), mode=0o777))
                continue
            with open(src, "rb") as f:
                data = f.read()
            mode = 0o755 if os.access(src, os.X_OK) else 0o644
            tar.addfile(_tarinfo(dest.strip("/"), size=len(data), mode=mode), io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0), raw.getvalue()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image(name: str, files: list[tuple[str, str]], entrypoint: list[str], user: str, env: list[str]) -> bytes:
    """The bytes of an OCI image layout archive holding one image named NAME."""
    compressed, uncompressed = layer(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user, "Env": env},
        "rootfs": {"type": "layers", "diff_ids": [_digest(uncompressed)]},
    }
    config_blob = json.dumps(config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": _digest(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": _digest(compressed), "size": len(compressed)}],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": _digest(manifest_blob),
                "size": len(manifest_blob),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            }
        ],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(path: str, data: bytes) -> None:
            tar.addfile(_tarinfo(path, size=len(data), mode=0o644), io.BytesIO(data))

        tar.addfile(_tarinfo("blobs/", type=tarfile.DIRTYPE, mode=0o755))
        tar.addfile(_tarinfo("blobs/sha256/", type=tarfile.DIRTYPE, mode=0o755))
        for blob in (config_blob, compressed, manifest_blob):
            add("blobs/sha256/" + _digest(blob).split(":", 1)[1], blob)
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
    return out.getvalue()


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
    files = [tuple(f.split("=", 1)) for f in args.files]
    data = image(args.name, files, args.entrypoint, args.user, args.env)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
