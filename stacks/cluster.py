"""Where the stack deploys (`mlplatform:cluster`): the provider, its node pools, and what a node offers.

Configures components/cluster.py, the Pulumi component that makes the Kubernetes provider and
the nodes. What a real node of the local cluster offers pods is the kubelet's sum, written beside
its reservations in cluster/localcluster/capacity.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from vocab.quantity import quantity
from pydantic import Field, PrivateAttr
from pydantic.alias_generators import to_camel

from cluster.localcluster.capacity import Allocatable, local_allocatable, machine_capacity
from stacks import azure_names
from stacks.values import NAMESPACE, Count, DnsLabel, LabelValue, ParsedTaint, Quantity, Settings, _only_with
from vocab.names import GPU_RESOURCE, SHARED_GPU_RESOURCE
from vocab.versions import REPO, read_env_file

# The kubeconfig bin/cluster writes for the local cluster: cluster/local.env's default, or where
# MLPLATFORM_KUBECONFIG points (the variable bin/cluster and bin/training-operator honour too).
KUBECONFIG_ENV = "MLPLATFORM_KUBECONFIG"
LOCAL_KUBECONFIG = read_env_file(REPO / "cluster" / "local.env")["LOCAL_KUBECONFIG"]

ClusterProvider = Literal["kwok", "local", "existing", "aks", "render"]
# The providers whose cluster is the one `bin/cluster` runs on this machine (kubeconfig default).
LOCAL_PROVIDERS = ("kwok", "local")
NetworkPolicyEngine = Literal["cilium", "calico", "azure", "none"]


@dataclass(frozen=True)
class NodeCapacity:
    """What a node of pool `pool` offers, and where the figure comes from (said in messages)."""

    pool: str
    allocatable: Allocatable
    origin: str = ""

    def problems(self, key: str, resource: str, request: str | None) -> Iterator[str]:
        """A request for `resource` that no node of the pool could ever hold."""
        capacity = getattr(self.allocatable, resource)
        if request and quantity(request) > quantity(capacity):
            yield f"{key}: {request} is more than a node of pool {self.pool} has ({resource} {_shown_quantity(capacity)}{self.origin})"


def _shown_quantity(value: str) -> str:
    """`value`, and in GiB too where it is memory in smaller units (`24581184Ki`), for a reader comparing it to `32Gi`."""
    size = quantity(value)
    if value.endswith(("Ki", "Mi")) and size >= 2**30:
        return f"{value}, about {size / 2**30:.1f}Gi"
    return value


def this_machine() -> Allocatable:
    """What each real node of a `local` cluster offers pods: this machine, less the kubelet's reservations."""
    return local_allocatable(machine_capacity())


# What a message says after a `local` pool's figure: where it comes from.
LOCAL_ORIGIN = ": this machine's allocatable, as each real node of cluster.provider local reports it"


class GpuSharing(Settings):
    """Time-slicing, as NVIDIA's device plugin v0.20 does it (`sharing.timeSlicing` of its config)."""

    replicas: Annotated[int, Field(ge=2)] = Field(
        description="time-slicing: how many pods share each GPU; a node of the pool advertises gpusPerNode x "
        "replicas GPUs. Shares take turns on the GPU: neither its memory nor its faults are isolated"
    )
    rename_by_default: bool = Field(
        False,
        description=f"advertise the shares as `{SHARED_GPU_RESOURCE}` instead of `{GPU_RESOURCE}`, so that a pod "
        "asks knowingly for a share; the platform's profiles and TFJob replicas then ask for that name",
    )
    fail_requests_greater_than_one: bool = Field(
        False,
        description="refuse a container asking for more than one share (two shares may be the same GPU); the "
        "preview then refuses a profile or TFJob replica with gpus > 1 on the pool",
    )

    @property
    def resource(self) -> str:
        return SHARED_GPU_RESOURCE if self.rename_by_default else GPU_RESOURCE

    def plugin_config(self) -> dict:
        """The NVIDIA device plugin's config file (`version: v1`) that shares a node's GPUs this way."""
        return {
            "version": "v1",
            "sharing": {
                "timeSlicing": {
                    "renameByDefault": self.rename_by_default,
                    "failRequestsGreaterThanOne": self.fail_requests_greater_than_one,
                    "resources": [{"name": GPU_RESOURCE, "replicas": self.replicas}],
                }
            },
        }


