"""Command line for the local cluster's real nodes; `bin/cluster` calls it.

    python3 -m localcluster check         --nodes-dir DIR
    python3 -m localcluster egress-config --nodes-dir DIR
    python3 -m localcluster up            --nodes-dir DIR --kubeconfig ADMIN_KUBECONFIG --nodes-file FILE
    python3 -m localcluster down          --nodes-dir DIR [--keep-node-objects]
    python3 -m localcluster status        --nodes-dir DIR

`check` says what this machine lacks for real nodes (exit 1), before anything starts.
`egress-config` writes the API server's egress selector configuration for a new cluster (the
API server reaches the nodes through egress.py) and prints its path.
`up` starts the cluster's network and egress proxy, creates the nodes of FILE (JSON, as
`python -m stacks.local_nodes` writes it for a stack's node pools) that do not exist yet, starts
what is not running of those that do, and waits until every node is Ready; then CoreDNS and the
cluster-wide parts (cluster_parts: storage, the service load balancer). `down` stops the
cluster-wide parts, then the nodes, then what they share. `status` prints one line per part and
exits 0 when all run, 3 otherwise, 4 when there are no nodes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import dns, egress, images, preflight
from .gpuplugin import SIMULATED_LABEL
from .network import ClusterNetwork
from .node import Node
from .process import Daemon, wait_for
from .servicelb import ServiceLB
from .settings import NodeSettings, NodeSpec, cluster_netns, tools
from .storage import Storage

# Every real node carries this label (the nodes file says which taints: stacks/local_nodes.py).
REAL_NODE_LABEL = "mlplatform.dev/node-kind"


def specs(nodes_file: Path) -> list[NodeSpec]:
    """The nodes FILE asks for, each with the real-node label, and GPU nodes labelled simulated."""
    found = []
    for node in json.loads(nodes_file.read_text()):
        labels = {**node["labels"], REAL_NODE_LABEL: "real"}
        if node["gpus"]:
            labels[SIMULATED_LABEL[0]] = SIMULATED_LABEL[1]
        found.append(NodeSpec(node["name"], labels, tuple(node["taints"]), node["gpus"]))
    return found


class ClusterParts:
    """What the nodes share: the network namespace linking them and the API server's egress proxy."""

    def __init__(self, nodes_dir: Path):
        self.network = ClusterNetwork(cluster_netns(nodes_dir))
        self.egress = Daemon(
            "egress",
            [sys.executable, "-m", "localcluster.egress", str(egress.socket_path(nodes_dir)), str(nodes_dir)],
            nodes_dir,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )

    def parts(self) -> dict[str, object]:
        return {"network": self.network, "egress": self.egress}


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


