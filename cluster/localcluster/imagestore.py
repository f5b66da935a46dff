"""The platform's images unpacked once per machine, and every new real node's containerd started on them.

Importing an image into a node's containerd copies its layers into the content store and unpacks
them into overlayfs snapshots: about a minute per node for the platform's images on this machine,
most of a new cluster's start (docs/benchmarks.md). Here that is done once, into a store under the
image cache kept for that exact set of images (their manifest digests) and that containerd. A new
node's containerd root then starts as hard links into the store, which takes seconds:

- what the store holds is never written in place: containerd adds content blobs and snapshots as
  new files and removes them by unlinking, and overlayfs only reads a snapshot that is a container's
  lower layer (a write copies the file up into the container's own snapshot), so every node can
  share the same files;
- the two bolt databases containerd does write in place (its metadata and the snapshotter's) are
  copied, and the instance's id is left out so that each node's containerd makes its own.

A node whose containerd root exists already (one restarted by `bin/cluster up`) is not touched, and
a node on another filesystem than the store imports as before (images.import_platform_images runs
after either way and imports whatever the node still lacks).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import images
from .containerd import Client
from .process import wait_for

# What containerd writes in place, under its root: copied into a node, never linked.
WRITTEN_IN_PLACE = ("io.containerd.metadata.v1.bolt/meta.db", "io.containerd.snapshotter.v1.overlayfs/metadata.db")
# The containerd instance's id, made at its first start: each node's containerd makes its own.
INSTANCE_ID = "io.containerd.grpc.v1.introspection/uuid"
COMPLETE = "complete"  # written last: a store without it was interrupted and is built again
KEPT = 3  # stores a machine keeps (about 5.4 GB each for today's images)


def stores_dir() -> Path:
    return images.image_cache_dir() / "node-stores"


def store_key(containerd_bin: Path, platform: list[images.PlatformImage]) -> str:
    """The store's name: which containerd (its binary's path names the pinned version) and which images."""
    wanted = [str(containerd_bin)] + sorted(f"{image.name}@{image.digest}" for image in platform)
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]


@contextmanager
def _locked(exclusive: bool) -> Iterator[None]:
    """Builders hold the stores' lock alone; nodes linking to a store share it."""
    stores_dir().mkdir(parents=True, exist_ok=True)
    with open(stores_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield


def ensure(containerd_bin: Path, log: Callable[[str], None]) -> Path:
    """The store for the platform's images as they are built now, made if missing; its containerd root.

    Raises images.ImagesNotBuilt where an image is not built. A machine keeps the KEPT stores used
    last (two checkouts with different images, say, each keep theirs); making another removes the
    rest, and a node linked to a removed one keeps its files (hard links).
    """
    platform = images.platform_images()
    store = stores_dir() / store_key(containerd_bin, platform)
    with _locked(exclusive=False):
        if (store / COMPLETE).exists():
            (store / COMPLETE).touch()  # used now: the stores used last are the ones kept
            return store / "root"
    # Made (or removed as an old store) only under the lock held alone: checked again in it.
    with _locked(exclusive=True):
        if (store / COMPLETE).exists():
            (store / COMPLETE).touch()
            return store / "root"
        others = sorted((d for d in stores_dir().iterdir() if d.is_dir() and d != store),
                        key=lambda d: (d / COMPLETE).stat().st_mtime if (d / COMPLETE).exists() else 0)
        for old in others[:max(0, len(others) - (KEPT - 1))]:
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        started = time.monotonic()
        _build(store, containerd_bin, log)
        log(f"unpacked the platform's images once for every node ({store}) in {time.monotonic() - started:.1f} s")
    return store / "root"


def _build(store: Path, containerd_bin: Path, log: Callable[[str], None]) -> None:
    """A containerd of its own (no CRI, no network: a unix socket under the store) imports the images
    and stops; the store is complete once it has stopped, its databases closed."""
    store.mkdir(parents=True)
    socket = store / "containerd.sock"
    config = store / "config.toml"
    config.write_text(
        "version = 3\n"
        f"root = '{store / 'root'}'\n"
        f"state = '{store / 'state'}'\n"
        # Nothing but the image store: no CRI, no NRI, and no /opt/containerd (the opt plugin's).
        "disabled_plugins = ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.images', "
        "'io.containerd.cri.v1.runtime', 'io.containerd.nri.v1.nri', 'io.containerd.internal.v1.opt']\n"
        f"[grpc]\n  address = '{socket}'\n")
    with open(store / "containerd.log", "w") as out:
        daemon = subprocess.Popen([str(containerd_bin / "containerd"), "--config", str(config)],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for("the store's containerd answering",
                 lambda: Client(containerd_bin, socket).ctr("version", check=False).returncode == 0,
                 60, store / "containerd.log")
        images.import_platform_images(Client(containerd_bin, socket), log)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    shutil.rmtree(store / "state", ignore_errors=True)
    (store / "root" / INSTANCE_ID).unlink(missing_ok=True)
    (store / COMPLETE).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))


def link(store_root: Path, root: Path, log: Callable[[str], None]) -> bool:
    """A new node's containerd ROOT made from the store (hard links, its databases copied).

    False, and ROOT left as it was, where ROOT exists already or the store is on another filesystem.
    """
    if root.exists():
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(store_root).st_dev != os.stat(root.parent).st_dev:
        log(f"the image store ({store_root}) is on another filesystem than {root}: importing instead")
        return False
    started = time.monotonic()
    with _locked(exclusive=False):
        partial = root.with_name(root.name + ".linking")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run(["cp", "-al", str(store_root), str(partial)], check=True, capture_output=True)
    for name in WRITTEN_IN_PLACE:
        target = partial / name
        if target.exists():
            target.unlink()
            shutil.copy2(store_root / name, target)
    partial.rename(root)
    log(f"containerd's root linked to the image store in {time.monotonic() - started:.1f} s")
    return True
