"""Training admitted whole by Kueue, on the real nodes.

The session's stack (the dev stack) is updated with its `kueue` section turned on (`enabled:
true`; the dev stack ships it off) and put back as it was afterwards, as test_hub_storm.py does
with its limits: Kueue's manager, CRDs and webhooks, the ClusterQueue `training` (two of the GPU
node's four simulated, time-sliced GPU shares) and the LocalQueue `training` in the job's
namespace, the stack's TFJob templates labelled as one pod group. Then a pod of the queue holds one
GPU, and a TFJob of two GPU workers, queued as one pod group, must wait whole: both its pods exist
but are gated (no node, no container, no GPU), its Workload holds no quota and says which resource
is short. When the holder is deleted the job is admitted, both workers run on the GPU node, and
the job Succeeds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.local_stack import LocalStack, condition
from real_cluster import POOL_LABEL, RealCluster, busybox_image_name, wait_for
from vocab.kueue_api import POD_GROUP_LABEL, POD_GROUP_TOTAL_COUNT, QUEUE_LABEL, SCHEDULING_GATE, TRAINING_LOCAL_QUEUE
from vocab.names import GPU_RESOURCE
from vocab.tfjob_api import API_VERSION as TFJOB_API_VERSION
from vocab.tfjob_api import CONTAINER_NAME

NAMESPACE = "mnist"
STACK_JOB = "distributed-mnist"
CLUSTER_QUEUE = "training"
GPU_FLAVOR = "pool-gpu"
JOB = "queued-gpu-job"
HOLDER = "gpu-holder"
# The stack's own job, on 2 shared cores: as test_mnist_on_real_nodes.py allows it.
STACK_JOB_TIMEOUT_S = 1500
# How long the queued job is watched waiting: long enough for a scheduler that ignored the gate to
# have placed a pod (a pod with its image imported starts in seconds here).
WAITING_S = 30

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def gpu_pod_spec(script: str, container_name: str) -> dict[str, Any]:
    """A pod spec for the GPU node, asking for one GPU share (and little else), restricted."""
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "nodeSelector": {POOL_LABEL: "gpu"},
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        "containers": [{
            "name": container_name,
            "image": busybox_image_name(),
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", script],
            "securityContext": RESTRICTED,
            "resources": {
                "requests": {"cpu": "50m", "memory": "32Mi"},
                "limits": {"memory": "64Mi", GPU_RESOURCE: "1"},
            },
        }],
    }


def gpu_usage(real: RealCluster) -> int:
    """The GPU shares the ClusterQueue `training` holds (its reservation in the GPU pool's flavor)."""
    status = real.get("clusterqueue", CLUSTER_QUEUE).get("status", {})
    for flavor in status.get("flavorsReservation", []):
        if flavor["name"] == GPU_FLAVOR:
            for resource in flavor["resources"]:
                if resource["name"] == GPU_RESOURCE:
                    return int(resource["total"])
    return 0


def workloads_of(real: RealCluster, group: str) -> list[dict[str, Any]]:
    items = real.get("workloads", "-n", NAMESPACE)["items"]
    return [w for w in items if w["metadata"]["name"] == group or w["metadata"].get("labels", {}).get(POD_GROUP_LABEL) == group
            or any(r.get("name") == group for r in w["metadata"].get("ownerReferences", []))]


def workload_condition(workload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in workload.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def job_pods(real: RealCluster, job: str) -> list[dict[str, Any]]:
    return real.get("pods", "-n", NAMESPACE, "-l", f"training.kubeflow.org/job-name={job}")["items"]


@pytest.fixture(scope="module")
def kueue_on(stack: LocalStack, real: RealCluster) -> Iterator[None]:
    """The session's stack with `kueue.enabled: true` (once its own job has finished, so that the
    job is not changed under it), then as it was, once this module's pods are gone (Kueue removes
    its finalizers from them)."""
    wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, STACK_JOB), "Succeeded"), STACK_JOB_TIMEOUT_S,
             f"the stack's TFJob {STACK_JOB} to succeed")
    original = stack.config_file.read_text()
    document = yaml.safe_load(original)
    document["config"]["mlplatform:kueue"]["enabled"] = True
    stack.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        print(f"  Kueue deployed in {stack.pulumi('up', '--yes', '--skip-preview', timeout=900).seconds:.0f}s", flush=True)
        yield
    finally:
        for kind, name in (("tfjob", JOB), ("pod", HOLDER)):
            real.kubectl("delete", kind, "-n", NAMESPACE, name, "--ignore-not-found", "--timeout=120s", check=False,
                         timeout=180)
        wait_for(lambda: not job_pods(real, JOB), 120, f"{JOB}'s pods gone")
        stack.config_file.write_text(original)
        print(f"  the stack's own config back in {stack.pulumi('up', '--yes', '--skip-preview', timeout=900).seconds:.0f}s",
              flush=True)


