"""The cluster's network: a network namespace per node, linked by a bridge in one more namespace
that is the cluster's own.

Inside a node's namespace: loopback, a link `node0` carrying the node's address (its other end is
a port of the bridge `nodes` in the cluster's namespace), a route to each other node's pods via
that node's address, and (made by the CNI bridge plugin on the first pod) the bridge `cni0`, the
pods' gateway; the node forwards between the two. There is no route off the box and no
masquerade: pods reach each other across nodes, the nodes, and through the API forwarder the API
server on 127.0.0.1. Deleting a namespace removes every link, address, route and iptables rule in
it, so stopping a network is deleting its namespace.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .settings import NodeSettings

NETNS_DIR = Path("/run/netns")
POD_CIDR = "10.244.0.0/16"  # one /24 per node (settings.py)
NODE_CIDR = "10.243.0.0/16"  # node N is 10.243.N.2
# kube-apiserver's default --service-cluster-ip-range (kwokctl passes none).
SERVICE_CIDR = "10.0.0.0/24"
CNI_NETWORK = "mlplatform"
# The cloud metadata address (Azure IMDS, AWS, GCP): each node's namespace carries it on loopback
# and pods have a route to it, as on a cloud VM, so a NetworkPolicy that keeps pods from it is
# proven to: nothing listens there unless a test starts a stand-in server in the node's namespace.
METADATA_ADDRESS = "169.254.169.254"


NODES_BRIDGE = "nodes"


def _ip(*args: str) -> None:
    out = subprocess.run(["ip", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {out.stderr.strip()}")


def _delete_netns(name: str) -> None:
    if (NETNS_DIR / name).exists():
        _ip("netns", "delete", name)
    # `ip netns add` made /run/netns a mount point of its own; the last namespace gone (no
    # other cluster's, no one else's), take that mount away too.
    if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
        subprocess.run(["umount", str(NETNS_DIR)], capture_output=True)
        NETNS_DIR.rmdir()


class ClusterNetwork:
    """The namespace holding the bridge that links the nodes: layer 2 only, no address, no route."""

    def __init__(self, netns: str):
        self.netns = netns

    def exists(self) -> bool:
        return (NETNS_DIR / self.netns).exists()

    def start(self) -> None:
        if self.exists():
            return
        _ip("netns", "add", self.netns)
        _ip("-n", self.netns, "link", "set", "lo", "up")
        _ip("-n", self.netns, "link", "add", NODES_BRIDGE, "type", "bridge")
        _ip("-n", self.netns, "link", "set", NODES_BRIDGE, "up")

    def ready(self) -> bool:
        return self.exists()

    def alive(self) -> bool:
        return self.exists()

    def stop(self) -> None:
        _delete_netns(self.netns)


class Network:
    def __init__(self, node: NodeSettings, cni_bin: Path):
        self.node = node
        self.cni_bin = cni_bin
        self.conf_dir = node.state_dir / "cni" / "net.d"

    def exists(self) -> bool:
        return (NETNS_DIR / self.node.netns).exists()

    def start(self) -> None:
        if not self.exists():
            _ip("netns", "add", self.node.netns)
            ns = ("-n", self.node.netns)
            _ip(*ns, "link", "set", "lo", "up")
            if self.node.api_address:
                _ip(*ns, "addr", "add", f"{self.node.api_address}/32", "dev", "lo")
            _ip(*ns, "addr", "add", f"{METADATA_ADDRESS}/32", "dev", "lo")
            # node0's other end becomes a port of the cluster's bridge.
            port = f"peer{self.node.index}"
            _ip(*ns, "link", "add", "node0", "type", "veth", "peer", "name", port)
            _ip(*ns, "link", "set", port, "netns", self.node.cluster_netns)
            _ip("-n", self.node.cluster_netns, "link", "set", port, "master", NODES_BRIDGE, "up")
            _ip(*ns, "addr", "add", f"{self.node.node_ip}/{NODE_CIDR.split('/')[1]}", "dev", "node0")
            _ip(*ns, "link", "set", "node0", "up")
            # Connections the node itself opens to a cluster IP (the API server's, through the egress
            # proxy, to a webhook) need a route before kube-proxy's OUTPUT rules translate them.
            _ip(*ns, "route", "add", SERVICE_CIDR, "dev", "node0")
            # Between node0 and cni0 (set in this namespace only; the machine's stays as it is).
            subprocess.run(["nsenter", f"--net={NETNS_DIR / self.node.netns}", "--", "sysctl", "-qw",
                            "net.ipv4.ip_forward=1"], check=True, capture_output=True)
        self.write_cni_config()

    def route_to(self, peers: list[NodeSettings]) -> None:
        """Routes to the other nodes' pods, each via its node (made again when a node joins)."""
        for peer in peers:
            if peer.netns != self.node.netns:
                _ip("-n", self.node.netns, "route", "replace", peer.pod_subnet, "via", peer.node_ip, "dev", "node0")

    def write_cni_config(self) -> None:
        conf = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    # Never masquerade: pod traffic must not leave the cluster's namespaces.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.node.pod_subnet}]],
                        # No default route: pods reach the cluster's own ranges through cni0, and
                        # nothing else at all.
                        "routes": [{"dst": cidr} for cidr in self.pod_routes()],
                        "dataDir": str(self.node.state_dir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "10-mlplatform.conflist").write_text(json.dumps(conf, indent=2) + "\n")

    def pod_routes(self) -> list[str]:
        """What a pod may reach: pods, nodes, Services' cluster IPs, the API server's address and
        the node's stand-in for the cloud metadata address."""
        routes = [POD_CIDR, NODE_CIDR, SERVICE_CIDR, f"{METADATA_ADDRESS}/32"]
        if self.node.api_address:
            routes.append(f"{self.node.api_address}/32")
        return routes

    def ready(self) -> bool:
        return self.exists()

    def alive(self) -> bool:
        return self.exists()

    def stop(self) -> None:
        _delete_netns(self.node.netns)
