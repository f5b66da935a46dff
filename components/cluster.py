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
On real GPU backends (aks, existing and its rendering) the NVIDIA device plugin runs on the GPU pools;
where a pool shares its GPUs (`gpuSharing`), the plugin reads one named config per pool from a
ConfigMap, chosen on each node by the label `nvidia.com/device-plugin.config` (aks sets it on the
pool's nodes; on an existing cluster the team labels them, docs/aks-and-existing-clusters.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

import yaml

from components.k8s import (
    CAPACITY_ANNOTATION,
    DEVICE_PLUGIN_CONFIG_LABEL,
    GPU_RESOURCE,
    KWOK_NODE_ANNOTATION,
    POOL_LABEL,
    app_labels,
    restricted,
)
from stacks.cluster import WHOLE_GPUS_CONFIG, ClusterSettings, NodePool
from stacks.images import ImagesSettings
from stacks.values import Taint

# The device plugin's config for a node without the config label. A pool's name is a DNS label,
# which has no dot, so no pool's config has this name.
WHOLE_GPUS_CONFIG_NAME = "mlplatform.whole-gpus"
CONFIGS_CHECKSUM_ANNOTATION = "mlplatform.dev/device-plugin-configs-sha256"


@dataclass(frozen=True)
class Scheduling:
    """What a pod spec needs to land on a pool: node selector, tolerations and affinity."""

    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, str], ...] = ()
    affinity: dict[str, Any] | None = None
    # The extended resource the pool's GPUs are asked for by: `nvidia.com/gpu`, or the shared
    # name where the pool's time-slicing renames it.
    gpu_resource: str = GPU_RESOURCE

    def gpu_limits(self, gpus: int) -> dict[str, str]:
        """A container's limits for `gpus` GPUs on the pool (extended resources go in limits;
        Kubernetes sets the request equal)."""
        return {self.gpu_resource: str(gpus)} if gpus else {}

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


# Where the API server is, for a cluster that cannot be asked (one rendered to files, or an AKS
# cluster not made yet): any address on the ports API servers serve on (AKS and most managed
# clusters 443, kubeadm 6443). Egress rules match after kube-proxy has translated the `kubernetes`
# Service's address, so a rule must name the API server's own address and port, not the Service's.
API_SERVER_PORTS = (443, 6443)
ANY_API_SERVER = [{"ports": [{"protocol": "TCP", "port": port} for port in API_SERVER_PORTS]}]
# The local cluster's API server listens on a port of this range (cluster/localcluster/ports.py,
# FIRST_PORT..LAST_PORT; a unit test keeps the two equal): what a rendering for it (renderAs local)
# allows, not knowing which one.
LOCAL_API_PORTS = (20000, 29999)
# The EndpointSlice of the `kubernetes` Service in `default`: the API server's advertised
# addresses and port, which kube-apiserver keeps current itself.
API_SERVER_ENDPOINTS = "default/kubernetes"