REAL_NODES_ONLY = {"node_selector": {REAL_NODE_LABEL: "real"},
                   "tolerations": [{"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]}


def cluster_parts(nodes_dir: Path, t: dict[str, str], kubeconfig: Path | None = None,
                  helper_image: str = "") -> dict[str, Storage | ServiceLB]:
    """The parts of the cluster as a whole, beside its nodes; their state in the cluster's directory.
    kubeconfig and helper_image are needed to start them only (down and status go without)."""
    cluster_dir = nodes_dir.parent
    return {
        "storage": Storage(cluster_dir / "storage", cluster_dir / "volumes", t, kubeconfig, helper_image,
                           **REAL_NODES_ONLY),
        "servicelb": ServiceLB(cluster_dir / "servicelb", nodes_dir, Path(t["KUBERNETES_DIR"]) / "bin" / "kubectl",
                               kubeconfig),
    }


def existing(nodes_dir: Path) -> list[NodeSettings]:
    return [NodeSettings.load(p.parent) for p in sorted(nodes_dir.glob("*/node.json"))]


def log(msg: str) -> None:
    print(f"localcluster: {msg}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcluster")
    parser.add_argument("command", choices=("check", "egress-config", "up", "down", "status"))
    parser.add_argument("--nodes-dir", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, help="the control plane's admin kubeconfig (up)")
    parser.add_argument("--nodes-file", type=Path, help="the nodes to create (up; JSON from stacks.local_nodes)")
    parser.add_argument("--keep-node-objects", action="store_true",
                        help="down: leave the Node objects (the control plane goes away anyway)")
    args = parser.parse_args(argv)
    t = tools()
    nodes_dir = args.nodes_dir.resolve()
    if args.command == "egress-config":
        print(egress.write_config(nodes_dir))
        return 0
    shared = ClusterParts(nodes_dir)

    if args.command in ("check", "up"):
        if found := preflight.problems(t):
            log("real nodes cannot run on this machine; missing:")
            for problem in found:
                log(f"  - {problem}")
            log("the simulated mode (`bin/cluster up` without --real, `make up`) still works")
            return 1
        if args.command == "check":
            return 0
        if args.kubeconfig is None or args.nodes_file is None:
            parser.error("up needs --kubeconfig and --nodes-file")
        known = {s.spec.name: s for s in existing(nodes_dir)}
        port = api_port(args.kubeconfig)
        kubectl = Path(t["KUBERNETES_DIR"]) / "bin" / "kubectl"
        address = api_address(kubectl, args.kubeconfig)
        shared.network.start()
        nodes = []
        for spec in specs(args.nodes_file):
            settings = known.get(spec.name)
            if settings is None:
                index = min(set(range(len(known) + 1)) - {s.index for s in known.values()})
                settings = NodeSettings.create(spec, index, nodes_dir, args.kubeconfig.resolve(), port, address)
                settings.save()
                known[spec.name] = settings
            node = Node(settings, t)
            started = node.up()
            nodes.append(node)
            log(f"node {spec.name} Ready" + (f" (started: {', '.join(started)})" if started else " (reused)"))
        for node in nodes:
            node.network.route_to(list(known.values()))
        if not shared.egress.alive():
            shared.egress.start()
        coredns, _ = images.coredns_image(t, nodes[0].settings.state_dir / "images")
        dns.apply(kubectl, args.kubeconfig, dns.manifests(coredns, address, port, **REAL_NODES_ONLY))
        wait_for("CoreDNS available", lambda: dns.ready(kubectl, args.kubeconfig), 120)
        log("CoreDNS available (kube-system/coredns, Service kube-dns " + dns.DNS_SERVICE_IP + ")")
        busybox, _ = images.busybox_image(nodes[0].settings.state_dir / "images")
        for name, part in cluster_parts(nodes_dir, t, args.kubeconfig.resolve(), busybox).items():
            started = not part.alive()
            if started:
                part.start()
            wait_for(f"{name} ready", part.ready, 60, part.daemon.log_file)
            log(f"{name} running" + (" (started)" if started else " (reused)"))
        return 0

    nodes = existing(nodes_dir)
    if args.command == "down":
        # The load balancer's listeners and the volumes first: they serve the nodes' pods.
        for name, part in cluster_parts(nodes_dir, t).items():
            part.stop()
            log(f"{name} removed")
        for settings in nodes:
            Node(settings, t).down(deregister=not args.keep_node_objects)
            log(f"node {settings.spec.name} removed")
        shared.egress.stop()
        shared.network.stop()
        for leftover in (egress.socket_path(nodes_dir), nodes_dir / "egress-selector.yaml"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(nodes_dir / "logs", ignore_errors=True)
        if nodes_dir.is_dir() and not any(nodes_dir.iterdir()):
            nodes_dir.rmdir()
        return 0

    if not nodes:
        print("absent")
        return 4
    all_running = True
    states = [("cluster", part, "running" if p.alive() else "stopped") for part, p in shared.parts().items()]
    for settings in nodes:
        states += [(settings.spec.name, part, state) for part, state in Node(settings, t).status().items()]
    states += [("cluster", name, part.status()) for name, part in cluster_parts(nodes_dir, t).items()]
    for owner, part, state in states:
        print(f"{owner} {part}: {state}")
        all_running &= state.startswith("running")
    return 0 if all_running else 3


if __name__ == "__main__":
    raise SystemExit(main())
