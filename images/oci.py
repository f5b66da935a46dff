"""OCI image layout, written directly: layer tarballs from directories, config, manifest, archive.

A layer is a gzip-compressed tar of a directory. For a directory that is an overlayfs upper
directory, the kernel's whiteouts (character devices 0/0) and opaque directories become the OCI
spec's `.wh.<name>` and `.wh..wh..opq` entries. File owners are kept as numeric ids; names are
dropped, so the image's own /etc/passwd decides who they are.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, Iterable

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Layer:
    digest: str  # sha256:<hex> of the compressed blob
    diff_id: str  # sha256:<hex> of the uncompressed tar
    size: int  # compressed bytes
    path: str  # the blob on disk

    def to_json(self) -> dict:
        return asdict(self)


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to `sink`."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.count += len(data)
        self.sink.write(data)
        return len(data)


def _entries(top: Path, skip_contents_of: tuple[str, ...]) -> Iterable[tuple[Path, str]]:
    """(path, name in the layer) for everything below `top`, parents first, in sorted order."""
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        relative_dir = os.path.relpath(dirpath, top)
        if relative_dir in skip_contents_of:
            dirnames[:] = []
            continue
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            arcname = name if relative_dir == "." else f"{relative_dir}/{name}"
            yield path, arcname


def write_layer(top: Path, blob_dir: Path, *, owner: tuple[int, int] | None = None,
                skip_contents_of: tuple[str, ...] = (), level: int = 1) -> Layer:
    """Pack the directory `top` as a layer blob in `blob_dir` (named by its digest).

    `owner` forces every entry's uid/gid (files staged by the builder for root). Directories
    listed in `skip_contents_of` are kept empty (the runtime mounts /dev, /proc and /sys).
    """
    blob_dir.mkdir(parents=True, exist_ok=True)
    partial = blob_dir / f".partial-{os.getpid()}"
    with open(partial, "wb") as out:
        compressed = _Hashing(out)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=level, mtime=0) as gz:
            plain = _Hashing(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                for path, arcname in _entries(top, skip_contents_of):
                    _add(tar, path, arcname, owner)
    digest = f"sha256:{compressed.sha.hexdigest()}"
    final = blob_dir / compressed.sha.hexdigest()
    os.replace(partial, final)
    return Layer(digest=digest, diff_id=f"sha256:{plain.sha.hexdigest()}", size=compressed.count, path=str(final))


def _add(tar: tarfile.TarFile, path: Path, arcname: str, owner: tuple[int, int] | None) -> None:
    st = os.lstat(path)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlayfs whiteout: the file was deleted
        parent, _, name = arcname.rpartition("/")
        whiteout = tarfile.TarInfo(f"{parent}/.wh.{name}" if parent else f".wh.{name}")
        whiteout.mtime = int(st.st_mtime)
        tar.addfile(whiteout)
        return
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return
    info = tar.gettarinfo(str(path), arcname)
    info.uname = info.gname = ""
    if owner is not None:
        info.uid, info.gid = owner
    if info.isreg():
        with open(path, "rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)
    if stat.S_ISDIR(st.st_mode):
        try:
            opaque = os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
        except OSError:
            opaque = False
        if opaque:  # overlayfs: the directory replaced one below, whose contents are gone
            marker = tarfile.TarInfo(f"{arcname}/.wh..wh..opq")
            marker.mtime = int(st.st_mtime)
            tar.addfile(marker)


def _blob(data: bytes) -> tuple[str, bytes]:
    return f"sha256:{hashlib.sha256(data).hexdigest()}", data


def image_config(layers: list[Layer], *, user: str, workdir: str, entrypoint: list[str], cmd: list[str],
                 env: dict[str, str], ports: list[int], labels: dict[str, str], history: list[str]) -> dict:
    config: dict = {"User": user, "WorkingDir": workdir, "Entrypoint": entrypoint,
                    "Env": [f"{key}={value}" for key, value in env.items()], "Labels": labels}
    if cmd:
        config["Cmd"] = cmd
    if ports:
        config["ExposedPorts"] = {f"{port}/tcp": {} for port in ports}
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created_by": line} for line in history],
    }


def write_archive(path: Path, tag: str, layers: list[Layer], config: dict, annotations: dict[str, str],
                  name: str | None = None) -> str:
    """Write an OCI layout as one tar (what `ctr images import` and `umoci` read). Returns the manifest digest.

    `name`, a full reference, is recorded for containerd (`io.containerd.image.name`), which then
    imports the image under it without being told a base name.
    """
    config_digest, config_bytes = _blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": layer.digest, "size": layer.size} for layer in layers],
        "annotations": annotations,
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{"mediaType": MANIFEST_MEDIA_TYPE, "digest": manifest_digest, "size": len(manifest_bytes),
                       "annotations": {REF_NAME: tag, **({CONTAINERD_NAME: name} if name else {})}}],
    }
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        add_bytes("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add_bytes("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in ((config_digest, config_bytes), (manifest_digest, manifest_bytes)):
            add_bytes(f"blobs/sha256/{digest.split(':')[1]}", data)
        seen = set()
        for layer in layers:
            if layer.digest in seen:
                continue
            seen.add(layer.digest)
            info = tar.gettarinfo(layer.path, f"blobs/sha256/{layer.digest.split(':')[1]}")
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o644
            info.mtime = 0  # like every other entry: the same image gives the same archive
            with open(layer.path, "rb") as handle:
                tar.addfile(info, handle)
    os.replace(partial, path)
    return manifest_digest
