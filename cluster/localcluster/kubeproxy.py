"""The node's kube-proxy (iptables mode): Services' cluster IPs and node ports, inside the node's
network namespace, so its rules go when the namespace goes.

Masquerade: kube-proxy marks and masquerades only traffic to Service endpoints, all of them pods
or the node itself, inside the namespace. Nothing routes further. It is told to leave the
machine-wide conntrack settings alone (conntrack min/maxPerCore 0, timeouts 0) and not to make
node ports answer on localhost (which would set route_localnet).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .network import POD_CIDR
from .process import Daemon
from .settings import NodeSettings


class KubeProxy:
    def __init__(self, node: NodeSettings, tools: dict[str, str]):
        self.node = node
        self.dir = node.state_dir / "kube-proxy.d"
        self.daemon = Daemon(
            "kube-proxy",
            [str(Path(tools["KUBERNETES_NODE_DIR"]) / "bin" / "kube-proxy"), f"--config={self.dir / 'config.json'}",
             "--v=1"],
            node.state_dir,
            netns=node.netns,
        )

    def config(self) -> dict:
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.node.admin_kubeconfig)},
            "hostnameOverride": self.node.spec.name,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "oomScoreAdj": 0,
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"localhostNodePorts": False},
            "nodePortAddresses": [f"{self.node.node_ip}/32"],
        }

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        self.daemon.start()

    def ready(self) -> bool:
        return self.alive()

    def alive(self) -> bool:
        return self.daemon.alive()

    def stop(self) -> None:
        self.daemon.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
