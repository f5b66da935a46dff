"""tools/ociimage.py: the image archives that real nodes import (no cluster needed)."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from real_cluster import ROOT

# Run as tools/build.sh and the cluster manager run it: a module below the repository root.
OCIIMAGE = [sys.executable, "-m", "tools.ociimage"]


def pack(tmp_path: Path, out: str, name: str = "example.local/hello:1.0") -> subprocess.CompletedProcess:
    payload = tmp_path / "hello"
    payload.write_text("#!/bin/sh\necho hello\n")
    payload.chmod(0o755)
    return subprocess.run([*OCIIMAGE, "--name", name, "--out", str(tmp_path / out),
                           "--entrypoint", "/bin/hello", f"{payload}=/bin/hello"], capture_output=True, text=True, cwd=ROOT)


def test_same_inputs_same_archive(tmp_path: Path) -> None:
    assert pack(tmp_path, "a.tar").returncode == 0
    assert pack(tmp_path, "b.tar").returncode == 0
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()


def test_index_names_the_image_for_containerd(tmp_path: Path) -> None:
    pack(tmp_path, "a.tar")
    with tarfile.open(tmp_path / "a.tar") as tar:
        index = json.load(tar.extractfile("index.json"))
        (entry,) = index["manifests"]
        manifest = json.load(tar.extractfile("blobs/sha256/" + entry["digest"].split(":")[1]))
        config = json.load(tar.extractfile("blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
        layer = tar.extractfile("blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]).read()
    assert entry["annotations"]["io.containerd.image.name"] == "example.local/hello:1.0"
    assert config["config"]["Entrypoint"] == ["/bin/hello"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as files:
        member = files.getmember("bin/hello")
    assert member.mode == 0o755 and member.uid == 0 and member.mtime == 0


@pytest.mark.parametrize("name", ["example.local/hello", "example.local/hello:latest"])
def test_untagged_or_latest_refused(tmp_path: Path, name: str) -> None:
    """Pods would pull such an image (pull policy Always), and nothing can be pulled here."""
    run = pack(tmp_path, "a.tar", name=name)
    assert run.returncode == 2 and "explicit tag other than latest" in run.stderr, run.stderr
    assert not (tmp_path / "a.tar").exists()
