"""Images a node runs, imported into its containerd: nothing is ever pulled.

- the pause image, built by `tools/build.sh pause` from Kubernetes' pause.c under the name
  containerd and the kubelet expect (registry.k8s.io/pause:<tag of that Kubernetes release>);
- a small test image, Debian's static busybox packed by tools/ociimage.py, for the tests and
  for poking at a node (`mlplatform.local/busybox:<Debian version>`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .containerd import Containerd
from .settings import REPO

BUSYBOX = Path("/bin/busybox")


def busybox_tag() -> str:
    """Debian's version of busybox-static as an image tag (tags allow [A-Za-z0-9_.-] only)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "busybox-static"], capture_output=True, text=True)
    if out.returncode != 0 or not BUSYBOX.is_file():
        raise RuntimeError("the test image needs Debian's busybox-static (apt-get install busybox-static)")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", out.stdout.split(":")[-1])


def busybox_image(out_dir: Path) -> tuple[str, Path]:
    name = f"mlplatform.local/busybox:{busybox_tag()}"
    archive = out_dir / "busybox.tar"
    if not archive.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(REPO / "tools" / "ociimage.py"), "--name", name, "--out", str(archive),
                        "--entrypoint", "/bin/sh", f"{BUSYBOX}=/bin/busybox", *_applet_links(out_dir)], check=True)
    return name, archive


def coredns_image(tools: dict[str, str], out_dir: Path) -> tuple[str, Path]:
    """CoreDNS from the tools cache, alone in its image."""
    name = f"mlplatform.local/coredns:{tools['COREDNS_VERSION'].lstrip('v')}"
    archive = out_dir / "coredns.tar"
    if not archive.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(REPO / "tools" / "ociimage.py"), "--name", name, "--out", str(archive),
                        "--entrypoint", "/coredns", f"{tools['COREDNS_DIR']}/bin/coredns=/coredns"], check=True)
    return name, archive


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