def test_a_tfjob_waits_whole_for_gpu_quota_and_runs_when_it_frees(real: RealCluster, kueue_on: None) -> None:
    manager = real.get("deployment", "-n", "kueue-system", "kueue-controller-manager")
    assert manager["status"].get("readyReplicas") == 1, f"the Kueue manager is not ready: {manager['status']}"
    # The stack's job is declared as one pod group in the queue (its pods ran before Kueue was on).
    for kind, spec in real.get("tfjob", "-n", NAMESPACE, STACK_JOB)["spec"]["tfReplicaSpecs"].items():
        labels = spec["template"]["metadata"]["labels"]
        assert (labels.get(QUEUE_LABEL), labels.get(POD_GROUP_LABEL)) == (TRAINING_LOCAL_QUEUE, STACK_JOB), kind
    wait_for(lambda: real.kubectl("get", "clusterqueue", CLUSTER_QUEUE, check=False).returncode == 0, 60,
             f"ClusterQueue {CLUSTER_QUEUE}")
    assert gpu_usage(real) == 0, f"ClusterQueue {CLUSTER_QUEUE} holds GPUs before anything was queued"

    holder = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": HOLDER, "namespace": NAMESPACE, "labels": {QUEUE_LABEL: TRAINING_LOCAL_QUEUE}},
        "spec": gpu_pod_spec("sleep 3600", "main"),
    }
    workers = {
        "replicas": 2,
        "restartPolicy": "Never",
        "template": {
            "metadata": {
                "labels": {QUEUE_LABEL: TRAINING_LOCAL_QUEUE, POD_GROUP_LABEL: JOB},
                "annotations": {POD_GROUP_TOTAL_COUNT: "2"},
            },
            "spec": gpu_pod_spec("sleep 5", CONTAINER_NAME),
        },
    }
    job = {
        "apiVersion": TFJOB_API_VERSION,
        "kind": "TFJob",
        "metadata": {"name": JOB, "namespace": NAMESPACE},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": {"Worker": workers}},
    }
    try:
        real.apply(holder)
        wait_for(lambda: real.get("pod", "-n", NAMESPACE, HOLDER)["status"].get("phase") == "Running", 120,
                 f"the holder pod admitted by Kueue and running with one of the {CLUSTER_QUEUE} queue's 2 GPUs")
        assert gpu_usage(real) == 1

        real.apply(job)
        wait_for(lambda: len(job_pods(real, JOB)) == 2, 120, f"the operator to create {JOB}'s two worker pods")
        deadline = time.monotonic() + WAITING_S
        while time.monotonic() < deadline:
            for pod in job_pods(real, JOB):
                name = pod["metadata"]["name"]
                gates = [g["name"] for g in pod["spec"].get("schedulingGates", [])]
                assert SCHEDULING_GATE in gates, f"{name} is not gated while its group waits: {gates}"
                assert not pod["spec"].get("nodeName"), f"{name} was placed on {pod['spec']['nodeName']} while waiting"
                assert not pod["status"].get("containerStatuses"), f"{name} started a container while waiting"
            assert gpu_usage(real) == 1, "the waiting job holds GPU quota"
            time.sleep(2)
        (workload,) = workloads_of(real, JOB)
        reserved = workload_condition(workload, "QuotaReserved")
        assert reserved is not None and reserved["status"] == "False", workload.get("status")
        assert GPU_RESOURCE in reserved["message"], f"the Workload does not say what is short: {reserved['message']}"

        real.kubectl("delete", "pod", "-n", NAMESPACE, HOLDER, "--wait=false")
        wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, JOB), "Succeeded"), 300,
                 f"{JOB} admitted once the holder's GPU is back, and succeeded")
        nodes = {p["spec"].get("nodeName") for p in job_pods(real, JOB)}
        assert nodes == {real.node("gpu").spec.name}, f"{JOB}'s workers ran on {nodes}"
    finally:
        # (kueue_on deletes them and waits for their pods before Kueue goes.)
        real.kubectl("delete", "tfjob", "-n", NAMESPACE, JOB, "--ignore-not-found", "--wait=false", check=False)
        real.kubectl("delete", "pod", "-n", NAMESPACE, HOLDER, "--ignore-not-found", "--wait=false", check=False)