# The device plugin's config for a GPU node that is not shared: every GPU whole.
WHOLE_GPUS_CONFIG = {"version": "v1"}


class NodePool(Settings):
    name: DnsLabel = Field(description="the pool's name; its nodes carry the label `mlplatform.dev/pool=<name>`")
    count: Count | None = Field(None, description="a fixed number of nodes (default 1); or set minCount and maxCount")
    min_count: Count | None = Field(None, description="autoscaling: the fewest nodes (0 allowed)")
    max_count: Count | None = Field(None, description="autoscaling: the most nodes")
    vm_size: str | None = Field(None, description="aks: the VM size (required there)")
    cpu: Quantity = Field(
        "8",
        description="kwok: each simulated node's CPU capacity, which every CPU request for the pool must fit (real "
        "pools report their own: on `local`, this machine's allocatable, checked the same way)",
    )
    memory: Quantity = Field(
        "32Gi",
        description="kwok: each simulated node's memory capacity, which every memory request for the pool must fit "
        "(on `local`, this machine's allocatable)",
    )
    gpus_per_node: Count = Field(0, description="`nvidia.com/gpu` per node; GPU workloads go to pools that have them")
    gpu_type: LabelValue | None = Field(
        None,
        description="the GPU model of the pool's nodes (e.g. `T4`, `A100`): a profile's `gpuTypes` choice lands on a pool "
        "of that type (only with gpusPerNode)",
    )
    gpu_sharing: GpuSharing | None = Field(
        None,
        description="share each GPU between pods by time-slicing (NVIDIA's device plugin config, one per pool, "
        "chosen by the node label `nvidia.com/device-plugin.config`; on the local cluster the simulated plugin "
        "does the same)",
    )
    max_pods: Annotated[int, Field(ge=1)] = Field(110, description="pods per node")
    taints: tuple[ParsedTaint, ...] = Field((), description="`key=value:Effect` or `key:Effect`; workloads for the pool tolerate them")
    labels: dict[str, str] = Field({}, description="node labels; on an existing cluster the labels that select the pool's nodes")

    @property
    def autoscaled(self) -> bool:
        return self.min_count is not None or self.max_count is not None

    @property
    def node_count(self) -> int:
        """Nodes to simulate: a fixed count, or the most an autoscaled pool may grow to."""
        if self.autoscaled:
            return self.max_count or 0
        return 1 if self.count is None else self.count

    @property
    def gpu_resource(self) -> str:
        """The extended resource the pool's nodes advertise their GPUs (or shares of them) as."""
        return self.gpu_sharing.resource if self.gpu_sharing else GPU_RESOURCE

    @property
    def gpus_advertised(self) -> int:
        """What each node advertises of `gpu_resource`: its GPUs, times the replicas when shared."""
        return self.gpus_per_node * (self.gpu_sharing.replicas if self.gpu_sharing else 1)

    @property
    def most_gpus_per_pod(self) -> int:
        """The most of `gpu_resource` one pod may get on a node of the pool."""
        if self.gpu_sharing and self.gpu_sharing.fail_requests_greater_than_one:
            return min(1, self.gpus_advertised)
        return self.gpus_advertised

    def gpu_shown(self) -> str:
        """The pool's GPUs as a message says them: `2` or `2 x 2 nvidia.com/gpu.shared, at most 1 a pod`."""
        if not self.gpu_sharing:
            return str(self.gpus_per_node)
        shown = f"{self.gpus_per_node} time-sliced into {self.gpus_advertised} {self.gpu_resource}"
        if self.gpu_sharing.fail_requests_greater_than_one:
            shown += ", at most 1 a pod"
        return shown

    def plugin_config(self) -> dict:
        """The NVIDIA device plugin's config for the pool's nodes."""
        return self.gpu_sharing.plugin_config() if self.gpu_sharing else dict(WHOLE_GPUS_CONFIG)

    def problems(self, key: str, provider: str) -> Iterator[str]:
        if self.gpu_sharing and not self.gpus_per_node:
            yield f"{key}.gpuSharing: the pool has no GPUs to share (gpusPerNode is 0); set gpusPerNode or remove gpuSharing"
        if self.count is not None and self.autoscaled:
            yield f"{key}.count: set either count or minCount/maxCount, not both"
        if self.autoscaled and (self.min_count is None or self.max_count is None):
            yield f"{key}: autoscaling needs both minCount and maxCount"
        elif self.autoscaled and self.min_count > self.max_count:
            yield f"{key}.minCount: {self.min_count} must be <= maxCount ({self.max_count})"
        if self.gpu_type is not None and not self.gpus_per_node:
            yield f"{key}.gpuType: {json.dumps(self.gpu_type)} is only for a pool with GPUs; set gpusPerNode or remove gpuType"
        if provider == "existing" and not self.labels:
            yield f"{key}.labels: required with cluster.provider existing: the labels that select this pool's nodes"
        if provider == "aks":
            if not self.vm_size:
                yield f"{key}.vmSize: required with cluster.provider aks (e.g. Standard_NC4as_T4_v3 for GPUs)"
            problem = azure_names.AGENT_POOL.problem(self.name)
            if problem:
                yield f"{key}.name: {problem} (cluster.provider aks)"


