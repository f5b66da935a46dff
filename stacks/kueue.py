"""Quotas and queueing with Kueue (`mlplatform:kueue`): resource flavors from the node pools,
ClusterQueues with nominal quotas per pool, and the queue the training job waits in.

Configures components/kueue.py; the API's names are vocab/kueue_api.py's. A quota is of one node
pool's resources (its flavor), GPUs counted as the pool advertises them (`gpusPerNode` times the
time-slicing replicas, under the resource the pool advertises).
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import Field

from stacks.cluster import ClusterSettings, NodePool
from stacks.values import NAMESPACE, Count, DnsLabel, Quantity, Settings
from vocab.quantity import quantity


class PoolQuota(Settings):
    pool: DnsLabel = Field(description="the node pool (`cluster.nodePools[].name`) whose resources this quota is of")
    cpu: Quantity = Field("0", description="nominal CPU of the pool the queue may hold")
    memory: Quantity = Field("0", description="nominal memory of the pool the queue may hold")
    gpus: Count = Field(
        0,
        description="nominal GPUs of the pool the queue may hold, as the pool advertises them (each time-sliced "
        "share counts one, under `nvidia.com/gpu.shared` where the pool renames them)",
    )


class ClusterQueueSettings(Settings):
    name: DnsLabel = Field(description="the ClusterQueue's name (a team's or a purpose's)")
    cohort: DnsLabel | None = Field(
        None, description="queues of the same cohort lend each other their unused quota (borrowing)"
    )
    quotas: tuple[PoolQuota, ...] = Field(description="one nominal quota per node pool the queue's workloads land on")

    def problems(self, key: str, cluster: ClusterSettings) -> Iterator[str]:
        if not self.quotas:
            yield f"{key}.quotas: give at least one pool's quota"
        seen: set[str] = set()
        for index, quota in enumerate(self.quotas):
            where = f"{key}.quotas[{index}]"
            if quota.pool in seen:
                yield f"{where}.pool: {quota.pool} has a quota above already; one quota per pool"
            seen.add(quota.pool)
            pool = next((p for p in cluster.node_pools if p.name == quota.pool), None)
            if pool is None:
                yield f"{where}.pool: {quota.pool} is not a node pool; pools: {', '.join(cluster.pool_names)}"
                continue
            yield from _backed(where, quota, pool, cluster)


def _backed(key: str, quota: PoolQuota, pool: NodePool, cluster: ClusterSettings) -> Iterator[str]:
    """A quota that the pool could never back: more GPUs than its nodes advertise, or more cpu and
    memory than its nodes offer where that is known."""
    nodes = pool.node_count
    pool_key = cluster.pool_key(f"{NAMESPACE}:cluster", pool)
    if quota.gpus and not pool.gpus_per_node:
        yield f"{key}.gpus: {quota.gpus}, but node pool {pool.name} has no GPUs ({pool_key}.gpusPerNode is 0)"
    elif quota.gpus > nodes * pool.gpus_advertised:
        yield (
            f"{key}.gpus: {quota.gpus} is more than node pool {pool.name} can back: {nodes} node(s) x "
            f"{pool.gpus_advertised} {pool.gpu_resource} ({pool_key})"
        )
    capacity = cluster.pool_capacity(pool)
    if capacity is None:
        return
    for resource in ("cpu", "memory"):
        asked = quantity(getattr(quota, resource))
        per_node = getattr(capacity.allocatable, resource)
        if asked > nodes * quantity(per_node):
            yield (
                f"{key}.{resource}: {getattr(quota, resource)} is more than node pool {pool.name} can back: "
                f"{nodes} node(s) x {per_node}{capacity.origin}"
            )


class KueueSettings(Settings):
    enabled: bool = Field(
        False,
        description="deploy Kueue (its manager, CRDs and webhooks) with the queues below; the queued workloads wait "
        "for quota instead of holding part of it",
    )
    cluster_queues: tuple[ClusterQueueSettings, ...] = Field(
        (), description="the ClusterQueues: per team or purpose, nominal quotas of each pool's cpu, memory and GPUs"
    )
    training_queue: DnsLabel | None = Field(
        None,
        description="the ClusterQueue the training job queues in (a LocalQueue `training` in its namespace): its "
        "replicas are admitted whole, as one pod group, or wait",
    )

    def problems(self, key: str, cluster: ClusterSettings) -> Iterator[str]:
        if cluster.simulated:
            yield (
                f"{key}.enabled: Kueue's manager runs as a pod, and a simulated cluster (cluster.provider "
                f"{cluster.provider}) runs none; enable it on a cluster with real nodes"
            )
        if not self.cluster_queues:
            yield f"{key}.clusterQueues: Kueue is enabled without a ClusterQueue; give at least one, or set enabled false"
        names: set[str] = set()
        for index, queue in enumerate(self.cluster_queues):
            if queue.name in names:
                yield f"{key}.clusterQueues[{index}].name: {queue.name} is the name of a queue above already"
            names.add(queue.name)
            yield from queue.problems(f"{key}.clusterQueues[{index}]", cluster)
        if self.training_queue is not None and self.training_queue not in names:
            allowed = ", ".join(q.name for q in self.cluster_queues) or "none given"
            yield f"{key}.trainingQueue: {self.training_queue} is not a ClusterQueue of kueue.clusterQueues; queues: {allowed}"

    def queue(self, name: str) -> ClusterQueueSettings:
        return next(q for q in self.cluster_queues if q.name == name)
