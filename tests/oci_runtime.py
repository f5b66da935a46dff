"""Built images run as real containers with runc, each test in a network namespace of its own.

An image archive (images/build.py) is unpacked once per tag with umoci into
`$MLPLATFORM_CACHE/images/bundles/<name>-<tag>/` and then only read: every container gets its
own runtime config whose root is that unpacked root filesystem, read-only, with tmpfs or bind
mounts where the process writes (as a pod's volumes would). The network namespace has a
loopback interface and nothing else, so the processes reach only each other, on 127.0.0.1.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from images import build as builder
from images.recipe import load

RUNC = "runc"
_CONTAINER_NUMBERS = itertools.count()


def require_tools() -> None:
    missing = [tool for tool in ("runc", "umoci", "mmdebstrap", "unshare", "ip", "nsenter") if shutil.which(tool) is None]
    if os.geteuid() != 0:
        missing.append("root (runc, network namespaces and overlay mounts need it)")
    if missing:
        raise RuntimeError(f"the image tests need {', '.join(missing)} (`make system` installs the commands)")


@dataclass(frozen=True)
class Bundle:
    name: str
    reference: str
    rootfs: Path
    config: dict  # the runtime config umoci generated from the image config

    @property
    def process(self) -> dict:
        return self.config["process"]


def unpacked(name: str) -> Bundle:
    """The image `name`, built if missing, unpacked once per tag."""
    built = builder.build(load(name))
    tag = built.reference.rsplit(":", 1)[1]
    directory = builder.cache_dir() / "bundles" / f"{name}-{tag}"
    done = directory / ".unpacked"
    if not done.exists():
        for old in (builder.cache_dir() / "bundles").glob(f"{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
        layout = directory.with_name(directory.name + ".layout")
        shutil.rmtree(layout, ignore_errors=True)
        layout.mkdir(parents=True)
        with tarfile.open(built.archive) as archive:
            archive.extractall(layout, filter="fully_trusted")
        result = subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(directory)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"umoci unpack {built.archive} failed: {result.stderr[-2000:]}")
        shutil.rmtree(layout)
        done.touch()
    config = json.loads((directory / "config.json").read_text())
    return Bundle(name, built.reference, directory / "rootfs", config)


@contextmanager
def network_namespace(tag: str) -> Iterator[str]:
    """A network namespace with only loopback, up; yields its path."""
    name = f"mlpimg-{os.getpid()}-{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@dataclass
class Mount:
    destination: str
    source: str | None = None  # a host path to bind, else a tmpfs
    readonly: bool = False
    owner: tuple[int, int] = (0, 0)

    def spec(self) -> dict:
        if self.source is None:
            uid, gid = self.owner
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777" if self.owner == (0, 0) else "mode=0755",
                                f"uid={uid}", f"gid={gid}", "size=256m"]}
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": ["rbind", "ro" if self.readonly else "rw"]}


@dataclass
class Container:
    """One process of an image: the image's own config unless told otherwise (as a pod spec would)."""

    bundle: Bundle
    netns: str
    work: Path
    args: list[str] | None = None  # replaces the image's entrypoint and command
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    user: tuple[int, int] | None = None
    hosts: dict[str, str] = field(default_factory=dict)  # extra /etc/hosts names

    def __post_init__(self) -> None:
        # A counter too: two containers of one image may be made within the same millisecond.
        self.id = f"mlpimg-{os.getpid()}-{self.bundle.name}-{int(time.monotonic() * 1000) % 10**7}-{next(_CONTAINER_NUMBERS)}"
        self.state = self.work / "runc-state"
        self.log = self.work / f"{self.id}.log"

    def _prepare(self) -> Path:
        directory = self.work / self.id
        directory.mkdir(parents=True)
        config = json.loads(json.dumps(self.bundle.config))
        process = config["process"]
        process["terminal"] = False
        if self.args is not None:
            process["args"] = self.args
        env = dict(item.split("=", 1) for item in process.get("env", []))
        env.update(self.env)
        process["env"] = [f"{key}={value}" for key, value in env.items()]
        if self.user is not None:
            process["user"] = {"uid": self.user[0], "gid": self.user[1]}
        config["root"] = {"path": str(self.bundle.rootfs), "readonly": True}
        config["hostname"] = self.bundle.name
        namespaces = [ns for ns in config["linux"]["namespaces"] if ns["type"] != "network"]
        config["linux"]["namespaces"] = [*namespaces, {"type": "network", "path": self.netns}]
        hosts = directory / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{ip} {name}\n" for name, ip in self.hosts.items()))
        mounts = [Mount("/tmp"), Mount("/etc/hosts", str(hosts), readonly=True), *self.mounts]
        config["mounts"] = [*config["mounts"], *(mount.spec() for mount in mounts)]
        (directory / "config.json").write_text(json.dumps(config))
        return directory

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run to completion; returns the result (stdout and stderr together in stdout)."""
        directory = self._prepare()
        try:
            return subprocess.run([RUNC, "--root", str(self.state), "run", "--bundle", str(directory), self.id],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        finally:
            self._delete()

    @contextmanager
    def running(self) -> Iterator[Container]:
        """Started in the background; killed and deleted on exit."""
        directory = self._prepare()
        with open(self.log, "w") as out:
            self.process = subprocess.Popen([RUNC, "--root", str(self.state), "run", "--bundle", str(directory), self.id],
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            yield self
        finally:
            subprocess.run([RUNC, "--root", str(self.state), "kill", self.id, "KILL"], capture_output=True)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._delete()

    def exec(self, argv: list[str], timeout: float = 60) -> str:
        """Run `argv` in the running container (as its user); its output, after checking it exited 0."""
        result = self.exec_result(argv, timeout)
        assert result.returncode == 0, f"{self.bundle.reference}: {argv} exited {result.returncode}: {result.stderr}"
        return result.stdout

    def exec_result(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `argv` in the running container (as its user), as a kubelet's exec probe does; its result."""
        user = self.user or (self.bundle.process["user"]["uid"], self.bundle.process["user"]["gid"])
        return subprocess.run([RUNC, "--root", str(self.state), "exec", "--user", f"{user[0]}:{user[1]}", self.id, *argv],
                              capture_output=True, text=True, timeout=timeout)

    def _delete(self) -> None:
        subprocess.run([RUNC, "--root", str(self.state), "delete", "--force", self.id], capture_output=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def http_response(netns: str, url: str, timeout: float = 5, follow: bool = True, cafile: str | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """GET `url` from inside the network namespace (the only way to reach its 127.0.0.1): status,
    headers (lowercase names) and body. An https URL is verified against `cafile` (else the
    system's CAs), its host name included."""
    script = (
        "import json, ssl, sys, urllib.request, urllib.error\n"
        "class Stay(urllib.request.HTTPRedirectHandler):\n"
        "    def redirect_request(self, *args): return None\n"
        "context = ssl.create_default_context(cafile=sys.argv[2] or None)\n"
        f"opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), *([] if {follow} else [Stay]))\n"
        "request = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[3]))\n"
        "try:\n"
        f"    r = opener.open(request, timeout={timeout})\n"
        "except urllib.error.HTTPError as e:\n"
        "    r = e\n"
        "print(r.status); print(json.dumps({k.lower(): v for k, v in r.headers.items()}))\n"
        "sys.stdout.write(r.read().decode(errors='replace'))\n"
    )
    result = subprocess.run(["nsenter", f"--net={netns}", "python3", "-c", script, url, cafile or "", json.dumps(headers or {})],
                            capture_output=True, text=True, timeout=timeout + 10)
    if result.returncode != 0:
        raise ConnectionError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no answer")
    status, _, rest = result.stdout.partition("\n")
    header_line, _, body = rest.partition("\n")
    return int(status), json.loads(header_line), body


def http_get(netns: str, url: str, timeout: float = 5, follow: bool = True, cafile: str | None = None) -> tuple[int, str]:
    """GET `url` from inside the network namespace: status and body (see http_response)."""
    status, _, body = http_response(netns, url, timeout, follow, cafile)
    return status, body


def wait_for(netns: str, url: str, container: Container, timeout: float = 120, status: int = 200,
             cafile: str | None = None) -> str:
    """The body of `url` once it answers `status` (https verified against `cafile`); fails with the
    container's log otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if container.process.poll() is not None:
            raise AssertionError(f"{container.bundle.reference} exited ({container.process.returncode}) "
                                 f"before {url} answered:\n{container.output()[-4000:]}")
        try:
            code, body = http_get(netns, url, cafile=cafile)
            if code == status:
                return body
            last = f"HTTP {code}: {body[:300]}"
        except (ConnectionError, subprocess.TimeoutExpired) as error:
            last = str(error)
        time.sleep(1)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s ({last}); "
                         f"{container.bundle.reference} log:\n{container.output()[-4000:]}")


__all__ = ["Bundle", "Container", "Mount", "http_get", "http_response", "network_namespace", "require_tools", "unpacked", "wait_for"]
