"""Simulated GPUs on the real node, time-sliced as the dev stack's GPU pool says (two GPUs into
four): advertised through the kubelet's device-plugin API and allocated by the kubelet, one share
per pod, each container told which GPU its share is on, and one pod more stays Pending.

Four small busybox pods stand in for four GPU notebooks: four TensorFlow notebook servers at once
are more than this 2-core machine holds beside the cluster; what is tested, the kubelet's
allocation of the shares, is the same for any pod."""

from __future__ import annotations

from real_cluster import RealCluster, pod, wait_for
from cluster.localcluster.gpuplugin import REPLICA_SEPARATOR, SIMULATED_LABEL, advertised, device_ids


def phase(real: RealCluster, name: str) -> str:
    return real.get("pod", name)["status"].get("phase", "")


# Each pod reports its GPUs and its shares, then holds them while the others start.
REPORT = 'echo "$MLPLATFORM_SIMULATED_GPUS $MLPLATFORM_SIMULATED_GPU_REPLICAS" > /dev/termination-log; sleep 45'


def test_time_sliced_gpus_are_allocated_by_the_kubelet_one_share_per_pod(real: RealCluster) -> None:
    settings = real.node("gpu")
    sharing = settings.spec.gpu_sharing
    assert sharing is not None and sharing.replicas == 2, "the dev stack's GPU pool shares each GPU between two pods"
    resource, shares = advertised(settings.spec)
    assert shares == 4
    node = real.get("node", settings.spec.name)
    assert node["status"]["capacity"].get(resource) == str(shares), node["status"]["capacity"]
    assert node["status"]["allocatable"].get(resource) == str(shares), node["status"]["allocatable"]
    assert node["metadata"]["labels"].get(SIMULATED_LABEL[0]) == SIMULATED_LABEL[1], node["metadata"]["labels"]
    names = [f"gpu-share-{i}" for i in range(shares + 1)]
    one_share = {"resources": {"limits": {resource: "1"}}}
    for name in names[:-1]:
        real.apply(pod(name, REPORT, pool="gpu", container=one_share))
    wait_for(lambda: all(phase(real, n) == "Running" for n in names[:-1]), 60, f"{shares} GPU pods Running at once")
    real.apply(pod(names[-1], "true", pool="gpu", container=one_share))
    pending = wait_for(lambda: next(
        (c for c in real.get("pod", names[-1])["status"].get("conditions", []) if c.get("reason") == "Unschedulable"),
        None), 30, f"pod {names[-1]} unschedulable")
    assert f"Insufficient {resource}" in pending["message"], pending
    assert phase(real, names[-1]) == "Pending"
    wait_for(lambda: all(phase(real, n) == "Succeeded" for n in names[:-1]), 90, "the GPU pods done")
    reports = [real.get("pod", n)["status"]["containerStatuses"][0]["state"]["terminated"]["message"].split()
               for n in names[:-1]]
    # Every share went to exactly one pod, and each pod was told the GPU its share is on.
    assert sorted(share for _, share in reports) == device_ids(settings.spec.gpus, sharing.replicas), reports
    for gpu, share in reports:
        assert share.split(REPLICA_SEPARATOR)[0] == gpu and gpu.startswith("simulated-gpu-"), (gpu, share)
    for name in names:
        real.kubectl("delete", "pod", name, "--wait=false")