def api_server_rules(slice_endpoints: Any, slice_ports: Any) -> list[dict[str, Any]]:
    """NetworkPolicy egress rules to exactly the API server's endpoints (IPv4 /32, IPv6 /128) and port."""
    addresses = sorted({a for e in slice_endpoints or [] for a in (_field(e, "addresses") or [])})
    ports = sorted({_field(p, "port") for p in slice_ports or [] if _field(p, "port")})
    if not addresses or not ports:
        raise ValueError(f"the API server's EndpointSlice {API_SERVER_ENDPOINTS} lists no address or port")
    return [{
        "to": [{"ipBlock": {"cidr": f"{a}/{128 if ':' in a else 32}"}} for a in addresses],
        "ports": [{"protocol": "TCP", "port": port} for port in ports],
    }]


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def simulated_nodes(pool: NodePool) -> list[dict[str, Any]]:
    """The kwok Nodes (metadata and spec) of a simulated pool: the pool's labels and taints, and its
    capacity (GPUs as the pool advertises them) in the annotation kwok's node-initialize stage reads."""
    capacity = {"cpu": pool.cpu, "memory": pool.memory, "pods": str(pool.max_pods)}
    if pool.gpus_per_node:
        capacity[pool.gpu_resource] = str(pool.gpus_advertised)
    nodes = []
    for index in range(pool.node_count):
        node_name = f"{pool.name}-{index}"
        nodes.append({
            "metadata": {
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
            "spec": {"taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in pool.taints]},
        })
    return nodes


class Placement:
    """Where each node pool's pods land, from the cluster's settings alone (no resource is
    registered): the node selectors, tolerations and affinity of `Cluster.scheduling_for`, also
    used outside a Pulumi program (bench/bench_kueue.py places its pods and flavors with it)."""

    def __init__(self, settings: ClusterSettings) -> None:
        self._settings = settings

    @property
    def settings(self) -> ClusterSettings:
        return self._settings

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
            gpu_resource=pool.gpu_resource,
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
            # The same for every pool of the type (ClusterSettings.gpu_type_problem refuses otherwise).
            gpu_resource=pools[0].gpu_resource,
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


@dataclass(frozen=True)
class ClusterArgs:
    settings: ClusterSettings
    images: ImagesSettings = field(default_factory=ImagesSettings)  # the device plugin's


class Cluster(pulumi.ComponentResource, Placement):
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str] | None
    managed_cluster: Any  # the AKS ManagedCluster on aks, else None

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:cluster:Cluster", name, None, opts)
        Placement.__init__(self, args.settings)
        self._images = args.images
        self._name = name
        settings = args.settings
        self.kubeconfig = None
        self.managed_cluster = None
        self.resource_group_name: pulumi.Input[str] | None = None
        self._api_server_egress: pulumi.Output[list[dict[str, Any]]] | None = None

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

    def api_server_egress(self) -> pulumi.Output[list[dict[str, Any]]]:
        """NetworkPolicy egress rules that let a pod reach the Kubernetes API, and nothing else.

        A cluster the program talks to (local, kwok, existing) is asked: its `kubernetes`
        EndpointSlice names the API server's addresses and port (read at each `pulumi up`; a moved
        API server needs one more `up`). A rendered stack or an AKS cluster that `up` is about to
        create cannot be asked, and gets ANY_API_SERVER (AKS's API server has a public address on
        443 unless it is a private cluster); a rendering for the local cluster, its port range.
        """
        if self._api_server_egress is None:
            if self._settings.provider == "render" and self._settings.target == "local":
                first, last = LOCAL_API_PORTS
                self._api_server_egress = pulumi.Output.from_input(
                    [{"ports": [{"protocol": "TCP", "port": first, "endPort": last}]}]
                )
            elif self._settings.provider in ("render", "aks"):
                self._api_server_egress = pulumi.Output.from_input(ANY_API_SERVER)
            else:
                endpoints = k8s.discovery.v1.EndpointSlice.get(
                    f"{self._name}-api-server-endpoints", API_SERVER_ENDPOINTS,
                    opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
                )
                self._api_server_egress = pulumi.Output.all(endpoints.endpoints, endpoints.ports).apply(
                    lambda found: api_server_rules(*found)
                )
        return self._api_server_egress

    # --- backends ------------------------------------------------------------------------------

    def _simulated_nodes(self, pool: NodePool, opts: pulumi.ResourceOptions) -> None:
        for node in simulated_nodes(pool):
            k8s.core.v1.Node(
                f"{self._name}-node-{node['metadata']['name']}",
                metadata=node["metadata"],
                spec=node["spec"],
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
                    node_labels={**pool.labels, POOL_LABEL: pool.name, **self.device_plugin_label(pool)},
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

    @property
    def shares_gpus(self) -> bool:
        """Whether a GPU pool shares its GPUs, so that the device plugin needs a config per pool."""
        return any(p.gpu_sharing for p in self.gpu_pools)

    def device_plugin_label(self, pool: NodePool) -> dict[str, str]:
        """The node label that picks the pool's config in the device plugin's ConfigMap (GPU pools,
        when some pool shares its GPUs)."""
        return {DEVICE_PLUGIN_CONFIG_LABEL: pool.name} if pool.gpus_per_node and self.shares_gpus else {}

    def device_plugin_configs(self) -> dict[str, str]:
        """The device plugin's ConfigMap data: one named config per GPU pool (NVIDIA's `version: v1`
        format), keyed by the pool's name, which is also the value of the node label; and the
        default, whole GPUs, for a node without the label."""
        configs = {pool.name: pool.plugin_config() for pool in self.gpu_pools}
        configs[WHOLE_GPUS_CONFIG_NAME] = dict(WHOLE_GPUS_CONFIG)
        return {name: yaml.safe_dump(config, sort_keys=False) for name, config in configs.items()}

    def _device_plugin(self, opts: pulumi.ResourceOptions) -> None:
        """The NVIDIA device plugin on GPU pools only, tolerating their taints.

        Where a pool shares its GPUs, the plugin runs as NVIDIA's chart runs it with a config map:
        its config-manager (in the same image) reads the node's `nvidia.com/device-plugin.config`
        label, puts the named config where the plugin reads it, and on a change of the label
        signals the plugin to reload; so one DaemonSet serves pools configured differently.
        """
        labels = app_labels("nvidia-device-plugin", "device-plugin")
        terms = [
            {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in self.pool_selector(p).items()]}
            for p in self.gpu_pools
        ]
        tolerations = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
        for pool in self.gpu_pools:
            tolerations += [toleration(t) for t in pool.taints if toleration(t) not in tolerations]
        plugin: dict[str, Any] = {
            "name": "nvidia-device-plugin",
            "image": self._images.nvidia_device_plugin,
            "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
            "securityContext": restricted(),
            "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
        }
        pod_spec: dict[str, Any] = {
            "priorityClassName": "system-node-critical",
            "tolerations": tolerations,
            "containers": [plugin],
            "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
        }
        template_meta: dict[str, Any] = {"labels": labels}
        if self.shares_gpus:
            self._device_plugin_configs(pod_spec, plugin, labels, opts)
            # The config-manager re-reads a config when the node's label changes, not when the
            # ConfigMap does: a changed config rolls the pods, which then start with it.
            configs = json.dumps(self.device_plugin_configs(), sort_keys=True)
            template_meta["annotations"] = {CONFIGS_CHECKSUM_ANNOTATION: hashlib.sha256(configs.encode()).hexdigest()}
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
                "template": {"metadata": template_meta, "spec": pod_spec},
            },
            opts=opts,
        )

    def _device_plugin_configs(
        self, pod_spec: dict[str, Any], plugin: dict[str, Any], labels: dict[str, str], opts: pulumi.ResourceOptions
    ) -> None:
        """The per-pool configs, and what the plugin's pod needs to pick one by its node's label:
        the config-manager before it (once) and beside it (on label changes), reading its own Node."""
        name = "nvidia-device-plugin"
        k8s.core.v1.ConfigMap(
            f"{self._name}-nvidia-device-plugin-configs",
            metadata={"name": f"{name}-configs", "namespace": "kube-system", "labels": labels},
            data=self.device_plugin_configs(),
            opts=opts,
        )
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-nvidia-device-plugin-sa",
            metadata={"name": name, "namespace": "kube-system", "labels": labels},
            automount_service_account_token=True,
            opts=opts,
        )
        # Nodes are cluster-scoped: reading its own node's label needs a ClusterRole; read-only.
        role = k8s.rbac.v1.ClusterRole(
            f"{self._name}-nvidia-device-plugin-nodes",
            metadata={"name": f"mlplatform-{name}-nodes", "labels": labels},
            rules=[{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}],
            opts=opts,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{self._name}-nvidia-device-plugin-nodes",
            metadata={"name": f"mlplatform-{name}-nodes", "labels": labels},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": "kube-system"}],
            opts=opts,
        )
        # A node without the label gets whole GPUs, never another pool's sharing.
        default = WHOLE_GPUS_CONFIG_NAME
        def config_manager(container: str, oneshot: bool) -> dict[str, Any]:
            env = {
                "ONESHOT": str(oneshot).lower(),
                "KUBECONFIG": "",
                "NODE_LABEL": DEVICE_PLUGIN_CONFIG_LABEL,
                "CONFIG_FILE_SRCDIR": "/available-configs",
                "CONFIG_FILE_DST": "/config/config.yaml",
                "DEFAULT_CONFIG": default,
                "FALLBACK_STRATEGIES": "named",
                "SEND_SIGNAL": str(not oneshot).lower(),
                "SIGNAL": "" if oneshot else "1",  # SIGHUP: the plugin reloads its config
                "PROCESS_TO_SIGNAL": "" if oneshot else "nvidia-device-plugin",
            }
            return {
                "name": container,
                "image": self._images.nvidia_device_plugin,
                "command": ["config-manager"],
                "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
                + [{"name": k, "value": v} for k, v in env.items()],
                "securityContext": restricted(),
                "volumeMounts": [
                    {"name": "available-configs", "mountPath": "/available-configs", "readOnly": True},
                    {"name": "config", "mountPath": "/config"},
                ],
            }

        pod_spec["serviceAccountName"] = name
        # The process the sidecar signals is found by this name.
        plugin["command"] = ["nvidia-device-plugin"]
        # The sidecar signals the plugin's process, in another container of the pod.
        pod_spec["shareProcessNamespace"] = True
        pod_spec["initContainers"] = [config_manager("nvidia-device-plugin-init", oneshot=True)]
        pod_spec["containers"].insert(0, config_manager("nvidia-device-plugin-sidecar", oneshot=False))
        plugin["env"].append({"name": "CONFIG_FILE", "value": "/config/config.yaml"})
        plugin["volumeMounts"] += [
            {"name": "available-configs", "mountPath": "/available-configs", "readOnly": True},
            {"name": "config", "mountPath": "/config"},
        ]
        pod_spec["volumes"] += [
            {"name": "available-configs", "configMap": {"name": f"{name}-configs"}},
            {"name": "config", "emptyDir": {}},
        ]
