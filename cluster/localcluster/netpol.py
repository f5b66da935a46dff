"""The node's NetworkPolicy engine: kube-router's network-policy controller alone (iptables +
ipset), inside the node's network namespace, so a policy that denies does deny.

Only the firewall runs (`--run-firewall`): routing (BGP) is not needed on one bridge, and the
service proxy stays off, since kube-proxy serves Services here and kube-router's proxy is reported
to have security flaws in the release pinned in versions.env.

What it makes lives in the node's network namespace: the KUBE-ROUTER-* and per-pod/per-policy
chains in that namespace's iptables, and ipsets, which this kernel keeps per network namespace
too. Deleting the namespace (network.py) removes both, so stop() has only the process to end.

Pods on one node talk across the bridge cni0, so their packets reach iptables only through the
bridge netfilter hook; kube-router's pod chains match them with `-m physdev --physdev-is-bridged`.
The hook's switch (net.bridge.bridge-nf-call-iptables) is per namespace on this kernel, so
turning it on for the node's namespace changes nothing outside it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .network import SERVICE_CIDR
from .process import Daemon, wait_for
from .settings import NodeSettings

# On the namespace's loopback only. kube-router serves /metrics (and /healthz) on it. Its own
# health listener (--health-port) binds every address of the namespace, the pods' gateway among
# them, and serves Go's pprof beside /healthz, so it stays off. Not in 20000-29999, where the API
# forwarder's port lies; kubelet and kube-proxy use 10248-10256.
METRICS_PORT = 10262
# The chains kube-router's controller puts first in the filter table's INPUT, FORWARD and OUTPUT:
# there once it has synced, and every pod's and policy's chain hangs off them.
TOP_CHAINS = {"INPUT": "KUBE-ROUTER-INPUT", "FORWARD": "KUBE-ROUTER-FORWARD", "OUTPUT": "KUBE-ROUTER-OUTPUT"}
# The names kube-router gives what it makes (its netpol controller's prefixes): chains, and the
# ipsets of each policy's source and destination pods. Checked to be absent from the machine's
# own namespace (tests/realnode).
CHAIN_PREFIXES = ("KUBE-ROUTER-", "KUBE-POD-FW-", "KUBE-NWPLCY-")
IPSET_PREFIXES = ("KUBE-SRC-", "KUBE-DST-")
BRIDGE_NF_CALL_IPTABLES = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


class NetworkPolicyEngine:
    def __init__(self, node: NodeSettings, tools: dict[str, str]):
        self.node = node
        self.kubectl_bin = Path(tools["KUBERNETES_DIR"]) / "bin" / "kubectl"
        self.daemon = Daemon(
            "kube-router",
            [
                str(Path(tools["KUBE_ROUTER_DIR"]) / "bin" / "kube-router"),
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--run-loadbalancer=false",
                # The admin kubeconfig the kubelet uses: its server is the API forwarder inside
                # the namespace.
                f"--kubeconfig={node.admin_kubeconfig}",
                # The pods it guards are those whose hostIP is this node's address.
                f"--hostname-override={node.spec.name}",
                # Traffic from a pod to a cluster IP passes the node's INPUT chain unjudged
                # (kube-proxy's to translate); policies judge it at the pod it is sent on to.
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--enable-ipv6=false",
                "--health-port=0",
                "--metrics-addr=127.0.0.1",
                f"--metrics-port={METRICS_PORT}",
                # At 1 it logs every lock and step of every sync (each pod event makes one).
                "--v=0",
            ],
            node.state_dir,
            netns=node.netns,
        )

    def _in_netns(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.node.netns}", "--", *argv],
                              capture_output=True, text=True)

    def _node_address(self) -> str:
        out = subprocess.run([str(self.kubectl_bin), "--kubeconfig", str(self.node.admin_kubeconfig),
                              "--request-timeout=10s", "get", "node", self.node.spec.name, "-o",
                              "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}"],
                             capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else ""

    def start(self) -> None:
        """Starts the controller and returns once it guards the node's pods (its chains are in place)."""
        # kube-router reads the node's address once, at start, to find the pods it guards: with
        # the Node not yet registered it would exit, and with no address guard nothing, silently.
        wait_for(f"node {self.node.spec.name} registered with address {self.node.node_ip}",
                 lambda: self._node_address() == self.node.node_ip, 60)
        self._bridge_through_iptables()
        self.daemon.start()
        wait_for("kube-router's network-policy chains in the node's namespace", self.ready, 60,
                 self.daemon.log_file)

    def _bridge_through_iptables(self) -> None:
        # Without the bridge hook, traffic between two pods of the node would bypass every policy.
        sysctl = ["sh", "-c", f"cat {BRIDGE_NF_CALL_IPTABLES}"]
        if self._in_netns(*sysctl).stdout.strip() != "1":
            out = self._in_netns("sh", "-c", f"echo 1 > {BRIDGE_NF_CALL_IPTABLES}")
            if out.returncode != 0 or self._in_netns(*sysctl).stdout.strip() != "1":
                raise RuntimeError(f"cannot turn on {BRIDGE_NF_CALL_IPTABLES} in namespace {self.node.netns}: "
                                   f"{out.stderr.strip()}; NetworkPolicy would not apply between pods")

    def ready(self) -> bool:
        """The controller runs and has hooked its chains into the namespace's filter table."""
        if not self.alive():
            return False
        rules = self._in_netns("iptables-save", "-t", "filter")
        if rules.returncode != 0:
            return False
        lines = set(rules.stdout.splitlines())
        return all(any(line.startswith(f"-A {builtin} ") and line.endswith(f"-j {chain}") for line in lines)
                   for builtin, chain in TOP_CHAINS.items())

    def alive(self) -> bool:
        return self.daemon.alive()

    def stop(self) -> None:
        # Its chains and ipsets stay with the namespace until network.py deletes it: a restarted
        # controller finds and resyncs them, and the pods stay guarded meanwhile.
        self.daemon.stop()
