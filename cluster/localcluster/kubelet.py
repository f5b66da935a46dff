"""The node's kubelet: registers the node with the local control plane and runs its pods through
containerd, in the node's network namespace, its cgroups nested under the node's cgroupRoot.

Kernel settings: the kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops
for the whole machine (they are not per namespace). Sysctls records the values found before the
first kubelet of any cluster on this machine started, and the last node to stop restores them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .capacity import EVICTION_HARD, KUBE_RESERVED, SYSTEM_RESERVED
from .containerd import unmount_under
from .mounts import MACHINE_PATHS
from .dns import CLUSTER_DOMAIN, DNS_SERVICE_IP
from .process import Daemon, wait_for
from .record import RUN_DIR, change
from .settings import NodeSettings

KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
class Sysctls:
    """Machine-wide record of the kernel settings before any kubelet changed them.

    /run/mlplatform/sysctls.json: {"values": {...}, "holders": [state dirs of running nodes]}.
    """

    def __init__(self, record: Path = RUN_DIR / "sysctls.json"):
        self.record = record

    def hold(self, holder: Path) -> None:
        def update(data):
            if data is None:
                data = {"values": {k: read_sysctl(k) for k in KUBELET_SYSCTLS}, "holders": []}
            if str(holder) not in data["holders"]:
                data["holders"].append(str(holder))
            return data, None

        change(self.record, update)

    def release(self, holder: Path) -> None:
        def update(data):
            if data is None:
                return None, None
            # A holder whose state directory is gone was removed without `down`: it holds nothing.
            data["holders"] = [h for h in data["holders"] if h != str(holder) and Path(h).is_dir()]
            if data["holders"]:
                return data, None
            for key, value in data["values"].items():
                Path("/proc/sys", key).write_text(value + "\n")
            return None, None

        change(self.record, update)

    def when_unheld(self, action) -> None:
        """Runs ACTION under the record's lock when no node holds the record."""
        def update(data):
            if data is None:
                action()
            return data, None

        change(self.record, update)

    def held(self) -> bool:
        return self.record.exists()


def remove_machine_leftovers() -> None:
    """The empty mount points the nodes' mount namespaces needed, once no node runs on this machine.

    Under the record's lock: a node of another cluster that starts meanwhile holds the record before
    it makes its mount namespace (node.py), and removing a directory that is a mount point in another
    namespace would detach that mount there.
    """
    def remove() -> None:
        for d in MACHINE_PATHS:
            try:
                d.rmdir()
            except OSError:
                pass  # absent, or holds what is not ours

    Sysctls().when_unheld(remove)


def read_sysctl(key: str) -> str:
    return Path("/proc/sys", key).read_text().strip()


class Kubelet:
    def __init__(self, node: NodeSettings, tools: dict[str, str], containerd_socket: Path):
        self.node = node
        self.tools = tools
        # Its root directory, kept short: the kubelet's sockets (device plugins, pod resources)
        # live under it, and a unix socket's path has at most 107 bytes.
        self.dir = node.state_dir / "kubelet"
        self.etc = node.state_dir / "kubelet.d"
        self.containerd_socket = containerd_socket
        self.sysctls = Sysctls()
        self.kubectl_bin = Path(tools["KUBERNETES_DIR"]) / "bin" / "kubectl"
        labels = ",".join(f"{k}={v}" for k, v in node.spec.labels.items())
        self.daemon = Daemon(
            "kubelet",
            [
                str(Path(tools["KUBERNETES_NODE_DIR"]) / "bin" / "kubelet"),
                f"--config={self.etc / 'config.json'}",
                # The admin kubeconfig of the local control plane: its server, 127.0.0.1:PORT,
                # is the API forwarder inside the node's namespace.
                f"--kubeconfig={node.admin_kubeconfig}",
                f"--root-dir={self.dir}",
                f"--cert-dir={self.etc / 'pki'}",
                f"--hostname-override={node.spec.name}",
                f"--node-ip={node.node_ip}",
                *([f"--node-labels={labels}"] if labels else []),
                "--v=1",
            ],
            node.state_dir,
            netns=node.netns,
            mount_ns=node.mount_ns,
        )

    def config(self) -> dict:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            # cgroup v1 is deprecated in 1.35+ and refused by default; this machine has only v1.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": "/" + self.node.cgroup_root.strip("/"),
            "enforceNodeAllocatable": ["pods"],
            # Without CAP_SYS_RESOURCE the kubelet may not lower its OOM score or raise its file limit.
            "oomScoreAdj": 0,
            "maxOpenFiles": 20000,
            "failSwapOn": False,
            "address": self.node.node_ip,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            # The API server signs in with a client certificate of the cluster's CA (logs, exec,
            # port-forward); anything else must bring a token the API server vouches for.
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": self.cluster_ca()}},
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.etc / "pod-logs"),
            "clusterDNS": [DNS_SERVICE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            # No upstream resolver: pods never get the machine's nameservers.
            "resolvConf": str(self.etc / "resolv.conf"),
            "registerWithTaints": [taint(t) for t in self.node.spec.taints],
            # What pods may not have (capacity.py, where the stack's capacity check reads it too).
            "kubeReserved": KUBE_RESERVED,
            "systemReserved": SYSTEM_RESERVED,
            "evictionHard": EVICTION_HARD,
            # How often each pod is synced, and so how soon a changed Secret or ConfigMap shows in
            # its volumes (default 1m): the training operator waits for the webhook certificate it
            # wrote into its Secret to appear in its volume, with backoff, before it gets ready.
            "syncFrequency": "10s",
            # Imported images cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
        }

    def cluster_ca(self) -> str:
        """The cluster's CA, as the admin kubeconfig names it."""
        match = re.search(r"certificate-authority:\s*(\S+)", self.node.admin_kubeconfig.read_text())
        if not match:
            raise RuntimeError(f"{self.node.admin_kubeconfig} names no certificate-authority file")
        return match.group(1)

    def start(self) -> None:
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        (self.etc / "resolv.conf").write_text("")
        # The machine's record already holds the settings as they were (Node.up holds it first).
        self.daemon.start()

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.kubectl_bin), "--kubeconfig", str(self.node.admin_kubeconfig),
                               "--request-timeout=10s", *args], check=check, capture_output=True, text=True)

    def ready(self) -> bool:
        """The node is registered and Ready."""
        out = self.kubectl("get", "node", self.node.spec.name, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
        return out.returncode == 0 and out.stdout.strip() == "True"

    def capacity(self, resource: str) -> str:
        """What the node reports of RESOURCE in status.capacity ("" when none)."""
        path = "{.status.capacity." + resource.replace(".", "\\.") + "}"
        out = self.kubectl("get", "node", self.node.spec.name, "-o", f"jsonpath={path}", check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    def wait_ready(self, timeout: float = 120) -> None:
        wait_for(f"node {self.node.spec.name} Ready", self.ready, timeout, self.daemon.log_file)

    def alive(self) -> bool:
        return self.daemon.alive()

    def stop(self) -> None:
        self.daemon.stop()
        unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.etc, ignore_errors=True)
        self.sysctls.release(self.node.state_dir)

    def deregister(self) -> None:
        self.kubectl("delete", "node", self.node.spec.name, "--ignore-not-found", "--wait=false", check=False)


def taint(spec: str) -> dict:
    """`key=value:Effect` (or `key:Effect`) as a kubelet taint."""
    kv, _, effect = spec.rpartition(":")
    key, _, value = kv.partition("=")
    return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}
