"""What Kueue holds on the session's cluster, read by the real-node tests of the dev stack's queue
(Pulumi.dev.yaml: one ClusterQueue `training` for the training job and the GPU notebooks):
test_kueue_on_real_nodes.py, test_shared_gpu_notebooks.py and the training tests' job copies."""

from __future__ import annotations

import json
from typing import Any

from real_cluster import RealCluster
from vocab.kueue_api import GROUP, JOB_UID_LABEL, NOTEBOOK_LOCAL_QUEUE, QUEUE_LABEL
from vocab.names import GPU_RESOURCE
from vocab.tfjob_api import KIND as TFJOB_KIND

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


def queued_as(job: dict[str, Any]) -> dict[str, str]:
    """The queue label of a TFJob (the stack's, read back), for a copy to queue where it does:
    nothing when the stack's job is not queued (`kueue.trainingQueue` unset)."""
    queue = job["metadata"].get("labels", {}).get(QUEUE_LABEL)
    return {QUEUE_LABEL: queue} if queue else {}


def copied_replicas(replica_specs: dict[str, Any]) -> dict[str, Any]:
    """Replica specs read back from an admitted TFJob (the stack's), as a new job's: without what
    Kueue wrote into their templates when it admitted that job (the Workload's name, the queues,
    the pod set, under its own prefix; it leaves them there after the job ends). A copy that kept
    them was never resumed: Kueue found its own Workload's name in conflict with them and declared
    the copy finished at once (seen on the real nodes, 2026-12-07)."""
    copied = json.loads(json.dumps(replica_specs))
    for replica in copied.values():
        metadata = replica["template"].setdefault("metadata", {})
        for key in ("labels", "annotations"):
            metadata[key] = {k: v for k, v in metadata.get(key, {}).items() if not k.startswith(f"{GROUP}/")}
    return copied


def job_workloads(real: RealCluster, job: str, namespace: str) -> list[dict[str, Any]]:
    """The Workloads of the TFJob named JOB: Kueue's TFJob integration makes one, owned by the job
    (named `tfjob-<job>-<hash>`), and the garbage collector deletes it with the job."""
    return [w for w in real.get("workloads", "-n", namespace)["items"]
            if any(r.get("kind") == TFJOB_KIND and r.get("name") == job for r in w["metadata"].get("ownerReferences", []))]


def workload_condition(workload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in workload.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def pod_workloads(real: RealCluster, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The Workloads Kueue made for a plain pod (labelled with its uid)."""
    uid = pod["metadata"]["uid"]
    return real.get("workloads", "-n", pod["metadata"]["namespace"], "-l", f"{JOB_UID_LABEL}={uid}")["items"]
