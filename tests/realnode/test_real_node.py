"""A real node of the local cluster: Ready on containerd 2.x, runs pods from imported images
with the kernel enforcing their limits, comes back when killed, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from real_cluster import (RealCluster, busybox_image_name, cluster_leftovers, host_rules_naming, ipset_names,
                          kubelet_sysctls, leftovers, pod, processes_running, sysctls_before_kubelets, wait_for)
from cluster.localcluster.kubelet import Sysctls
from cluster.localcluster.netpol import CHAIN_PREFIXES, IPSET_PREFIXES
from cluster.localcluster.process import Daemon
from cluster.localcluster.settings import tools


def test_a_node_per_pool_ready_on_containerd_2(real: RealCluster) -> None:
    """One real node per pool of the stack config, with the pool's labels and taints."""
    assert sorted(n.spec.name for n in real.nodes()) == ["real-cpu-0", "real-gpu-0"]
    for pool, taints in (("cpu", []), ("gpu", [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}])):
        settings = real.node(pool)
        node = real.get("node", settings.spec.name)
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        info = node["status"]["nodeInfo"]
        assert ready == "True", f"node {settings.spec.name} not Ready: {node['status']['conditions']}"
        assert info["containerRuntimeVersion"].startswith("containerd://2."), info
        assert info["kubeletVersion"] == tools()["KUBERNETES_VERSION"], info
        assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {}), "a real node must not be kwok's"
        assert node["status"]["addresses"][0]["address"] == settings.node_ip
        assert node["metadata"]["labels"]["mlplatform.dev/pool"] == pool
        for taint in taints:
            assert taint in node["spec"]["taints"], node["spec"]["taints"]
    assert real.get("node", "real-cpu-0")["metadata"]["labels"]["hub.jupyter.org/node-purpose"] == "user"


def test_pod_runs_from_imported_image(real: RealCluster) -> None:
    """The container really runs: it writes its hostname and cgroup into its termination message."""
    real.apply(pod("hello", "echo ran-as-$(hostname); grep memory /proc/self/cgroup > /dev/termination-log"))
    p = wait_for(lambda: (q := real.get("pod", "hello"))["status"].get("phase") == "Succeeded"
                 and q, 90, "pod hello Succeeded")
    (status,) = p["status"]["containerStatuses"]
    assert status["imageID"], status
    assert status["image"].endswith(busybox_image_name().split("/", 1)[1]), status
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    settings = real.node("cpu")
    # Nested: the pod's memory cgroup lies under the node's cgroupRoot.
    assert settings.cgroup_root + "/kubepods" in terminated["message"], terminated["message"]
    assert p["status"]["podIP"].startswith(settings.pod_subnet.rsplit(".", 1)[0] + "."), p["status"]
    real.kubectl("delete", "pod", "hello", "--wait=true")


def test_memory_limit_is_enforced(real: RealCluster) -> None:
    """Above its memory limit a container is OOMKilled by the kernel (cgroup v1 memory)."""
    hog = "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo survived ${#x}"
    real.apply(pod("hog", hog, container={"resources": {"limits": {"memory": "64Mi", "cpu": "500m"}}}))
    p = wait_for(lambda: (q := real.get("pod", "hog"))["status"].get("phase") in ("Failed", "Succeeded")
                 and q, 90, "pod hog finished")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "OOMKilled", terminated
    real.kubectl("delete", "pod", "hog", "--wait=true")


def test_killed_kubelet_is_restarted_by_up(real: RealCluster) -> None:
    settings = real.node("cpu")
    kubelet = Daemon("kubelet", [""], settings.state_dir)
    pid = int(kubelet.pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2], 10, "kubelet gone")
    assert real.cluster("status", check=False).stdout.strip() == "stopped"
    out = real.cluster("up")
    assert "started: kubelet" in out.stderr, out.stderr
    assert real.cluster("status").stdout.strip() == "running"
    real.apply(pod("after-restart", "echo back > /dev/termination-log"))
    wait_for(lambda: real.get("pod", "after-restart")["status"].get("phase") == "Succeeded", 90, "pod after-restart Succeeded")
    real.kubectl("delete", "pod", "after-restart", "--wait=true")


def test_down_leaves_nothing(real: RealCluster, stack_destroyed: None) -> None:
    """Last: `bin/cluster down` leaves no process, mount, namespace, cgroup, state, rule, ipset or
    sysctl, no listener on the cluster's loopback block and no volume (test_persistent_volumes
    leaves a claim)."""
    nodes = real.nodes()
    prefix = real.loopback_prefix()
    kube_router = Path(tools()["KUBE_ROUTER_DIR"]) / "bin" / "kube-router"
    kubeconfig = str(nodes[0].admin_kubeconfig)
    # What must go is there: the nodes' policy engines, their chains and ipsets in the nodes' namespaces.
    for settings in nodes:
        running = processes_running(kube_router, kubeconfig, f"--hostname-override={settings.spec.name} ")
        assert len(running) == 1, f"not one kube-router for node {settings.spec.name}: {running}"
    for pool in ("cpu", "gpu"):
        real.apply(pod(f"running-at-down-{pool}", "sleep 3600", pool=pool))
    wait_for(lambda: all(real.get("pod", f"running-at-down-{p}")["status"].get("phase") == "Running"
                         for p in ("cpu", "gpu")), 90, "a pod Running on each node")
    real.cluster("down")
    assert [found for settings in nodes for found in leftovers(settings)] == []
    assert cluster_leftovers(real, prefix) == []
    assert processes_running(kube_router, kubeconfig) == []
    assert host_rules_naming((r"10\.24[34]\.", "cni0", *(s.netns for s in nodes), *CHAIN_PREFIXES)) == []
    assert [name for name in ipset_names() if name.startswith(IPSET_PREFIXES)] == []
    if Sysctls().held():  # another cluster's node still runs: the record must keep the values
        assert sysctls_before_kubelets() == real.sysctls_before
    else:
        assert kubelet_sysctls() == real.sysctls_before
    assert not real.cluster_dir.exists() or not any(real.cluster_dir.iterdir())
