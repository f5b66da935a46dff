"""What Kueue holds on the session's cluster, read by the real-node tests of the dev stack's queue
(Pulumi.dev.yaml: one ClusterQueue `training` for the training job and the GPU notebooks)."""

from __future__ import annotations

from typing import Any

from real_cluster import RealCluster
from vocab.kueue_api import JOB_UID_LABEL, NOTEBOOK_LOCAL_QUEUE, POD_GROUP_LABEL
from vocab.names import GPU_RESOURCE

CLUSTER_QUEUE = "training"
GPU_FLAVOR = "pool-gpu"
# The first words of a queued server's line on its spawn page (components/hub_config/queued_spawner.py).
QUEUED = f"Queued in ClusterQueue {CLUSTER_QUEUE} (LocalQueue {NOTEBOOK_LOCAL_QUEUE})"


def positioned(in_local_queue: int, in_cluster_queue: int) -> str:
    """QUEUED with the position the page shows (from 1; Kueue's visibility API counts from 0)."""
    return f"{QUEUED}, position {in_local_queue} in the LocalQueue and {in_cluster_queue} in the ClusterQueue"


def gpu_usage(real: RealCluster) -> int:
    """The GPU shares the ClusterQueue holds (its reservation in the GPU pool's flavor)."""
    status = real.get("clusterqueue", CLUSTER_QUEUE).get("status", {})
    for flavor in status.get("flavorsReservation", []):
        if flavor["name"] == GPU_FLAVOR:
            for resource in flavor["resources"]:
                if resource["name"] == GPU_RESOURCE:
                    return int(resource["total"])
    return 0


def workloads_of(real: RealCluster, group: str, namespace: str) -> list[dict[str, Any]]:
    """The Workloads of pod group GROUP (named after it, or labelled or owned so)."""
    items = real.get("workloads", "-n", namespace)["items"]
    return [w for w in items if w["metadata"]["name"] == group or w["metadata"].get("labels", {}).get(POD_GROUP_LABEL) == group
            or any(r.get("name") == group for r in w["metadata"].get("ownerReferences", []))]


def workload_condition(workload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in workload.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def pod_workloads(real: RealCluster, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The Workloads Kueue made for a plain pod (labelled with its uid)."""
    uid = pod["metadata"]["uid"]
    return real.get("workloads", "-n", pod["metadata"]["namespace"], "-l", f"{JOB_UID_LABEL}={uid}")["items"]