# The providers each provider-specific cluster key is for: such a key set for another provider
# is a mistake.
_PROVIDERS_OF = {
    "kubeconfig": ("kwok", "local", "existing"),
    "context": ("kwok", "local", "existing"),
    "location": ("aks",),
    "kubernetes_version": ("aks",),
    "resource_group": ("aks",),
    "system_pool_vm_size": ("aks",),
    "system_pool_count": ("aks",),
    "network_policy": ("aks",),
    "render_dir": ("render",),
    "render_as": ("render",),
}


# The StorageClass each provider offers for ReadWriteMany claims, which the default class often
# cannot serve (AKS's default is Azure Disk, ReadWriteOnce only; Azure Files serves many nodes).
# A simulated cluster pre-binds its own volumes; on other providers the stack cannot know one.
READ_WRITE_MANY_CLASSES = {"aks": "azurefile-csi", "local": "local-path"}


class ClusterSettings(Settings):
    provider: ClusterProvider = Field(
        "kwok",
        description="`kwok` (the local cluster, its nodes simulated by kwok: `make up STACK=kwok`), `local` (the "
        "local cluster with real nodes, one per pool: `make up`, the dev stack), `existing` (any cluster), `aks` (Azure), "
        "`render` (write the manifests instead of applying them)",
    )
    kubeconfig: str | None = Field(
        None,
        description="kwok, local, existing: the cluster's kubeconfig, a path or the contents (kwok and local default: "
        "$MLPLATFORM_KUBECONFIG, else `.local/kubeconfig`, the file `bin/cluster` writes)",
    )
    context: str | None = Field(None, description="kwok, local, existing: the kubeconfig context")
    location: str | None = Field(None, description="aks: the Azure region (required there)")
    kubernetes_version: str | None = Field(None, description="aks: the Kubernetes version (default: Azure's)")
    resource_group: str | None = Field(None, description="aks: an existing resource group (default: one is created)")
    system_pool_vm_size: str = Field("Standard_D4s_v5", description="aks: the system pool's VM size")
    system_pool_count: Annotated[int, Field(ge=1)] = Field(1, description="aks: the system pool's node count")
    network_policy: NetworkPolicyEngine = Field(
        "cilium",
        description="aks: what enforces NetworkPolicies, chosen when the cluster is created: `cilium` (Azure CNI "
        "powered by Cilium), `calico` or `azure` (Azure Network Policy Manager), `none` (policies are accepted and ignored)",
    )
    render_dir: str = Field(".local/render", description="render: where the manifests are written")
    render_as: Literal["existing", "local", "kwok"] = Field(
        "existing",
        description="render: the manifests an `existing` cluster gets (its nodes, volumes and webhooks real), what "
        "the local cluster with real nodes gets (`local`: no device plugin, its GPU nodes run a simulated one; "
        "volumes from `local-path`; for `make bench-deploy`), or what the local `kwok` cluster gets (simulated "
        "nodes, pre-bound volumes)",
    )
    nvidia_device_plugin: bool = Field(
        True,
        description="aks, existing: run the NVIDIA device plugin on GPU pools (the local cluster's GPU nodes run "
        "a simulated one of their own)",
    )
    node_pools: tuple[NodePool, ...] = Field((), description="the node pools workloads are placed on")
    # Not stack config: what each real node of a `local` cluster offers, this machine's allocatable,
    # which parse() learns where the program runs (see on_machine).
    _machine_node: Allocatable | None = PrivateAttr(None)

    def on_machine(self, node: Allocatable) -> ClusterSettings:
        """These settings, knowing that each real node of a `local` cluster offers `node`."""
        copy = self.model_copy()
        copy._machine_node = node
        return copy

    @property
    def target(self) -> str:
        """The kind of cluster the objects are made for: the provider, or what a rendering is for
        (`renderAs`), so that rendered manifests are exactly what that provider would deploy."""
        return self.render_as if self.provider == "render" else self.provider

    @property
    def simulated(self) -> bool:
        """Nodes, volumes and pods simulated: the local kwok cluster, or its rendering."""
        return self.target == "kwok"

    @property
    def real_nodes(self) -> str | None:
        """How the cluster's real nodes are described: "existing" (by their labels), "local", "aks", or None."""
        return None if self.simulated else self.target

    @property
    def read_write_many_class(self) -> str | None:
        """The StorageClass a ReadWriteMany claim gets when its config names none."""
        return READ_WRITE_MANY_CLASSES.get(self.target)

    @property
    def pool_names(self) -> list[str]:
        return [p.name for p in self.node_pools]

    @property
    def capacity_known(self) -> bool:
        """Whether what a node offers is known: the pools' cpu and memory on the simulated backends;
        on `local`, whose real nodes are this machine, its allocatable (once parse() gave it)."""
        return self.simulated or (self.provider == "local" and self._machine_node is not None)

    def pool_for(self, gpus: int, pool_name: str | None = None) -> NodePool | None:
        """The pool a pod asking for `gpus` GPUs lands on, or None when any node without GPUs will do.

        GPU pods go to the first pool with enough GPUs per node; CPU pods to `pool_name`, else the
        first pool without GPUs.
        """
        if gpus:
            return next((p for p in self.node_pools if p.most_gpus_per_pod >= gpus), None)
        if pool_name:
            return next((p for p in self.node_pools if p.name == pool_name), None)
        return next((p for p in self.node_pools if not p.gpus_per_node), None)

    def node_capacity(self, gpus: int, pool_name: str | None = None) -> NodeCapacity | None:
        """What a node of the pool a pod lands on offers, which its requests must fit, where that is known."""
        return self.pool_capacity(self.pool_for(gpus, pool_name))

    def pool_capacity(self, pool: NodePool | None) -> NodeCapacity | None:
        """What a node of `pool` offers, where that is known."""
        if pool is None or not self.capacity_known:
            return None
        if self.simulated:
            return NodeCapacity(pool.name, Allocatable(cpu=pool.cpu, memory=pool.memory))
        return NodeCapacity(pool.name, self._machine_node, LOCAL_ORIGIN)

    def pool_key(self, key: str, pool: NodePool) -> str:
        return f"{key}.nodePools[{self.node_pools.index(pool)}]"

    def gpu_types(self) -> dict[str, list[NodePool]]:
        """The GPU pools by their gpuType, in config order."""
        types: dict[str, list[NodePool]] = {}
        for pool in self.node_pools:
            if pool.gpus_per_node and pool.gpu_type:
                types.setdefault(pool.gpu_type, []).append(pool)
        return types

    def gpu_type_problem(self, key: str, gpu_type: str, gpus: int) -> str | None:
        """Why no pool of `gpu_type` can take a pod asking for `gpus` GPUs, or None when one can."""
        types = self.gpu_types()
        pools = types.get(gpu_type)
        if not pools:
            return (
                f"{key}: {json.dumps(gpu_type)} is not the gpuType of any GPU pool "
                f"(cluster.nodePools[].gpuType: {', '.join(types) or 'none set'})"
            )
        if not any(p.most_gpus_per_pod >= gpus for p in pools):
            have = ", ".join(f"{p.name}={p.gpu_shown()}" for p in pools)
            return f"{key}: {gpus} GPUs of type {gpu_type} asked for, but no pool of that type has gpusPerNode >= {gpus} ({have})"
        resources = {p.gpu_resource for p in pools}
        if len(resources) > 1:
            # One pod asks for one resource name, and the scheduler may pick any pool of the type.
            have = ", ".join(f"{p.name}: {p.gpu_resource}" for p in pools)
            return (f"{key}: the pools of gpuType {gpu_type} advertise their GPUs under different names ({have}); "
                    "give them the same gpuSharing.renameByDefault, or different gpuTypes")
        return None

    def gpu_problem(self, key: str, gpus: int) -> str | None:
        """Why `gpus` GPUs per pod cannot be placed on any pool, or None when they can."""
        gpu_pools = [p for p in self.node_pools if p.gpus_per_node]
        if not gpus or any(p.most_gpus_per_pod >= gpus for p in gpu_pools):
            return None
        have = ", ".join(f"{p.name}={p.gpu_shown()}" for p in gpu_pools) or "none"
        problem = f"{key}: {gpus} GPUs asked for, but no node pool has gpusPerNode >= {gpus} (GPU pools: {have})"
        refusing = [p for p in gpu_pools if p.gpus_advertised >= gpus]
        if refusing:
            keys = ", ".join(f"{self.pool_key(NAMESPACE + ':cluster', p)}.gpuSharing.failRequestsGreaterThanOne" for p in refusing)
            problem = (f"{key}: {gpus} shared GPUs asked for, but a pod gets at most 1 there ({keys} is true: two "
                       f"shares may be the same GPU); ask for 1 (GPU pools: {have})")
        return problem

    def gpu_request_problem(self, key: str, gpus: int, resource: str, pool_name: str | None = None) -> str | None:
        """Why a pod asking for `gpus` of the extended resource `resource` cannot be served on the
        pool it lands on (`pool_name`, else the one `pool_for` picks), or None when it can."""
        if not gpus:
            return None
        pool = next((p for p in self.node_pools if p.name == pool_name), None) if pool_name else self.pool_for(gpus)
        if pool is None:
            return self.gpu_problem(key, gpus)
        if resource != pool.gpu_resource:
            where = self.pool_key(NAMESPACE + ":cluster", pool)
            why = f" ({where}.gpuSharing.renameByDefault)" if pool.gpu_sharing and pool.gpu_sharing.rename_by_default else ""
            return (f"{key}: asks for {resource}, but node pool {pool.name} advertises only {pool.gpu_resource}{why}; "
                    f"ask for {pool.gpu_resource}")
        if gpus > pool.most_gpus_per_pod:
            return self.gpu_problem(key, gpus)
        return None

    def problems(self, key: str) -> Iterator[str]:
        for field, providers in _PROVIDERS_OF.items():
            if field in self.model_fields_set and self.provider not in providers:
                yield _only_with(f"{key}.{to_camel(field)}", f"cluster.provider {' or '.join(providers)}", self.provider)
        if self.provider == "existing" and not self.kubeconfig:
            yield f"{key}.kubeconfig: required with cluster.provider existing (a path or the contents)"
        if self.provider == "aks" and not self.location:
            yield f"{key}.location: required with cluster.provider aks (an Azure region such as westeurope)"
        if self.provider == "aks":
            for field, rule in (
                ("resource_group", azure_names.RESOURCE_GROUP),
                ("kubernetes_version", azure_names.KUBERNETES_VERSION),
                ("location", azure_names.LOCATION),
            ):
                value = getattr(self, field)
                problem = value is not None and rule.problem(value)
                if problem:
                    yield f"{key}.{to_camel(field)}: {problem}"
        names = self.pool_names
        for i, pool in enumerate(self.node_pools):
            pool_key = f"{key}.nodePools[{i}]"
            if names.count(pool.name) > 1:
                yield f"{pool_key}.name: {json.dumps(pool.name)} is used by more than one pool; names must be unique"
            yield from pool.problems(pool_key, self.provider)
            if pool.gpu_sharing and self.target in ("aks", "existing") and not self.nvidia_device_plugin:
                yield (f"{pool_key}.gpuSharing: the platform's NVIDIA device plugin shares the GPUs, and "
                       f"{key}.nvidiaDevicePlugin is false; set it true (or share GPUs with a plugin of your own and "
                       "remove gpuSharing)")
