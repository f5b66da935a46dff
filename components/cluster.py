"""The Pulumi cluster component: the kubernetes Provider every other component deploys through and,
per node pool, how a pod lands there. (The local cluster itself, its processes and nodes, is the
cluster manager in cluster/localcluster/; this component only points at it.)

The backend follows `cluster.provider`:
- kwok: the local cluster with simulated nodes (`make up STACK=kwok`); each pool becomes fake Node
  objects with the pool's labels, taints and capacity, GPUs included, so the real scheduler places
  pods as it would on a real GPU pool.
- local: the same local cluster with real nodes, one per pool (`make up`, the dev stack; `bin/cluster
  up --real` starts them); pods run in containers there, on volumes from `local-path`, and GPU
  nodes run a simulated device plugin of their own.
- render: written as YAML by the provider instead of applied: what an existing cluster gets
  (`renderAs: existing`, the default), what the local cluster with real nodes gets (`renderAs:
  local`), or the kwok objects (`renderAs: kwok`).
- existing: any cluster from a kubeconfig; the pools describe pools that already exist.
- aks: an Azure resource group, managed cluster and one agent pool per node pool.
On real GPU backends (aks, existing and its rendering) the NVIDIA device plugin runs on the GPU pools.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.k8s import (
    CAPACITY_ANNOTATION,
    GPU_RESOURCE,
    KWOK_NODE_ANNOTATION,
    POOL_LABEL,
    app_labels,
    restricted,
)
from stacks.cluster import ClusterSettings, NodePool
from stacks.images import ImagesSettings
from stacks.values import Taint

@dataclass(frozen=True)
class Scheduling:
    """What a pod spec needs to land on a pool: node selector, tolerations and affinity."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    affinity: dict[str, Any] | None = None

    def pod_spec(self) -> dict[str, Any]:
        """The fields to merge into a PodSpec (camelCase, as the Kubernetes API spells them)."""
        spec: dict[str, Any] = {}
        if self.node_selector:
            spec["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            spec["tolerations"] = [dict(t) for t in self.tolerations]
        if self.affinity:
            spec["affinity"] = self.affinity
        return spec


def toleration(taint: Taint) -> dict[str, str]:
    if taint.value is None:
        return {"key": taint.key, "operator": "Exists", "effect": taint.effect}
    return {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}


def aks_network_profile(engine: str) -> dict[str, str]:
    """The ManagedCluster's networkProfile for a NetworkPolicy engine.

    AKS enforces NetworkPolicies only with an engine chosen when the cluster is created (changing
    it later replaces the cluster); without one, the hub's and the job's policies are accepted
    and ignored. Cilium and Calico run on Azure CNI Overlay (pod addresses from a private range,
    not the VNet); Azure Network Policy Manager needs Azure CNI with VNet addresses.
    """
    if engine == "cilium":
        return {"network_plugin": "azure", "network_plugin_mode": "overlay", "network_dataplane": "cilium", "network_policy": "cilium"}
    if engine == "calico":
        return {"network_plugin": "azure", "network_plugin_mode": "overlay", "network_policy": "calico"}
    if engine == "azure":
        return {"network_plugin": "azure", "network_policy": "azure"}
    return {"network_plugin": "azure", "network_plugin_mode": "overlay", "network_policy": "none"}


@dataclass(frozen=True)
class ClusterArgs:
    settings: ClusterSettings
    images: ImagesSettings = field(default_factory=ImagesSettings)  # the device plugin's


class Cluster(pulumi.ComponentResource):
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None
    managed_cluster: Any  # the AKS ManagedCluster on aks, else None

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:Cluster", name, None, opts)
        self._settings = args.settings
        self._images = args.images
        self._name = name
        settings = args.settings
        self.kubeconfig = None
        self.managed_cluster = None
        self.resource_group_name: pulumi.Input[str] | None = None

        if settings.provider == "aks":
            self.provider = self._aks()
        elif settings.provider == "render":
            self.provider = k8s.Provider(
                f"{name}-render",
                render_yaml_to_directory=settings.render_dir,
                opts=pulumi.ResourceOptions(parent=self),
            )
        else:
            self.provider = k8s.Provider(
                f"{name}-k8s",
                kubeconfig=settings.kubeconfig,
                context=settings.context,
                opts=pulumi.ResourceOptions(parent=self),
            )

        child = pulumi.ResourceOptions(parent=self, provider=self.provider)
        if settings.simulated:
            for pool in settings.node_pools:
                self._simulated_nodes(pool, child)
        # The local cluster's GPU nodes advertise their simulated GPUs themselves (the cluster
        # manager runs a device plugin beside each kubelet); NVIDIA's would find no GPU there.
        elif settings.nvidia_device_plugin and self.gpu_pools and settings.target != "local":
            self._device_plugin(child)

        self.register_outputs({"kubeconfig": self.kubeconfig})

    @property
    def settings(self) -> ClusterSettings:
        return self._settings

    @property
    def simulated(self) -> bool:
        """A kwok cluster (or its rendering): nodes and pods are simulated, nothing provisions volumes."""
        return self._settings.simulated

    def volume_for(
        self, claim: str, namespace: str, size: str, access_modes: list[str], opts: pulumi.ResourceOptions
    ) -> None:
        """On a simulated cluster, a PersistentVolume pre-bound to `claim`; real clusters provision their own."""
        if not self.simulated:
            return
        k8s.core.v1.PersistentVolume(
            f"{self._name}-pv-{namespace}-{claim}",
            metadata={"name": f"{namespace}-{claim}", "labels": {POOL_LABEL: "simulated"}},
            spec={
                "capacity": {"storage": size},
                "accessModes": access_modes,
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "",
                "claimRef": {"namespace": namespace, "name": claim},
                "hostPath": {"path": f"/var/lib/mlplatform/{namespace}/{claim}", "type": "DirectoryOrCreate"},
            },
            opts=opts,
        )

    # --- scheduling ----------------------------------------------------------------------------

    @property
    def gpu_pools(self) -> tuple[NodePool, ...]:
        return tuple(p for p in self._settings.node_pools if p.gpus_per_node)

    def pool_selector(self, pool: NodePool) -> dict[str, str]:
        if self._settings.real_nodes == "existing":
            # An existing cluster's pools are selected by their own labels; a rendered pool without
            # any is expected to carry the platform's pool label.
            return dict(pool.labels) or {POOL_LABEL: pool.name}
        return {POOL_LABEL: pool.name}

    def scheduling(self, pool_name: str) -> Scheduling:
        pool = next(p for p in self._settings.node_pools if p.name == pool_name)
        return Scheduling(
            node_selector=self.pool_selector(pool),
            tolerations=tuple(toleration(t) for t in pool.taints),
        )

    def scheduling_for_gpu_type(self, gpu_type: str) -> Scheduling:
        """Where a pod asking for GPUs of `gpu_type` goes: any pool of that type (`nodePools[].gpuType`).

        One pool: its own terms. Several: node affinity with one term per pool (terms are ORed, so
        the scheduler picks a node whose pool holds the count asked for) and every pool's tolerations.
        """
        pools = self._settings.gpu_types().get(gpu_type)
        if not pools:
            raise ValueError(f"Cluster.scheduling_for_gpu_type: no GPU pool has gpuType {gpu_type!r}")
        if len(pools) == 1:
            return self.scheduling(pools[0].name)
        terms = [
            {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in self.pool_selector(p).items()]}
            for p in pools
        ]
        tolerations: list[dict[str, str]] = []
        for pool in pools:
            tolerations += [t for t in map(toleration, pool.taints) if t not in tolerations]
        return Scheduling(
            tolerations=tuple(tolerations),
            affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}},
        )

    def scheduling_for(self, gpus: int, pool_name: str | None = None) -> Scheduling:
        """Where a pod asking for `gpus` GPUs goes: the pool `ClusterSettings.pool_for` picks.

        With no pool without GPUs, CPU pods are kept off GPU nodes by affinity, so a CPU pod never
        holds a GPU node.
        """
        pool = self._settings.pool_for(gpus, pool_name)
        if pool is not None:
            return self.scheduling(pool.name)
        if gpus:
            raise ValueError(f"Cluster.scheduling_for: no node pool has {gpus} GPUs per node")
        if not self.gpu_pools or self._settings.real_nodes == "existing":
            return Scheduling()
        keep_off = {
            "key": POOL_LABEL,
            "operator": "NotIn",
            "values": [p.name for p in self.gpu_pools],
        }
        return Scheduling(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [keep_off]}]
                    }
                }
            }
        )

    # --- backends ------------------------------------------------------------------------------

    def _simulated_nodes(self, pool: NodePool, opts: pulumi.ResourceOptions) -> None:
        capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.max_pods)}
        if pool.gpus_per_node:
            capacity[GPU_RESOURCE] = str(pool.gpus_per_node)
        for index in range(pool.node_count):
            node_name = f"{pool.name}-{index}"
            k8s.core.v1.Node(
                f"{self._name}-node-{node_name}",
                metadata={
                    "name": node_name,
                    "labels": {
                        **pool.labels,
                        POOL_LABEL: pool.name,
                        "type": "kwok",
                        "kubernetes.io/hostname": node_name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                    "annotations": {
                        KWOK_NODE_ANNOTATION: "fake",
                        CAPACITY_ANNOTATION: json.dumps(capacity, sort_keys=True),
                    },
                },
                spec={"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in pool.taints]},
                # Capacity is read once when kwok initialises the node; a change needs a new node.
                opts=pulumi.ResourceOptions.merge(
                    opts, pulumi.ResourceOptions(replace_on_changes=["metadata.annotations"])
                ),
            )

    def _aks(self) -> k8s.Provider:
        from pulumi_azure_native import containerservice, resources

        settings = self._settings
        parent = pulumi.ResourceOptions(parent=self)
        if settings.network_policy == "none":
            pulumi.log.warn(
                "cluster.networkPolicy is none: the hub's and the job's NetworkPolicies will be accepted and not "
                "enforced (user isolation and the cloud-metadata block included)",
                resource=self,
            )
        if settings.resource_group:
            group_name: pulumi.Input[str] = settings.resource_group
        else:
            group = resources.ResourceGroup(f"{self._name}-rg", location=settings.location, opts=parent)
            group_name = group.name
        managed = containerservice.ManagedCluster(
            f"{self._name}-aks",
            resource_group_name=group_name,
            location=settings.location,
            dns_prefix=self._name,
            kubernetes_version=settings.kubernetes_version,
            enable_rbac=True,
            identity={"type": containerservice.ResourceIdentityType.SYSTEM_ASSIGNED},
            network_profile=aks_network_profile(settings.network_policy),
            agent_pool_profiles=[
                {
                    "name": "system",
                    "mode": containerservice.AgentPoolMode.SYSTEM,
                    "vm_size": settings.system_pool_vm_size,
                    "count": settings.system_pool_count,
                    "os_type": containerservice.OSType.LINUX,
                    "type": containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
                }
            ],
            # The further pools are AgentPool resources of their own; without this the cluster
            # resource would try to remove them on its next update.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["agentPoolProfiles"]),
        )
        self.managed_cluster = managed
        self.resource_group_name = group_name
        pools = []
        for pool in settings.node_pools:
            scaling: dict[str, Any] = (
                {"enable_auto_scaling": True, "min_count": pool.min_count, "max_count": pool.max_count}
                if pool.autoscaled
                else {"count": pool.node_count}
            )
            pools.append(
                containerservice.AgentPool(
                    f"{self._name}-pool-{pool.name}",
                    agent_pool_name=pool.name,
                    resource_group_name=group_name,
                    resource_name_=managed.name,
                    mode=containerservice.AgentPoolMode.USER,
                    os_type=containerservice.OSType.LINUX,
                    type=containerservice.AgentPoolType.VIRTUAL_MACHINE_SCALE_SETS,
                    vm_size=pool.vm_size,
                    max_pods=pool.max_pods,
                    node_labels={**pool.labels, POOL_LABEL: pool.name},
                    node_taints=[str(t) for t in pool.taints],
                    **scaling,
                    opts=parent,
                )
            )
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=group_name, resource_name=managed.name
        )
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs[0].value.apply(lambda encoded: base64.b64decode(encoded).decode())
        )
        return k8s.Provider(
            f"{self._name}-k8s",
            kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=pools),
        )

    def _device_plugin(self, opts: pulumi.ResourceOptions) -> None:
        """The NVIDIA device plugin on GPU pools only, tolerating their taints."""
        labels = app_labels("nvidia-device-plugin", "device-plugin")
        terms = [
            {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in self.pool_selector(p).items()]}
            for p in self.gpu_pools
        ]
        tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        for pool in self.gpu_pools:
            tolerations += [toleration(t) for t in pool.taints if toleration(t) not in tolerations]
        pod_spec: dict[str, Any] = {
            "priorityClassName": "system-node-critical",
            "tolerations": tolerations,
            "containers": [
                {
                    "name": "nvidia-device-plugin",
                    "image": self._images.nvidia_device_plugin,
                    "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                    "securityContext": restricted(),
                    "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                }
            ],
            "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
        }
        if self._images.pull_secrets:
            pod_spec["imagePullSecrets"] = self._images.image_pull_secrets()
        if all(term["matchExpressions"] for term in terms):
            pod_spec["affinity"] = {
                "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
            }
        k8s.apps.v1.DaemonSet(
            f"{self._name}-nvidia-device-plugin",
            metadata={"name": "nvidia-device-plugin", "namespace": "kube-system", "labels": labels},
            spec={
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            },
            opts=opts,
        )
