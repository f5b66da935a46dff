"""A pod network on this machine: one network namespace per pod, on one private bridge.

Every TFJob replica binds its gRPC server to port 2222 on all interfaces, as it does in its own
pod, so replicas on one machine need one network namespace each. Each namespace gets its own
address on a bridge that lives in a namespace of its own (nothing touches the host's network),
and an /etc/hosts (through `ip netns exec`'s /etc/netns/<name>/hosts) that maps every pod's
Service hostname to that pod's address, as cluster DNS would.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

NETNS_ETC = Path("/etc/netns")
# A /24 for the pods of one test run; only the namespaces made here have addresses in it.
SUBNET = ipaddress.ip_network("10.250.17.0/24")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class PodNetwork:
    """Pods by name, each with its hostnames; use as a context manager."""

    def __init__(self, pods: Mapping[str, list[str]]) -> None:
        tag = f"mlp{os.getpid() % 100000}"
        self._switch = f"{tag}-sw"
        hosts = list(SUBNET.hosts())
        self.namespaces = {pod: f"{tag}-{i}" for i, pod in enumerate(pods)}
        self.addresses = {pod: str(hosts[i]) for i, pod in enumerate(pods)}
        self._hostnames = dict(pods)
        self._veths = {pod: f"{tag}v{i}" for i, pod in enumerate(pods)}

    def __enter__(self) -> PodNetwork:
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create(self) -> None:
        _ip("netns", "add", self._switch)
        _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self._switch, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{self.addresses[pod]} {' '.join(names)}\n" for pod, names in self._hostnames.items()
        )
        for pod, namespace in self.namespaces.items():
            veth = self._veths[pod]
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", veth, "netns", self._switch)
            _ip("-n", self._switch, "link", "set", veth, "master", "br0")
            _ip("-n", self._switch, "link", "set", veth, "up")
            _ip("-n", namespace, "addr", "add", f"{self.addresses[pod]}/{SUBNET.prefixlen}", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            etc = NETNS_ETC / namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)

    def popen(self, pod: str, command: list[str], **kwargs) -> subprocess.Popen:
        """Start `command` inside `pod`'s namespace (with its /etc/hosts)."""
        return subprocess.Popen(["ip", "netns", "exec", self.namespaces[pod], *command], **kwargs)

    def close(self) -> None:
        # Deleting a namespace deletes its end of each veth pair, and with it the other end.
        for namespace in [*self.namespaces.values(), self._switch]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
            shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
