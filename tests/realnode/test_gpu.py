"""Simulated GPUs on the real node: advertised through the kubelet's device-plugin API and
allocated by the kubelet, one per pod, and one pod more than there are GPUs stays Pending."""

from __future__ import annotations

from real_cluster import RealCluster, pod, wait_for
from cluster.localcluster.gpuplugin import GPU_RESOURCE, SIMULATED_LABEL


def phase(real: RealCluster, name: str) -> str:
    return real.get("pod", name)["status"].get("phase", "")


def test_gpus_are_allocated_by_the_kubelet(real: RealCluster) -> None:
    settings = real.node("gpu")
    node = real.get("node", settings.spec.name)
    assert node["status"]["capacity"].get(GPU_RESOURCE) == str(settings.spec.gpus), node["status"]["capacity"]
    assert node["metadata"]["labels"].get(SIMULATED_LABEL[0]) == SIMULATED_LABEL[1], node["metadata"]["labels"]
    names = [f"gpu-{i}" for i in range(settings.spec.gpus + 1)]
    for name in names[:-1]:
        real.apply(pod(name, 'echo "$MLPLATFORM_SIMULATED_GPUS" > /dev/termination-log; sleep 20', pool="gpu",
                       container={"resources": {"limits": {GPU_RESOURCE: "1"}}}))
    wait_for(lambda: all(phase(real, n) in ("Running", "Succeeded") for n in names[:-1]), 60, "one pod per GPU Running")
    real.apply(pod(names[-1], "true", pool="gpu", container={"resources": {"limits": {GPU_RESOURCE: "1"}}}))
    pending = wait_for(lambda: next(
        (c for c in real.get("pod", names[-1])["status"].get("conditions", []) if c.get("reason") == "Unschedulable"),
        None), 30, f"pod {names[-1]} unschedulable")
    assert f"Insufficient {GPU_RESOURCE}" in pending["message"], pending
    wait_for(lambda: all(phase(real, n) == "Succeeded" for n in names[:-1]), 60, "the GPU pods done")
    given = sorted(real.get("pod", n)["status"]["containerStatuses"][0]["state"]["terminated"]["message"].strip()
                   for n in names[:-1])
    assert given == [f"sim-gpu-{i}" for i in range(settings.spec.gpus)], given
    for name in names:
        real.kubectl("delete", "pod", name, "--wait=false")
