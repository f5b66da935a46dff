"""The real nodes' shared image store (cluster/localcluster/imagestore.py) on plain files: what a new
node's containerd root shares with the store and what it gets a copy of, and which store a set of
images uses. The store made by a real containerd, and nodes running pods from it, are the real-node
tier's (tests/realnode/test_real_node.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.localcluster import imagestore
from cluster.localcluster.images import PlatformImage

BLOB = "io.containerd.content.v1.content/blobs/sha256/ab12"
LAYER_FILE = "io.containerd.snapshotter.v1.overlayfs/snapshots/3/fs/usr/lib/libtf.so"


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A containerd root as the store keeps it: a blob, a snapshot's file, the two databases."""
    root = tmp_path / "store" / "root"
    for name, text in ((BLOB, "blob"), (LAYER_FILE, "layer"), *((db, f"bolt {db}") for db in imagestore.WRITTEN_IN_PLACE)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / LAYER_FILE).parent.joinpath("link").symlink_to("libtf.so")
    return root


def test_a_new_node_shares_the_store_s_files_and_gets_its_own_databases(store: Path, tmp_path: Path) -> None:
    node_root = tmp_path / "node" / "containerd" / "root"
    logged: list[str] = []
    assert imagestore.link(store, node_root, logged.append)
    for shared in (BLOB, LAYER_FILE):
        assert (node_root / shared).stat().st_ino == (store / shared).stat().st_ino, shared
    assert (node_root / LAYER_FILE).parent.joinpath("link").readlink() == Path("libtf.so")
    for db in imagestore.WRITTEN_IN_PLACE:
        assert (node_root / db).read_text() == (store / db).read_text()
        assert (node_root / db).stat().st_ino != (store / db).stat().st_ino, f"{db} must be a copy"
        (node_root / db).write_text("written by the node")
        assert (store / db).read_text() == f"bolt {db}", "a node's write reached the store"
    assert not node_root.with_name("root.linking").exists()
    assert "linked to the image store" in logged[0]


def test_a_node_whose_root_exists_keeps_it(store: Path, tmp_path: Path) -> None:
    node_root = tmp_path / "node" / "root"
    (node_root / "io.containerd.metadata.v1.bolt").mkdir(parents=True)
    assert not imagestore.link(store, node_root, print)
    assert not (node_root / BLOB).exists()


def image(name: str, digest: str) -> PlatformImage:
    return PlatformImage(f"docker.io/mlplatform/{name}:t", Path(f"/cache/{name}.oci.tar"), digest, 1)


def test_the_store_is_named_by_the_images_digests_and_the_containerd() -> None:
    bin_dir = Path("/cache/tools/containerd-v2.3.7/bin")
    one = imagestore.store_key(bin_dir, [image("hub", "sha256:1"), image("trainer", "sha256:2")])
    assert one == imagestore.store_key(bin_dir, [image("trainer", "sha256:2"), image("hub", "sha256:1")])
    assert one != imagestore.store_key(bin_dir, [image("hub", "sha256:1"), image("trainer", "sha256:3")])
    assert one != imagestore.store_key(Path("/cache/tools/containerd-v2.4.0/bin"),
                                       [image("hub", "sha256:1"), image("trainer", "sha256:2")])


def test_a_complete_store_is_used_as_it_is_and_an_incomplete_one_is_built_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = [image("hub", "sha256:1")]
    monkeypatch.setattr(imagestore.images, "platform_images", lambda: images)
    monkeypatch.setattr(imagestore, "stores_dir", lambda: tmp_path / "stores")
    built: list[Path] = []

    def build(store: Path, containerd_bin: Path, log) -> None:
        built.append(store)
        (store / "root").mkdir(parents=True)
        (store / imagestore.COMPLETE).write_text("now")

    monkeypatch.setattr(imagestore, "_build", build)
    bin_dir = tmp_path / "containerd" / "bin"
    others = [tmp_path / "stores" / name for name in ("used-first", "used-second", "used-last")]
    for used_at, other in enumerate(others, start=1):
        (other / "root").mkdir(parents=True)
        (other / imagestore.COMPLETE).write_text("then")
        os.utime(other / imagestore.COMPLETE, (used_at, used_at))
    interrupted = tmp_path / "stores" / imagestore.store_key(bin_dir, images)
    (interrupted / "root").mkdir(parents=True)

    root = imagestore.ensure(bin_dir, print)
    assert built == [interrupted] and root == interrupted / "root"
    # The machine keeps KEPT stores: the new one and those used last.
    assert [other.exists() for other in others] == [False, True, True]
    assert imagestore.ensure(bin_dir, print) == root and len(built) == 1
