"""A real node of the local cluster: Ready on containerd 2.x, runs pods from imported images
with the kernel enforcing their limits, comes back when killed, and leaves nothing behind."""

from __future__ import annotations

import os
import signal

from real_cluster import RealCluster, busybox_image_name, host_rules_naming, leftovers, pod, wait_for
from localcluster.kubelet import KUBELET_SYSCTLS, read_sysctl
from localcluster.process import Daemon
from localcluster.settings import tools



def test_node_ready_on_containerd_2(real: RealCluster) -> None:
    (settings,) = real.nodes()
    node = real.get("node", settings.spec.name)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    info = node["status"]["nodeInfo"]
    assert ready == "True", f"node {settings.spec.name} not Ready: {node['status']['conditions']}"
    assert info["containerRuntimeVersion"].startswith("containerd://2."), info
    assert info["kubeletVersion"] == tools()["KUBERNETES_VERSION"], info
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {}), "a real node must not be kwok's"
    assert node["status"]["addresses"][0]["address"] == settings.node_ip


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
    (settings,) = real.nodes()
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
    (settings,) = real.nodes()
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


def test_down_leaves_nothing(real: RealCluster) -> None:
    """Last: `bin/cluster down` leaves no process, mount, namespace, cgroup, state, rule or sysctl."""
    (settings,) = real.nodes()
    real.apply(pod("running-at-down", "sleep 3600"))
    wait_for(lambda: real.get("pod", "running-at-down")["status"].get("phase") == "Running", 90, "pod running-at-down Running")
    real.cluster("down")
    assert leftovers(settings) == []
    assert host_rules_naming((r"10\.24[34]\.", "cni0", settings.netns)) == []
    assert {k: read_sysctl(k) for k in KUBELET_SYSCTLS} == real.sysctls_before
    assert not real.cluster_dir.exists() or not any(real.cluster_dir.iterdir())
