"""The real nodes made for a stack's pools (stacks/local_nodes.py), and where the API server's
egress proxy dials an address from (cluster/localcluster/egress.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vocab.versions import REPO

from cluster.localcluster.egress import target_for
from cluster.localcluster.settings import NodeSettings, NodeSpec


def local_nodes(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stacks.local_nodes", str(config)], cwd=REPO,
                          capture_output=True, text=True)


def test_dev_stack_gets_a_real_node_per_pool() -> None:
    out = local_nodes(REPO / "Pulumi.dev.yaml")
    assert out.returncode == 0, out.stderr
    nodes = {n["name"]: n for n in json.loads(out.stdout)}
    assert set(nodes) == {"real-cpu-0", "real-gpu-0"}
    assert nodes["real-cpu-0"]["labels"] == {"hub.jupyter.org/node-purpose": "user", "mlplatform.dev/pool": "cpu"}
    assert nodes["real-gpu-0"]["taints"] == ["sku=gpu:NoSchedule"]
    assert nodes["real-cpu-0"]["taints"] == []
    assert (nodes["real-cpu-0"]["gpus"], nodes["real-gpu-0"]["gpus"]) == (0, 2)
    assert nodes["real-gpu-0"]["gpuSharing"] == {"replicas": 2, "resource": "nvidia.com/gpu", "failRequestsGreaterThanOne": False}


def test_beside_kwoks_nodes_real_nodes_keep_the_stacks_pods_off() -> None:
    out = local_nodes(REPO / "Pulumi.kwok.yaml")
    assert out.returncode == 0, out.stderr
    nodes = {n["name"]: n for n in json.loads(out.stdout)}
    assert nodes["real-gpu-0"]["taints"] == ["sku=gpu:NoSchedule", "mlplatform.dev/node-kind=real:NoSchedule"]
    assert nodes["real-cpu-0"]["taints"] == ["mlplatform.dev/node-kind=real:NoSchedule"]


def test_a_local_stacks_pods_run_on_the_real_nodes(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.local.yaml"
    config.write_text("config:\n  mlplatform:cluster:\n    provider: local\n    nodePools:\n      - name: gpu\n"
                      "        gpusPerNode: 2\n        taints: [sku=gpu:NoSchedule]\n")
    out = local_nodes(config)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [{"name": "real-gpu-0", "labels": {"mlplatform.dev/pool": "gpu"},
                                       "taints": ["sku=gpu:NoSchedule"], "gpus": 2, "gpuSharing": None}]
    provider = subprocess.run([sys.executable, "-m", "stacks.local_nodes", "--provider", str(config)], cwd=REPO,
                              capture_output=True, text=True)
    assert provider.stdout.strip() == "local", provider.stderr


def test_bad_pool_is_refused_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.bad.yaml"
    config.write_text("config:\n  mlplatform:cluster:\n    nodePools:\n      - name: cpu\n        gpusPerNode: -1\n")
    out = local_nodes(config)
    assert out.returncode == 1
    assert "mlplatform:cluster.nodePools[0].gpusPerNode" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_a_stack_without_pools_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "Pulumi.empty.yaml"
    config.write_text("config:\n  mlplatform:cluster:\n    provider: kwok\n")
    out = local_nodes(config)
    assert out.returncode == 1 and "nodePools" in out.stderr, out.stderr


def node(index: int) -> NodeSettings:
    return NodeSettings(spec=NodeSpec(f"n{index}"), index=index, state_dir=Path(f"/n{index}"),
                        admin_kubeconfig=Path("/k"), api_port=1, cgroup_root="/c", netns=f"ns{index}",
                        node_ip=f"10.243.{index}.2", pod_subnet=f"10.244.{index}.0/24")


def test_egress_dials_each_address_from_the_namespace_that_holds_it() -> None:
    nodes = [node(0), node(1)]
    assert target_for("n1", nodes) == ("ns1", "10.243.1.2")  # a kubelet, by its node's name
    assert target_for("10.243.1.2", nodes) == ("ns1", "10.243.1.2")
    assert target_for("10.244.1.7", nodes) == ("ns1", "10.244.1.7")  # a pod
    assert target_for("10.244.0.9", nodes) == ("ns0", "10.244.0.9")
    assert target_for("10.0.0.10", nodes) == ("ns0", "10.0.0.10")  # a cluster IP: any node's kube-proxy
    assert target_for("192.0.2.1", nodes) is None  # nothing outside the cluster's ranges
    assert target_for("127.0.0.1", nodes) is None
    assert target_for("example.com", nodes) is None
    assert target_for("10.0.0.10", []) is None
