"""Import a built image into a containerd, for the real nodes of the local cluster.

    python -m images.containerd NAME [--address SOCKET] [--ctr PATH] [--dry-run]

Pods name the images `mlplatform/<name>:<tag>`, which Kubernetes reads as
`docker.io/mlplatform/<name>:<tag>`; the archive's index names its manifest by the tag alone, so
`--base-name docker.io/mlplatform/<name>` gives exactly that name. The CRI plugin only sees
images in the `k8s.io` namespace. Preloaded images pass the kubelet's pull check as long as
the pod's tag is not `latest` (never used here).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from images.build import archive_path, build
from images.recipe import REPOSITORY, load

NAMESPACE = "k8s.io"
REGISTRY = "docker.io"  # where Kubernetes puts a reference without a registry


def base_name(name: str) -> str:
    return f"{REGISTRY}/{REPOSITORY}/{name}"


def import_command(archive: Path, name: str, *, address: str | None = None, ctr: str = "ctr") -> list[str]:
    """The `ctr` command line that imports `archive` as docker.io/mlplatform/<name>:<tag>."""
    command = [ctr]
    if address:
        command += ["--address", address]
    return [*command, "-n", NAMESPACE, "images", "import", "--base-name", base_name(name), str(archive)]


def import_image(name: str, *, address: str | None = None, ctr: str = "ctr", build_missing: bool = True) -> str:
    """Import image `name` (building it first if the cache lacks it); returns the full reference."""
    recipe = load(name)
    archive = build(recipe).archive if build_missing else archive_path(recipe)
    if not archive.exists():
        raise FileNotFoundError(f"image {name}: {archive} is not built; run `make images`")
    subprocess.run(import_command(archive, name, address=address, ctr=ctr), check=True)
    return f"{REGISTRY}/{recipe.reference()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m images.containerd", description="import built images into containerd")
    parser.add_argument("names", nargs="+")
    parser.add_argument("--address", help="containerd's socket (ctr's --address)")
    parser.add_argument("--ctr", default="ctr", help="the ctr binary")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(argv)
    for name in args.names:
        if args.dry_run:
            print(" ".join(import_command(archive_path(load(name)), name, address=args.address, ctr=args.ctr)))
        else:
            print(import_image(name, address=args.address, ctr=args.ctr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
