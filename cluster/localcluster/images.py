"""Images a node runs, imported into its containerd: nothing is ever pulled.

- the pause image, built by `tools/build.sh pause` from Kubernetes' pause.c under the name
  containerd and the kubelet expect (registry.k8s.io/pause:<tag of that Kubernetes release>);
- a small test image, Debian's static busybox packed by tools/ociimage.py, for the tests and
  for poking at a node (`mlplatform.local/busybox:<Debian version>`);
- the platform's images (images/, `make images`: hub, proxy, notebook, trainer, operator) under
  the names the stack's pods give them with `images.local` (`mlplatform/<name>:<content tag>`,
  which the kubelet reads as docker.io/mlplatform/...). An image the node already holds with the
  same manifest digest is not imported again, so a warm `bin/cluster up --real` only lists them.
"""

from __future__ import annotations

import re
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .containerd import Client, Containerd
from .settings import REPO

BUSYBOX = Path("/bin/busybox")


def busybox_tag() -> str:
    """Debian's version of busybox-static as an image tag (tags allow [A-Za-z0-9_.-] only)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "busybox-static"], capture_output=True, text=True)
    if out.returncode != 0 or not BUSYBOX.is_file():
        raise RuntimeError("the test image needs Debian's busybox-static: `make system` installs it")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", out.stdout.split(":")[-1])


def busybox_image(out_dir: Path) -> tuple[str, Path]:
    name = f"mlplatform.local/busybox:{busybox_tag()}"
    archive = out_dir / "busybox.tar"
    if not archive.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        _pack(["--name", name, "--out", str(archive),
                        "--entrypoint", "/bin/sh", f"{BUSYBOX}=/bin/busybox", *_applet_links(out_dir)])
    return name, archive


def coredns_image(tools: dict[str, str], out_dir: Path) -> tuple[str, Path]:
    """CoreDNS from the tools cache, alone in its image."""
    name = f"mlplatform.local/coredns:{tools['COREDNS_VERSION'].lstrip('v')}"
    archive = out_dir / "coredns.tar"
    if not archive.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        _pack(["--name", name, "--out", str(archive),
                        "--entrypoint", "/coredns", f"{tools['COREDNS_DIR']}/bin/coredns=/coredns"])
    return name, archive


def _pack(args: list[str]) -> None:
    """An image archive packed by tools/ociimage.py, run from the repository root as the cluster manager is."""
    subprocess.run([sys.executable, "-m", "tools.ociimage", *args], check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def _applet_links(out_dir: Path) -> list[str]:
    """Symlinks /bin/<applet> -> busybox for the few applets the tests and a shell need."""
    links = out_dir / "links"
    links.mkdir(exist_ok=True)
    args = []
    for applet in ("sh", "cat", "echo", "sleep", "ls", "nc", "nslookup", "head", "tr", "grep", "dd", "hostname", "ip", "env", "httpd", "mkdir"):
        link = links / applet
        if not link.is_symlink():
            link.symlink_to("busybox")
        args.append(f"{link}=/bin/{applet}")
    return args


def imported(containerd: Containerd, name: str) -> bool:
    return containerd.ctr("images", "ls", "-q", f"name=={name}", check=False).stdout.strip() == name


def ensure(containerd: Containerd, name: str, archive: Path) -> None:
    if not imported(containerd, name):
        containerd.ctr("images", "import", "--all-platforms", str(archive))
        if not imported(containerd, name):
            raise RuntimeError(f"{archive} was imported but containerd has no image {name}")


# --- the platform's images (images/) ---------------------------------------------------------


class ImagesNotBuilt(RuntimeError):
    """Images of images/ that the cache lacks: the node cannot have them."""


@dataclass(frozen=True)
class PlatformImage:
    name: str  # as containerd holds it and pods' statuses name it: docker.io/mlplatform/<name>:<tag>
    archive: Path
    digest: str  # the manifest's, as `ctr images ls` shows it
    size: int  # the archive's bytes


def _builder():
    """The image builder (standard library only, like this package): the repository root is the
    import root of both (`python3 -m cluster.localcluster`). Imported when asked for, as only the
    real nodes need it."""
    from images import build, containerd, recipe

    return build, containerd, recipe


def image_cache_dir() -> Path:
    """Where `make images` keeps the built images (images/build.py)."""
    build, _, _ = _builder()
    return build.cache_dir()


def platform_images() -> list[PlatformImage]:
    """Every image of images/ at the tag its recipe has now (the tag the stack's pods name)."""
    build, containerd, recipe = _builder()
    found, missing = [], []
    for name in recipe.names():
        image = recipe.load(name)
        try:
            tag = image.tag()
        except recipe.RecipeError as error:  # made from a tool that is not built, say
            missing.append(f"mlplatform/{name} ({error})")
            continue
        done = build.built(image, tag)
        if done is None:
            missing.append(f"mlplatform/{name}:{tag}")
            continue
        found.append(PlatformImage(f"{containerd.base_name(name)}:{tag}", done.archive, done.metadata["manifest"],
                                   done.metadata["archive_bytes"]))
    if missing:
        raise ImagesNotBuilt(f"the real nodes run images that are not built: {', '.join(missing)}; "
                             f"build them with `make images` (they go to {build.cache_dir()})")
    return found


def digests(containerd: Containerd | Client) -> dict[str, str]:
    """Image name -> manifest digest, for every image the node's containerd holds."""
    rows = containerd.ctr("images", "ls").stdout.splitlines()[1:]  # REF TYPE DIGEST SIZE PLATFORMS LABELS
    return {fields[0]: fields[2] for fields in (row.split() for row in rows) if len(fields) >= 3}


def import_platform_images(containerd: Containerd | Client, log: Callable[[str], None]) -> dict[str, float]:
    """Imports what of platform_images() the node lacks (or holds with another digest).

    Returns the seconds each import took, by image name; images already there are not listed.
    """
    _, naming, _ = _builder()
    have = digests(containerd)
    took = {}
    for image in platform_images():
        if have.get(image.name) == image.digest:
            continue
        repository = image.name.rsplit(":", 1)[0].rsplit("/", 1)[1]
        command = naming.import_command(image.archive, repository, address=str(containerd.socket),
                                        ctr=str(containerd.bin / "ctr"))
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"importing {image.archive} into the node's containerd failed: {result.stderr.strip()}")
        took[image.name] = round(time.monotonic() - started, 1)
        got = digests(containerd).get(image.name)
        if got != image.digest:
            raise RuntimeError(f"{image.archive} was imported but containerd has {image.name} as {got}, "
                               f"not {image.digest}")
        log(f"imported {image.name} ({image.size / 1e6:.0f} MB) in {took[image.name]} s")
    return took


def main(argv: list[str] | None = None) -> int:
    """`python3 -m cluster.localcluster.images`: the platform's images, as the real nodes will import them."""
    try:
        for image in platform_images():
            print(f"{image.name}  {image.digest}  {image.size / 1e6:.0f} MB")
    except ImagesNotBuilt as error:
        print(f"localcluster: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
