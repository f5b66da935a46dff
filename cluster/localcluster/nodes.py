"""The cluster's real nodes and what they share, as `bin/cluster up --real` runs them.

    check()   what this machine lacks for real nodes, said before anything starts
    up()      the cluster's network and egress proxy; the nodes asked for that do not exist yet
              created, what is not running of those that do started; each node Ready; then
              CoreDNS and the cluster-wide parts (cluster_parts: storage, the service load balancer)
    down()    the cluster-wide parts, then the nodes, then what they share
    status()  one (owner, part, state) per part

State lives in NODES_DIR (<cluster dir>/nodes/): a cluster has real nodes while it exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import dns, egress, images, imagestore, preflight
from .gpuplugin import SIMULATED_LABEL
from .network import ClusterNetwork
from .node import Node
from .process import Daemon, wait_for
from .servicelb import ServiceLB
from .settings import NodeSettings, NodeSpec, cluster_netns
from .storage import Storage

# Every real node carries this label (stacks/local_nodes.py says which taints).
REAL_NODE_LABEL = "mlplatform.dev/node-kind"
REAL_NODES_ONLY = {"node_selector": {REAL_NODE_LABEL: "real"},
                   "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]}


def log(msg: str) -> None:
    print(f"localcluster: {msg}", file=sys.stderr, flush=True)


def specs(wanted: list[dict]) -> list[NodeSpec]:
    """The nodes asked for (as `python -m stacks.local_nodes` writes them for a stack's node pools),
    each with the real-node label, and GPU nodes labelled simulated."""
    found = []
    for node in wanted:
        labels = {**node["labels"], REAL_NODE_LABEL: "real"}
        if node["gpus"]:
            labels[SIMULATED_LABEL[0]] = SIMULATED_LABEL[1]
        found.append(NodeSpec.from_dict({**node, "labels": labels}))
    return found


def api_port(kubeconfig: Path) -> int:
    match = re.search(r"server:\s*https://127\.0\.0\.1:(\d+)", kubeconfig.read_text())
    if not match:
        raise SystemExit(f"localcluster: {kubeconfig} names no API server on 127.0.0.1")
    return int(match.group(1))


def api_address(kubectl: Path, kubeconfig: Path) -> str:
    """The API server's advertised address, as its `kubernetes` EndpointSlice has it."""
    out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "get", "endpointslice", "-n", "default",
                          "kubernetes", "-o", "jsonpath={.endpoints[0].addresses[0]}"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


class RealNodes:
    def __init__(self, nodes_dir: Path, tools: dict[str, str]):
        self.dir = nodes_dir.resolve()
        self.tools = tools
        self.kubectl = Path(tools["KUBERNETES_DIR"]) / "bin" / "kubectl"
        # What the nodes share: the network namespace linking them and the API server's egress proxy.
        self.network = ClusterNetwork(cluster_netns(self.dir))
        self.egress = Daemon(
            "egress",
            [sys.executable, "-m", "cluster.localcluster.egress", str(egress.socket_path(self.dir)), str(self.dir)],
            self.dir,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )

    def exist(self) -> bool:
        return self.dir.is_dir()

    def existing(self) -> list[NodeSettings]:
        return [NodeSettings.load(p.parent) for p in sorted(self.dir.glob("*/node.json"))]

    def cluster_parts(self, kubeconfig: Path | None = None, helper_image: str = "") -> dict[str, Storage | ServiceLB]:
        """The parts of the cluster as a whole, beside its nodes; their state in the cluster's directory.
        kubeconfig and helper_image are needed to start them only (down and status go without)."""
        cluster_dir = self.dir.parent
        return {
            "storage": Storage(cluster_dir / "storage", cluster_dir / "volumes", self.tools, kubeconfig, helper_image,
                               **REAL_NODES_ONLY),
            "servicelb": ServiceLB(cluster_dir / "servicelb", self.dir, self.kubectl, kubeconfig),
        }

    def check(self) -> bool:
        if found := preflight.problems(self.tools):
            log("real nodes cannot run on this machine; missing:")
            for problem in found:
                log(f"  - {problem}")
            log("the simulated mode still works: `bin/cluster up` without --real, `make up STACK=kwok`")
            return False
        return True

    def egress_config(self) -> Path:
        """The API server's egress selector configuration, for a new cluster with real nodes."""
        return egress.write_config(self.dir)

    def up(self, kubeconfig: Path, wanted: list[dict]) -> None:
        """KUBECONFIG: the control plane's admin kubeconfig. WANTED: the nodes, as stacks.local_nodes writes them."""
        kubeconfig = kubeconfig.resolve()
        known = {s.spec.name: s for s in self.existing()}
        port = api_port(kubeconfig)
        address = api_address(self.kubectl, kubeconfig)
        self.network.start()
        nodes = []
        for spec in specs(wanted):
            settings = known.get(spec.name)
            if settings is None:
                index = min(set(range(len(known) + 1)) - {s.index for s in known.values()})
                settings = NodeSettings.create(spec, index, self.dir, kubeconfig, port, address)
                settings.save()
                known[spec.name] = settings
            nodes.append(Node(settings, self.tools))
        # For new nodes only (a node that ran keeps its containerd root): made once per set of
        # images on this machine (about a minute), then seconds per node.
        # MLPLATFORM_IMAGE_STORE=off: every new node imports every image itself (make bench-cluster
        # times both ways).
        image_store = None
        if os.environ.get("MLPLATFORM_IMAGE_STORE") != "off" and any(not n.containerd.root.exists() for n in nodes):
            image_store = imagestore.ensure(Path(self.tools["CONTAINERD_DIR"]) / "bin", log)
        for node in nodes:
            started = node.up(image_store=image_store)
            log(f"node {node.settings.spec.name} Ready" + (f" (started: {', '.join(started)})" if started else " (reused)"))
        for node in nodes:
            node.network.route_to(list(known.values()))
        if not self.egress.alive():
            self.egress.start()
        coredns, _ = images.coredns_image(self.tools, nodes[0].settings.state_dir / "images")
        dns.apply(self.kubectl, kubeconfig, dns.manifests(coredns, address, port, **REAL_NODES_ONLY))
        wait_for("CoreDNS available", lambda: dns.ready(self.kubectl, kubeconfig), 120)
        log("CoreDNS available (kube-system/coredns, Service kube-dns " + dns.DNS_SERVICE_IP + ")")
        busybox, _ = images.busybox_image(nodes[0].settings.state_dir / "images")
        for name, part in self.cluster_parts(kubeconfig, busybox).items():
            started = not part.alive()
            if started:
                part.start()
            wait_for(f"{name} ready", part.ready, 60, part.daemon.log_file)
            log(f"{name} running" + (" (started)" if started else " (reused)"))

    def down(self, deregister: bool = True) -> None:
        """DEREGISTER: delete the Node objects too (False when the API server does not answer)."""
        # The load balancer's listeners and the volumes first: they serve the nodes' pods.
        for name, part in self.cluster_parts().items():
            part.stop()
            log(f"{name} removed")
        for settings in self.existing():
            Node(settings, self.tools).down(deregister=deregister)
            log(f"node {settings.spec.name} removed")
        self.egress.stop()
        self.network.stop()
        for leftover in (egress.socket_path(self.dir), self.dir / "egress-selector.yaml"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "logs", ignore_errors=True)
        if self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()

    def status(self) -> list[tuple[str, str, str]]:
        """(owner, part, state): `cluster` for what the nodes share, else the node's name."""
        states = [("cluster", "network", "running" if self.network.alive() else "stopped"),
                  ("cluster", "egress", "running" if self.egress.alive() else "stopped")]
        nodes = self.existing()
        if not nodes:
            states.append(("cluster", "nodes", "none (`bin/cluster up` creates them)"))
        for settings in nodes:
            states += [(settings.spec.name, part, state) for part, state in Node(settings, self.tools).status().items()]
        states += [("cluster", name, part.status()) for name, part in self.cluster_parts().items()]
        return states
