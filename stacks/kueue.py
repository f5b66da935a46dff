"""Quotas and queueing with Kueue (`mlplatform:kueue`): resource flavors from the node pools,
ClusterQueues with nominal quotas per pool, and the queues the training job and the hub's user
servers wait in.

Configures components/kueue.py; the API's names are vocab/kueue_api.py's. A quota is of one node
pool's resources (its flavor), GPUs counted as the pool advertises them (`gpusPerNode` times the
time-slicing replicas, under the resource the pool advertises).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field

from stacks.cluster import ClusterSettings, NodePool
from stacks.jupyterhub import JupyterHubSettings, Profile
from stacks.values import NAMESPACE, Count, DnsLabel, Quantity, Settings
from vocab.quantity import quantity

# Which of the hub's profiles queue their servers: those that ask for GPUs, or every one.
NotebookProfiles = Literal["gpu", "all"]


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
        description="the ClusterQueue the training job queues in (a LocalQueue `training` in its namespace): the "
        "TFJob waits suspended and its replicas are admitted whole (Kueue's TFJob integration); a new queue replaces the job",
    )

    notebook_queue: DnsLabel | None = Field(
        None,
        description="the ClusterQueue the hub's user servers queue in (a LocalQueue `notebooks` in the hub's "
        "namespace): a server that does not fit its quota waits, its spawn page saying why, until quota frees or "
        "its profile's start timeout ends the wait",
    )
    notebook_profiles: NotebookProfiles = Field(
        "gpu",
        description="with notebookQueue, which profiles' servers queue: `gpu` (those that ask for GPUs; CPU servers "
        "start as before, limited by the hub's own limits) or `all` (the queue then needs a quota of the CPU pool too)",
    )

    def problems(self, key: str, cluster: ClusterSettings, hub: JupyterHubSettings | None = None) -> Iterator[str]:
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
        if self.notebook_queue is not None:
            if self.notebook_queue not in names:
                allowed = ", ".join(q.name for q in self.cluster_queues) or "none given"
                yield (f"{key}.notebookQueue: {self.notebook_queue} is not a ClusterQueue of kueue.clusterQueues; "
                       f"queues: {allowed}")
            elif hub is not None:
                yield from self._notebooks_fit(key, cluster, hub)

    def queued_profiles(self, hub: JupyterHubSettings) -> tuple[Profile, ...]:
        """The profiles whose servers queue in `notebookQueue` (none without it)."""
        if self.notebook_queue is None:
            return ()
        return tuple(p for p in hub.profiles if self.notebook_profiles == "all" or p.gpus)

    def _notebooks_fit(self, key: str, cluster: ClusterSettings, hub: JupyterHubSettings) -> Iterator[str]:
        """Every queued profile's server fits the notebook queue's quota of each pool it may land
        on: one that asks for more than the quota (or lands on a pool the queue has none of) would
        wait until its start timeout, every time."""
        index = next(i for i, q in enumerate(self.cluster_queues) if q.name == self.notebook_queue)
        queue = self.cluster_queues[index]
        quotas = {q.pool: (j, q) for j, q in enumerate(queue.quotas)}
        for profile in self.queued_profiles(hub):
            where = f"profile {profile.name!r} ({NAMESPACE}:jupyterhub.profiles[{hub.profiles.index(profile)}])"
            for pool in _profile_pools(profile, cluster, hub.user_pool):
                if pool.name not in quotas:
                    yield (f"{key}.notebookQueue: ClusterQueue {queue.name} has no quota of node pool {pool.name}, "
                           f"where the servers of {where} run; give {key}.clusterQueues[{index}].quotas one, "
                           "or queue fewer profiles (notebookProfiles)")
                    continue
                j, quota = quotas[pool.name]
                asked = {
                    "cpu": profile.cpu_guarantee or profile.cpu_limit,
                    "memory": profile.memory_guarantee or profile.memory_limit,
                    "gpus": max(profile.offered_gpus) if pool.gpus_per_node else 0,
                }
                for resource, request in asked.items():
                    have = getattr(quota, resource)
                    if request and quantity(str(request)) > quantity(str(have)):
                        yield (f"{key}.clusterQueues[{index}].quotas[{j}].{resource}: {have} is less than one server "
                               f"of {where} asks for ({request}); it would wait until its start timeout, every time")

    def queue(self, name: str) -> ClusterQueueSettings:
        return next(q for q in self.cluster_queues if q.name == name)


def _profile_pools(profile: Profile, cluster: ClusterSettings, user_pool: str | None) -> list[NodePool]:
    """The pools a profile's servers may land on: those of its GPU types, or the one its counts
    pick (none known: a CPU server that may run on any node without GPUs)."""
    if profile.gpu_types:
        types = cluster.gpu_types()
        return [p for t in profile.gpu_types for p in types.get(t, ())]
    pool = cluster.pool_for(max(profile.offered_gpus), None if profile.gpus else user_pool)
    return [pool] if pool is not None else []
