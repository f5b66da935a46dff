"""The node's network: a network namespace of its own, and the CNI bridge its pods join.

Inside the namespace: loopback, a link `node0` carrying the node's address, and (made by
the CNI bridge plugin on the first pod) the bridge `cni0`, the pods' gateway. There is no route
off the box and no masquerade: pods reach each other, the node, and through the API forwarder
the API server on 127.0.0.1. Deleting the namespace removes every link, address, route and
iptables rule in it, so stopping the network is deleting the namespace.
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


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


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
            # The kernel here has no dummy links: a veth pair whose other end stays in the
            # namespace, unused, gives node0 a carrier all the same.
            _ip(*ns, "link", "add", "node0", "type", "veth", "peer", "name", "node0-peer")
            _ip(*ns, "addr", "add", f"{self.node.node_ip}/24", "dev", "node0")
            _ip(*ns, "link", "set", "node0-peer", "up")
            _ip(*ns, "link", "set", "node0", "up")
        self.write_cni_config()

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
        """What a pod may reach: pods, nodes, Services' cluster IPs, the API server's address."""
        routes = [POD_CIDR, NODE_CIDR, SERVICE_CIDR]
        if self.node.api_address:
            routes.append(f"{self.node.api_address}/32")
        return routes

    def ready(self) -> bool:
        return self.exists()

    def alive(self) -> bool:
        return self.exists()

    def stop(self) -> None:
        if self.exists():
            _ip("netns", "delete", self.node.netns)
        # `ip netns add` made /run/netns a mount point of its own; the last namespace gone (no
        # other cluster's, no one else's), take that mount away too.
        if NETNS_DIR.is_dir() and not any(NETNS_DIR.iterdir()):
            subprocess.run(["umount", str(NETNS_DIR)], capture_output=True)
            NETNS_DIR.rmdir()
