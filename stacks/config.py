"""The stack configuration of mlplatform, read once into typed, frozen settings.

Keys live in the project namespace `mlplatform` as three structured values, `cluster`,
`jupyterhub` and `mnist`, set with `pulumi config set --path`. The shape (types, allowed
values, unknown keys) is checked by pydantic; the rules that tie several keys together are
checked afterwards by each settings class's `problems`, beside the settings it checks. Either
way the result is one ConfigError whose lines each name the key, the value and what is allowed,
raised before any resource is registered. Each field's description is the config reference:
`make docs` writes it into Pulumi.yaml and the README.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlparse

from kubernetes.utils import parse_quantity
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
)
from pydantic.alias_generators import to_camel

import pulumi
from cluster.localcluster.capacity import EVICTION_HARD, KUBE_RESERVED, SYSTEM_RESERVED, machine_capacity
from trainer.flags import DEFAULT_DATA_URL, SAMPLE_DATA_URL
from vocab.tfjob_api import COORDINATORS, REPLICA_TYPES, CleanPodPolicy, RestartPolicy, replica_problems
from vocab.versions import (
    CONFIGURABLE_HTTP_PROXY_IMAGE,
    JUPYTERHUB_HUB_IMAGE,
    NVIDIA_DEVICE_PLUGIN_IMAGE,
    REPO,
    TENSORFLOW_GPU_IMAGE,
    TENSORFLOW_IMAGE,
    TRAINING_OPERATOR_IMAGE,
    read_env_file,
)
from stacks import azure_names

NAMESPACE = "mlplatform"
# The kubeconfig bin/cluster writes for the local cluster: cluster/local.env's default, or where
# MLPLATFORM_KUBECONFIG points (the variable bin/cluster and bin/training-operator honour too).
KUBECONFIG_ENV = "MLPLATFORM_KUBECONFIG"
LOCAL_KUBECONFIG = read_env_file(REPO / "cluster" / "local.env")["LOCAL_KUBECONFIG"]

ServiceType = Literal["ClusterIP", "LoadBalancer", "NodePort"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
TAINT_EFFECTS: tuple[str, ...] = get_args(TaintEffect)
ClusterProvider = Literal["kwok", "local", "existing", "aks", "render"]
# The providers whose cluster is the one `bin/cluster` runs on this machine (kubeconfig default).
LOCAL_PROVIDERS = ("kwok", "local")
NetworkPolicyEngine = Literal["cilium", "calico", "azure", "none"]

AuthType = Literal["dummy", "native", "github", "azuread"]
OAUTH_TYPES = ("github", "azuread")
HttpsType = Literal["secret", "letsencrypt", "selfSigned", "offload"]
LETS_ENCRYPT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
# Where oauthenticator's callback handler answers, below the hub's prefix.
OAUTH_CALLBACK_PATH = "/hub/oauth_callback"


class ConfigError(pulumi.RunError):
    """A user mistake in stack config. RunError makes Pulumi print the message without a traceback."""


# --- value types -----------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError("must be a DNS-1035 label: lowercase letters, digits and '-', starting with a letter, at most 63 characters")
    return value


def _quantity(value: Any) -> str:
    text = str(value)
    try:
        amount = parse_quantity(text)
    except ValueError:
        raise ValueError("must be a Kubernetes quantity such as 500m, 2, 512Mi or 4Gi") from None
    if amount < 0:
        raise ValueError("must not be negative")
    return text


def _pinned_image(value: str) -> str:
    name, _, tag = value.rpartition(":")
    if "@sha256:" in value:
        return value
    if not name or "/" in tag or not tag or tag == "latest":
        raise ValueError("must be pinned by tag or digest (repository:tag, not :latest)")
    return value


_REGISTRY = re.compile(r"^(?P<host>[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?)(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


def _registry(value: str) -> str:
    match = _REGISTRY.match(value)
    host = match.group("host") if match else ""
    # Docker's rule for telling a registry host from the first part of an image path.
    if not match or not ("." in host or ":" in host or host == "localhost"):
        raise ValueError(
            "must be a registry host with an optional path, such as mirror.example.com or "
            "registry.example.com:5000/upstream (no scheme, no tag)"
        )
    return value


_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _hostname(value: str) -> str:
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise ValueError("must be a DNS name such as notebooks.example.com: lowercase letters, digits, '-' and '.', no scheme or port")
    return value


def _dns_subdomain(value: str) -> str:
    """An object name such as a Secret's: the DNS-1123 subdomain rule (the host name rule, read as such)."""
    if len(value) > 253 or not _HOSTNAME.match(value):
        raise ValueError("must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253 characters")
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("must be a CIDR block such as 203.0.113.0/24") from None
    return value


def _data_url(value: str) -> str:
    url = urlparse(value)
    if not (url.scheme in ("http", "https") and url.netloc) and not (url.scheme == "file" and not url.netloc and url.path.startswith("/")):
        raise ValueError("must be an http(s):// URL or a file:///absolute/path in the trainer image")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DataUrl = Annotated[str, AfterValidator(_data_url)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Hostname = Annotated[str, AfterValidator(_hostname)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]
Registry = Annotated[str, AfterValidator(_registry)]
Count = Annotated[int, Field(ge=0)]


class Taint(BaseModel):
    """A node taint written `key=value:Effect` (or `key:Effect`)."""

    model_config = ConfigDict(frozen=True)
    key: str
    value: str | None
    effect: str

    @classmethod
    def parse(cls, text: Any) -> Taint:
        if isinstance(text, Taint):
            return text
        if not isinstance(text, str):
            raise ValueError("must be a string key=value:Effect")
        spec, _, effect = text.rpartition(":")
        key, has_value, value = spec.partition("=")
        if (
            not spec
            or effect not in TAINT_EFFECTS
            or not _QUALIFIED_NAME.match(key)
            or (has_value and not (value and _LABEL_VALUE.match(value)))
        ):
            raise ValueError(f"must be key=value:Effect or key:Effect with Effect one of {', '.join(TAINT_EFFECTS)}")
        return cls(key=key, value=value if has_value else None, effect=effect)

    def __str__(self) -> str:
        value = f"={self.value}" if self.value is not None else ""
        return f"{self.key}{value}:{self.effect}"


ParsedTaint = Annotated[Taint, BeforeValidator(Taint.parse)]


class Settings(BaseModel):
    """Base of every settings object: frozen, camelCase keys as in stack config, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


def _only_with(key: str, what: str, actual: str) -> str:
    return f"{key}: only used with {what}, not {actual}"


def _source_ranges_problems(key: str, service_type: str, ranges: tuple[str, ...]) -> Iterator[str]:
    if ranges and service_type != "LoadBalancer":
        yield _only_with(f"{key}.loadBalancerSourceRanges", "serviceType LoadBalancer", service_type)


class Resources(Settings):
    """A container's CPU and memory: requests (what the scheduler reserves) and limits."""

    cpu_request: Quantity | None = Field(None, description="CPU reserved for it")
    memory_request: Quantity | None = Field(None, description="memory reserved for it")
    cpu_limit: Quantity | None = Field(None, description="CPU it may use at most (throttled above)")
    memory_limit: Quantity | None = Field(None, description="memory it may use at most (killed above)")

    def manifest(self) -> dict[str, dict[str, str]]:
        """A container's `resources`, camelCase as the API spells it."""
        found: dict[str, dict[str, str]] = {}
        for kind in ("requests", "limits"):
            values = {r: getattr(self, f"{r}_{kind[:-1]}") for r in ("cpu", "memory")}
            values = {r: v for r, v in values.items() if v is not None}
            if values:
                found[kind] = values
        return found

    def problems(self, key: str, node: NodeCapacity | None) -> Iterator[str]:
        """Requests above limits, and requests no node could hold (when `node`, its capacity, is known)."""
        for resource in ("cpu", "memory"):
            request, limit = getattr(self, f"{resource}_request"), getattr(self, f"{resource}_limit")
            if request and limit and parse_quantity(request) > parse_quantity(limit):
                yield f"{key}.{resource}Request: {request} must be <= {resource}Limit ({limit})"
            if node is not None:
                yield from node.problems(f"{key}.{resource}Request", resource, request)


def resources(**values: str) -> Any:
    """The type of a Resources setting that defaults to `values` (cpu_request="100m", ...).

    A value given in stack config is laid over the defaults, key by key, so that
    `pulumi config set --path mnist.resources.Worker.memoryLimit 8Gi` keeps the Worker's requests;
    `null` removes a default.
    """
    defaults = {to_camel(k): v for k, v in values.items()}

    def over_defaults(given: Any) -> Any:
        if isinstance(given, Mapping):
            return {**defaults, **{to_camel(str(k)): v for k, v in given.items()}}
        return given

    return Annotated[
        Resources,
        BeforeValidator(over_defaults),
        Field(default_factory=lambda: Resources(**values), json_schema_extra={"shown_default": _shown(values)}),
    ]


def _shown(values: Mapping[str, str]) -> str:
    return ", ".join(f"{to_camel(k)} {v}" for k, v in values.items())


# --- cluster ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allocatable:
    """What one node offers pods' requests: its status.allocatable cpu and memory."""

    cpu: str
    memory: str


@dataclass(frozen=True)
class NodeCapacity:
    """What a node of pool `pool` offers, and where the figure comes from (said in messages)."""

    pool: str
    allocatable: Allocatable
    origin: str = ""

    def problems(self, key: str, resource: str, request: str | None) -> Iterator[str]:
        """A request for `resource` that no node of the pool could ever hold."""
        capacity = getattr(self.allocatable, resource)
        if request and parse_quantity(request) > parse_quantity(capacity):
            yield f"{key}: {request} is more than a node of pool {self.pool} has ({resource} {_shown_quantity(capacity)}{self.origin})"


def _shown_quantity(value: str) -> str:
    """`value`, and in GiB too where it is memory in smaller units (`24581184Ki`), for a reader comparing it to `32Gi`."""
    size = parse_quantity(value)
    if value.endswith(("Ki", "Mi")) and size >= 2**30:
        return f"{value}, about {size / 2**30:.1f}Gi"
    return value


def local_allocatable(capacity: Mapping[str, str]) -> Allocatable:
    """What a real node of the local cluster offers pods, its status.capacity being `capacity`
    (machine_capacity's cpu, memory and hugetlb).

    The kubelet's sum: capacity less kubeReserved, systemReserved and the hard eviction threshold
    (a percentage is of the capacity), never below 0; memory less the huge pages as well.
    """
    found = {}
    for resource in ("cpu", "memory"):
        total = parse_quantity(capacity[resource])
        held = sum((parse_quantity(r.get(resource, "0")) for r in (KUBE_RESERVED, SYSTEM_RESERVED)), Decimal(0))
        if resource == "memory":
            threshold = EVICTION_HARD.get("memory.available", "0")
            held += total * Decimal(threshold[:-1]) / 100 if threshold.endswith("%") else parse_quantity(threshold)
            held += parse_quantity(capacity.get("hugetlb", "0"))
        found[resource] = max(total - held, Decimal(0))
    return Allocatable(cpu=_cpu_quantity(found["cpu"]), memory=_memory_quantity(found["memory"]))


def _cpu_quantity(cores: Decimal) -> str:
    return str(int(cores)) if cores == cores.to_integral_value() else f"{int(cores * 1000)}m"


def _memory_quantity(size: Decimal) -> str:
    """In KiB, as the kubelet shows memory."""
    return f"{int(size) // 1024}Ki" if size % 1024 == 0 else str(int(size))


def this_machine() -> Allocatable:
    """What each real node of a `local` cluster offers pods: this machine, less the kubelet's reservations."""
    return local_allocatable(machine_capacity())


# What a message says after a `local` pool's figure: where it comes from.
LOCAL_ORIGIN = ": this machine's allocatable, as each real node of cluster.provider local reports it"


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

    def problems(self, key: str, provider: str) -> Iterator[str]:
        if self.count is not None and self.autoscaled:
            yield f"{key}.count: set either count or minCount/maxCount, not both"
        if self.autoscaled and (self.min_count is None or self.max_count is None):
            yield f"{key}: autoscaling needs both minCount and maxCount"
        elif self.autoscaled and self.min_count > self.max_count:
            yield f"{key}.minCount: {self.min_count} must be <= maxCount ({self.max_count})"
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
        description="`kwok` (the local cluster `make up` starts, its nodes simulated by kwok), `local` (that "
        "cluster with real nodes, one per pool: `bin/cluster up --real`), `existing` (any cluster), `aks` (Azure), "
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
            return next((p for p in self.node_pools if p.gpus_per_node >= gpus), None)
        if pool_name:
            return next((p for p in self.node_pools if p.name == pool_name), None)
        return next((p for p in self.node_pools if not p.gpus_per_node), None)

    def node_capacity(self, gpus: int, pool_name: str | None = None) -> NodeCapacity | None:
        """What a node of the pool a pod lands on offers, which its requests must fit, where that is known."""
        pool = self.pool_for(gpus, pool_name)
        if pool is None or not self.capacity_known:
            return None
        if self.simulated:
            return NodeCapacity(pool.name, Allocatable(cpu=pool.cpu, memory=pool.memory))
        return NodeCapacity(pool.name, self._machine_node, LOCAL_ORIGIN)

    def pool_key(self, key: str, pool: NodePool) -> str:
        return f"{key}.nodePools[{self.node_pools.index(pool)}]"

    def gpu_problem(self, key: str, gpus: int) -> str | None:
        """Why `gpus` GPUs per pod cannot be placed on any pool, or None when they can."""
        gpu_pools = {p.name: p.gpus_per_node for p in self.node_pools if p.gpus_per_node}
        if not gpus or any(n >= gpus for n in gpu_pools.values()):
            return None
        have = ", ".join(f"{n}={g}" for n, g in gpu_pools.items()) or "none"
        return f"{key}: {gpus} GPUs asked for, but no node pool has gpusPerNode >= {gpus} (GPU pools: {have})"

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


# --- jupyterhub ------------------------------------------------------------------------------


class Profile(Settings):
    name: Annotated[str, Field(min_length=1)] = Field(description="the choice's title on the spawn form")
    description: str = Field("", description="shown under the title, after the image and limits")
    image: PinnedImage = Field(description="the notebook image, pinned by tag or digest")
    cpu_guarantee: Quantity | None = Field(None, description="CPU the server is guaranteed (request)")
    cpu_limit: Quantity | None = Field(None, description="CPU the server may use at most")
    memory_guarantee: Quantity | None = Field(None, description="memory the server is guaranteed (request)")
    memory_limit: Quantity | None = Field(None, description="memory the server may use at most")
    gpus: Count = Field(0, description="`nvidia.com/gpu` for the server; it then runs on a GPU pool")
    default: bool = Field(False, description="preselected on the form (at most one profile)")

    @property
    def slug(self) -> str:
        """The spawn form's machine name for the profile: lowercase letters, digits and '-'."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "profile"

    def problems(self, key: str, cluster: ClusterSettings, user_pool: str | None) -> Iterator[str]:
        node = cluster.node_capacity(self.gpus, None if self.gpus else user_pool)
        for resource in ("cpu", "memory"):
            guarantee = getattr(self, f"{resource}_guarantee")
            limit = getattr(self, f"{resource}_limit")
            if guarantee and limit and parse_quantity(guarantee) > parse_quantity(limit):
                yield f"{key}.{resource}Guarantee: {guarantee} must be <= {resource}Limit ({limit})"
            if node is not None:
                yield from node.problems(f"{key}.{resource}Guarantee", resource, guarantee)
        gpu_problem = cluster.gpu_problem(f"{key}.gpus", self.gpus)
        if gpu_problem:
            yield gpu_problem


class Auth(Settings):
    type: AuthType = Field(
        "native",
        description="`native` (sign-up, approved by an admin), `github` or `azuread` (OAuth), "
        "`dummy` (anyone; refused unless serviceType is ClusterIP)",
    )
    admin_users: tuple[str, ...] = Field((), description="users who are hub admins")
    allowed_users: tuple[str, ...] = Field((), description="users allowed to sign in (OAuth: besides allowedOrganizations)")
    client_id: str | None = Field(None, description="OAuth: the application's client id")
    client_secret: str | None = Field(None, description="OAuth: the client secret, set with `pulumi config set --secret`")
    callback_url: str | None = Field(None, description="OAuth: `https://<hub address>/hub/oauth_callback`")
    tenant_id: str | None = Field(None, description="azuread: the tenant")
    allowed_organizations: tuple[str, ...] = Field((), description="github: organizations whose members may sign in")

    def problems(self, key: str, stored_as_secret: bool) -> Iterator[str]:
        if self.type in OAUTH_TYPES:
            needed = ("client_id", "client_secret", "callback_url") + (("tenant_id",) if self.type == "azuread" else ())
            for field in needed:
                if not getattr(self, field):
                    yield f"{key}.{to_camel(field)}: required with auth.type {self.type}"
        if self.client_secret and not stored_as_secret:
            yield (
                f"{key}.clientSecret: is stored in plain text; set it with "
                "`pulumi config set --secret --path jupyterhub.auth.clientSecret`"
            )


class Storage(Settings):
    size: Quantity = Field("10Gi", description="the claim's size")
    storage_class: str | None = Field(None, description="the StorageClass (default: the cluster's default class)")


class SharedStorage(Storage):
    """A ReadWriteMany volume, which a cluster's default class often cannot serve."""

    storage_class: str | None = Field(
        None,
        description="the StorageClass (default: one that serves ReadWriteMany, on aks `azurefile-csi`; "
        "required on an existing cluster)",
    )


# The https types each type-specific key is for: such a key set for another type is a mistake.
_HTTPS_TYPES_OF = {
    "secret_name": ("secret",),
    "contact_email": ("letsencrypt",),
    "acme_server": ("letsencrypt",),
    "install_cert_manager": ("letsencrypt",),
}


class Https(Settings):
    """TLS for the public proxy Service, in the spirit of Zero to JupyterHub's `proxy.https`."""

    type: HttpsType = Field(
        description="`secret` (an existing `kubernetes.io/tls` Secret), `letsencrypt` (a certificate from an ACME "
        "server through cert-manager), `selfSigned` (generated once and kept, for private and local use), "
        "`offload` (TLS ends at a load balancer or ingress in front of the Service)"
    )
    hosts: tuple[Hostname, ...] = Field(
        (),
        description="the hub's public DNS names; the first is its public URL `https://<host>/` (required with "
        "letsencrypt, which takes one, and offload; selfSigned: added to the certificate's names)",
    )
    secret_name: DnsSubdomain | None = Field(
        None, description="secret: the `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`) in the hub's namespace"
    )
    contact_email: str | None = Field(None, description="letsencrypt: the ACME account's e-mail address (required there)")
    acme_server: str = Field(
        LETS_ENCRYPT_SERVER,
        description="letsencrypt: the ACME directory (Let's Encrypt's staging server for trials: "
        "https://acme-staging-v02.api.letsencrypt.org/directory)",
    )
    install_cert_manager: bool = Field(
        False, description="letsencrypt: install cert-manager (the pinned upstream release) into the cluster"
    )

    @property
    def terminates_tls(self) -> bool:
        """Whether the proxy itself serves TLS (every type but offload)."""
        return self.type != "offload"

    @property
    def public_url(self) -> str | None:
        """The hub's address as browsers see it, when the config names one."""
        return f"https://{self.hosts[0]}/" if self.hosts else None

    def callback_hosts(self) -> tuple[str, ...]:
        """Hosts an OAuth callback may name: the public names, and for a self-signed hub its port-forward."""
        return self.hosts + (("localhost",) if self.type == "selfSigned" else ())

    def problems(self, key: str, service_type: str) -> Iterator[str]:
        for field, types in _HTTPS_TYPES_OF.items():
            if field in self.model_fields_set and self.type not in types:
                yield _only_with(f"{key}.{to_camel(field)}", f"https.type {' or '.join(types)}", self.type)
        if self.type == "secret" and not self.secret_name:
            yield f"{key}.secretName: required with https.type secret: the name of a kubernetes.io/tls Secret in the hub's namespace"
        if self.type in ("letsencrypt", "offload") and not self.hosts:
            what = "the names the certificate is for" if self.type == "letsencrypt" else "the public URL the hub is reached at"
            yield f"{key}.hosts: required with https.type {self.type}: {what}"
        if self.type == "letsencrypt":
            if len(self.hosts) > 1:
                # cert-manager runs one solver pod per name, and the proxy's one route for
                # challenges reaches any of them: each would answer for its own name only.
                yield (
                    f"{key}.hosts: letsencrypt takes one host here, not {len(self.hosts)}: the proxy routes every "
                    "ACME challenge to the same solver Service"
                )
            if not self.contact_email or "@" not in self.contact_email:
                yield f"{key}.contactEmail: {json.dumps(self.contact_email)} must be an e-mail address (required with https.type letsencrypt)"
            if not self.acme_server.startswith("https://"):
                yield f"{key}.acmeServer: {json.dumps(self.acme_server)} must be an https:// ACME directory URL"
            if service_type != "LoadBalancer":
                # The ACME server proves control of each host by fetching http://<host>/.well-known/...
                yield (
                    f"{key}.type: letsencrypt needs jupyterhub.serviceType LoadBalancer, not {service_type}: the ACME "
                    "server checks http://<host>/ on port 80; use secret, selfSigned or offload otherwise"
                )


DEFAULT_PROFILES = (
    Profile(
        name="TensorFlow (CPU)",
        description="Jupyter with TensorFlow on CPU",
        image="quay.io/jupyter/tensorflow-notebook:2025-12-01",
        cpu_guarantee="500m",
        cpu_limit="2",
        memory_guarantee="1Gi",
        memory_limit="4Gi",
        default=True,
    ),
)


class JupyterHubSettings(Settings):
    enabled: bool = Field(True, description="deploy the hub")
    namespace: DnsLabel = Field("jupyterhub", description="the hub's namespace")
    service_type: ServiceType = Field("ClusterIP", description="the public proxy Service `proxy-public`: `ClusterIP`, `LoadBalancer` or `NodePort`")
    load_balancer_source_ranges: tuple[Cidr, ...] = Field((), description="LoadBalancer: the CIDR blocks allowed to reach it")
    https: Https | None = Field(
        None, description="TLS for the public Service (required with serviceType LoadBalancer or NodePort)"
    )
    auth: Auth = Field(Auth(), description="how users sign in")
    profiles: tuple[Profile, ...] = Field(
        DEFAULT_PROFILES,
        description="the spawn form's choices, each an image with its limits",
        json_schema_extra={"shown_default": "one CPU TensorFlow profile"},
    )
    cull_idle_seconds: Count = Field(3600, description="stop servers idle this long (jupyterhub-idle-culler)")
    storage: Storage = Field(Storage(), description="each user's home volume")
    user_pool: str | None = Field(None, description="the node pool for CPU notebooks (GPU profiles always go to a GPU pool)")
    hub_resources: resources(cpu_request="200m", memory_request="512Mi")  # type: ignore[valid-type]
    proxy_resources: resources(cpu_request="100m", memory_request="128Mi")  # type: ignore[valid-type]

    def profile_problems(self, key: str) -> Iterator[str]:
        """The rules on the profile list as a whole: the spawn form needs them, whoever builds the hub."""
        if not self.profiles:
            yield f"{key}.profiles: at least one profile is needed"
        if sum(p.default for p in self.profiles) > 1:
            yield f"{key}.profiles: at most one profile may be the default"
        names = [p.name for p in self.profiles]
        slugs = [p.slug for p in self.profiles]
        for i, profile in enumerate(self.profiles):
            if names.count(profile.name) > 1:
                yield f"{key}.profiles[{i}].name: {json.dumps(profile.name)} is used by more than one profile"
            elif slugs.count(profile.slug) > 1:
                yield (
                    f"{key}.profiles[{i}].name: {json.dumps(profile.name)} gives the spawn form the same "
                    f"name ({profile.slug}) as another profile; rename one"
                )

    def https_problems(self, key: str) -> Iterator[str]:
        """A public hub serves TLS, and an OAuth provider sends users back to its https address."""
        if self.https is None:
            if self.service_type != "ClusterIP":
                yield (
                    f"{key}.https: required with jupyterhub.serviceType {self.service_type}: without it the hub "
                    "serves sign-in and notebooks over plain HTTP; set https.type to secret, letsencrypt, selfSigned or offload"
                )
            return
        yield from self.https.problems(f"{key}.https", self.service_type)
        callback = self.auth.callback_url
        if self.auth.type not in OAUTH_TYPES or not callback:
            return
        url = urlparse(callback)
        hosts = self.https.callback_hosts()
        if url.scheme != "https" or url.path != OAUTH_CALLBACK_PATH or (hosts and url.hostname not in hosts):
            where = " or ".join(f"https://{host}{OAUTH_CALLBACK_PATH}" for host in hosts) or f"https://<host>{OAUTH_CALLBACK_PATH}"
            yield (
                f"{key}.auth.callbackUrl: {json.dumps(callback)} is not on the hub's https address; "
                f"must be {where} (the hosts of jupyterhub.https.hosts)"
            )
        if not hosts:
            yield (
                f"{key}.https.hosts: required with auth.type {self.auth.type}: the host of auth.callbackUrl, "
                "so that the callback is checked against the hub's address"
            )

    def problems(self, key: str, cluster: ClusterSettings, secret: bool) -> Iterator[str]:
        if self.auth.type == "dummy" and self.service_type != "ClusterIP":
            yield (
                f"{key}.auth.type: \"dummy\" lets anyone in and is not allowed with "
                f"jupyterhub.serviceType {self.service_type}; use native, github or azuread, or serviceType ClusterIP"
            )
        yield from _source_ranges_problems(key, self.service_type, self.load_balancer_source_ranges)
        yield from self.auth.problems(f"{key}.auth", secret)
        yield from self.https_problems(key)
        if self.user_pool is not None and self.user_pool not in cluster.pool_names:
            yield (
                f"{key}.userPool: {json.dumps(self.user_pool)} is not a node pool; "
                f"pools: {', '.join(cluster.pool_names) or 'none'}"
            )
        yield from self.profile_problems(key)
        for i, profile in enumerate(self.profiles):
            yield from profile.problems(f"{key}.profiles[{i}]", cluster, self.user_pool)
        core_node = cluster.node_capacity(0)
        yield from self.hub_resources.problems(f"{key}.hubResources", core_node)
        yield from self.proxy_resources.problems(f"{key}.proxyResources", core_node)


# --- mnist -----------------------------------------------------------------------------------


class ReplicaCounts(Settings):
    """Counts per TFJob replica type; keys are the operator's replica type names, as written."""

    model_config = ConfigDict(alias_generator=None)
    REFERENCE_AS_MAP: ClassVar[bool] = True
    Chief: Count | None = None
    Master: Count | None = None
    Worker: Count | None = None
    PS: Count | None = None
    Evaluator: Count | None = None


# The tutorial's topology: a chief, two workers, one parameter server.
DEFAULT_REPLICAS = {"Chief": 1, "Worker": 2, "PS": 1}

# What each replica asks for by default; the PS holds variables, the others compute.
_PS_RESOURCES = {"cpu_request": "500m", "memory_request": "1Gi", "memory_limit": "2Gi"}
_COMPUTE_RESOURCES = {"cpu_request": "1", "memory_request": "2Gi", "memory_limit": "4Gi"}


class ReplicaResources(Settings):
    """CPU and memory per TFJob replica type, keyed by the operator's replica type names."""

    model_config = ConfigDict(alias_generator=None)
    REFERENCE_AS_MAP: ClassVar[bool] = True
    Chief: resources(**_COMPUTE_RESOURCES)  # type: ignore[valid-type]
    Master: resources(**_COMPUTE_RESOURCES)  # type: ignore[valid-type]
    Worker: resources(**_COMPUTE_RESOURCES)  # type: ignore[valid-type]
    PS: resources(**_PS_RESOURCES)  # type: ignore[valid-type]
    Evaluator: resources(**_COMPUTE_RESOURCES)  # type: ignore[valid-type]


class ImageSettings(Settings):
    build: bool = Field(
        False,
        description="build trainer/Dockerfile{,.gpu} and push to `repository` (on aks an Azure Container "
        "Registry is created when no repository is given)",
    )
    repository: str | None = Field(None, description="build: the registry path to push to")
    tag: str | None = Field(None, description="build: the tag (default: a hash of the trainer's sources)")
    reference: PinnedImage | None = Field(
        None,
        description="a ready, pinned trainer image to run instead; without build or reference the stock "
        "TensorFlow image runs the trainer from a ConfigMap",
    )

    def problems(self, key: str, provider: str) -> Iterator[str]:
        if self.build and self.reference:
            yield f"{key}.reference: set either image.build or image.reference, not both"
        if self.build and not self.repository and provider != "aks":
            yield f"{key}.repository: required with image.build outside aks (the registry to push to)"


class TensorBoard(Settings):
    enabled: bool = Field(True, description="run TensorBoard on the job's logs")
    resources: resources(cpu_request="100m", memory_request="256Mi", memory_limit="1Gi")  # type: ignore[valid-type]
    service_type: ServiceType = Field("ClusterIP", description="its Service: `ClusterIP`, `LoadBalancer` or `NodePort`")
    load_balancer_source_ranges: tuple[Cidr, ...] = Field(
        (), description="LoadBalancer: the CIDR blocks allowed to reach it (required there: TensorBoard has no sign-in)"
    )

    def problems(self, key: str, cluster: ClusterSettings) -> Iterator[str]:
        yield from self.resources.problems(f"{key}.resources", cluster.node_capacity(0))
        if self.enabled and self.service_type == "LoadBalancer" and not self.load_balancer_source_ranges:
            yield (
                f"{key}.loadBalancerSourceRanges: required with serviceType LoadBalancer: "
                "TensorBoard has no sign-in, so list the CIDR blocks allowed to reach it"
            )
        yield from _source_ranges_problems(key, self.service_type, self.load_balancer_source_ranges)


class RunPolicy(Settings):
    clean_pod_policy: CleanPodPolicy = Field("Running", description="pods removed once the job is done: `None`, `Running` (frees the PS) or `All`")
    backoff_limit: Count = Field(3, description="retries before the job is marked failed")
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = Field(None, description="the job's time limit")
    ttl_seconds_after_finished: Count | None = Field(None, description="delete the finished job after this long")


class MnistSettings(Settings):
    enabled: bool = Field(True, description="deploy the training operator, the TFJob and TensorBoard")
    namespace: DnsLabel = Field("mnist", description="the job's namespace")
    job_name: DnsLabel = Field("distributed-mnist", description="the TFJob's name (its pods and Services are named after it)")
    replicas: ReplicaCounts = Field(
        ReplicaCounts(),
        description="replicas per type: `Chief` or `Master` (its legacy name), `Worker`, `PS`, `Evaluator`; `0` removes a type",
        json_schema_extra={"shown_default": ", ".join(f"{k}: {n}" for k, n in DEFAULT_REPLICAS.items())},
    )
    gpus: ReplicaCounts = Field(ReplicaCounts(), description="`nvidia.com/gpu` per replica of a type (never for `PS`)")
    resources: ReplicaResources = Field(
        ReplicaResources(),
        description="CPU and memory per replica type (`cpuRequest`, `memoryRequest`, `cpuLimit`, `memoryLimit`)",
        json_schema_extra={"shown_default": f"PS: {_shown(_PS_RESOURCES)}; others: {_shown(_COMPUTE_RESOURCES)}"},
    )
    restart_policy: RestartPolicy = Field("OnFailure", description="what the operator does when a replica exits: `Always`, `OnFailure`, `Never`, `ExitCode`")
    train_steps: Annotated[int, Field(ge=1)] = Field(1000, description="trainer: training steps")
    batch_size: Annotated[int, Field(ge=1)] = Field(100, description="trainer: the global batch size")
    learning_rate: Annotated[float, Field(gt=0)] = Field(0.001, description="trainer: the learning rate")
    eval_every: Annotated[int, Field(ge=1)] = Field(100, description="trainer: steps between held-out evaluations")
    data_url: DataUrl = Field(
        DEFAULT_DATA_URL,
        description="trainer: where it fetches `mnist.npz` when the shared volume lacks it: an `http(s)://` URL "
        f"its pods can reach, or a `file://` path in the trainer image; `{SAMPLE_DATA_URL}` is the 5000-digit "
        "sample the images built here carry (`images.local`), for clusters without internet",
    )
    image: ImageSettings = Field(
        ImageSettings(),
        description="the trainer image",
        json_schema_extra={"shown_default": "the stock TensorFlow image, trainer code from a ConfigMap"},
    )
    tensorboard: TensorBoard = Field(TensorBoard(), description="TensorBoard on the job's logs")
    run_policy: RunPolicy = Field(RunPolicy(), description="the TFJob's runPolicy")
    gang_scheduler: DnsLabel | None = Field(
        None,
        description="gang scheduling by the operator: `volcano`, or the name of a scheduler-plugins scheduler "
        "(its PodGroups, which the operator then may manage); off by default",
    )
    storage: SharedStorage = Field(
        SharedStorage(size="5Gi"), description="the shared ReadWriteMany volume for data, checkpoints and logs"
    )

    @property
    def fetches_from_image(self) -> bool:
        """Whether the trainer takes its data from a file in its own image, not from the network."""
        return urlparse(self.data_url).scheme == "file"

    @property
    def replica_counts(self) -> dict[str, int]:
        """Replica type -> count, defaults applied (Chief 1, Worker 2, PS 1), zero counts left out."""
        given = self.replicas.model_dump(exclude_none=True)
        counts = {kind: n for kind, n in DEFAULT_REPLICAS.items() if not (kind in COORDINATORS and "Master" in given)}
        counts.update(given)
        return {kind: counts[kind] for kind in REPLICA_TYPES if counts.get(kind)}

    @property
    def gpu_counts(self) -> dict[str, int]:
        return {kind: n for kind, n in self.gpus.model_dump(exclude_none=True).items() if n}

    def gpu_capacity_problems(self, key: str, cluster: ClusterSettings) -> Iterator[str]:
        """The whole job's GPUs must fit the GPU pools at their largest, or some replicas stay
        Pending for ever (and, the job running all replicas together, so does the job)."""
        demand: dict[str, list[tuple[str, int, int]]] = {}  # pool -> (replica type, replicas, GPUs each)
        for kind, gpus in self.gpu_counts.items():
            pool = cluster.pool_for(gpus)
            if pool is not None and self.replica_counts.get(kind):
                demand.setdefault(pool.name, []).append((kind, self.replica_counts[kind], gpus))
        for pool_name, asks in demand.items():
            pool = next(p for p in cluster.node_pools if p.name == pool_name)
            if cluster.provider == "existing" and pool.count is None and pool.max_count is None:
                continue  # an existing pool of unknown size
            nodes = pool.node_count
            # First fit, largest first: what a scheduler manages at best on empty nodes.
            free = [pool.gpus_per_node] * nodes
            placed = True
            for gpus in sorted((g for _, n, g in asks for _ in range(n)), reverse=True):
                node = next((i for i, left in enumerate(free) if left >= gpus), None)
                if node is None:
                    placed = False
                    break
                free[node] -= gpus
            if placed:
                continue
            total = sum(n * g for _, n, g in asks)
            breakdown = ", ".join(f"{kind} {n} x {g}" for kind, n, g in asks)
            size = "maxCount" if pool.autoscaled else "count"
            yield (
                f"{key}.gpus: the job asks for {total} GPUs ({breakdown}) on node pool {pool_name!r}, which holds "
                f"at most {nodes * pool.gpus_per_node} ({cluster.pool_key(NAMESPACE + ':cluster', pool)}.{size} {nodes} "
                f"x gpusPerNode {pool.gpus_per_node}); raise {size} or ask for fewer GPUs"
            )

    def problems(self, key: str, cluster: ClusterSettings) -> Iterator[str]:
        # Both coordinators given, even at 0, is the mistake; the counts with defaults hide it.
        given = self.replicas.model_dump(exclude_none=True)
        counts = self.replica_counts
        checked = {**counts, **{k: n for k, n in given.items() if k in COORDINATORS}}
        for kind, message in replica_problems(checked):
            yield f"{key}.replicas{'.' + kind if kind else ''}: {message}"
        for kind, gpus in self.gpu_counts.items():
            gpu_key = f"{key}.gpus.{kind}"
            if kind not in counts:
                yield f"{gpu_key}: {gpus} GPUs for {kind}, but there are no {kind} replicas"
            if kind == "PS":
                yield f"{gpu_key}: parameter servers hold variables on CPU; GPUs are not allowed for PS"
            gpu_problem = cluster.gpu_problem(gpu_key, gpus)
            if gpu_problem:
                yield gpu_problem
        for kind in counts:
            node = cluster.node_capacity(self.gpu_counts.get(kind, 0))
            yield from getattr(self.resources, kind).problems(f"{key}.resources.{kind}", node)
        yield from self.gpu_capacity_problems(key, cluster)
        # Rendered manifests leave the class to the cluster they are applied to (README, make render).
        if (
            self.storage.storage_class is None
            and cluster.read_write_many_class is None
            and cluster.provider == "existing"
        ):
            yield (
                f"{key}.storage.storageClass: required with cluster.provider {cluster.provider}: the job's shared "
                "volume is ReadWriteMany, which a cluster's default class often cannot provide (Azure Disk, EBS and "
                "GCE PD cannot), so the claim would stay Pending; name a class that serves ReadWriteMany "
                "(NFS, Azure Files, EFS, Filestore, CephFS)"
            )
        yield from self.tensorboard.problems(f"{key}.tensorboard", cluster)
        yield from self.image.problems(f"{key}.image", cluster.provider)
        # Without PS the job trains with MultiWorkerMirroredStrategy: every chief and worker takes an
        # equal share of the global batch.
        mirrored = sum(n for kind, n in counts.items() if kind in (*COORDINATORS, "Worker"))
        if not counts.get("PS") and mirrored and self.batch_size % mirrored:
            yield (
                f"{key}.batchSize: {self.batch_size} must divide by the number of chief and worker "
                f"replicas ({mirrored}) when there is no PS"
            )


# --- images ----------------------------------------------------------------------------------


def mirrored(image: str, registry: str) -> str:
    """`image` pulled from `registry` instead: its path and tag or digest kept, its registry replaced.

    Docker Hub images keep Docker's full path (`ubuntu:24.04` is `library/ubuntu:24.04`), as
    registry mirrors and pull-through caches serve them.
    """
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        path = rest
    elif slash:
        path = image
    else:
        path = f"library/{image}"
    return f"{registry}/{path}"


class ImagesSettings(Settings):
    registry: Registry | None = Field(
        None,
        description="a registry mirror every image is pulled from instead (notebook profiles' and "
        "mnist.image.reference included): `<registry>/<path>:<tag>`, the image's path without its registry",
    )
    local: bool = Field(
        False,
        description="run the images `make images` builds on this machine (images/) in place of the upstream ones "
        "they stand in for, GPU variants included; for the local cluster, whose nodes pull from no registry",
    )
    pull_secrets: tuple[DnsLabel, ...] = Field(
        (),
        description="names of `kubernetes.io/dockerconfigjson` Secrets every pod pulls with (create them in "
        "each namespace: jupyterhub, mnist, kubeflow, kube-system)",
    )
    hub: PinnedImage = Field(JUPYTERHUB_HUB_IMAGE, description="JupyterHub with KubeSpawner (Zero to JupyterHub's k8s-hub)")
    proxy: PinnedImage = Field(CONFIGURABLE_HTTP_PROXY_IMAGE, description="configurable-http-proxy")
    tensorflow: PinnedImage = Field(
        TENSORFLOW_IMAGE, description="TensorFlow (CPU) that runs the trainer from a ConfigMap when no trainer image is built or given"
    )
    tensorflow_gpu: PinnedImage = Field(TENSORFLOW_GPU_IMAGE, description="TensorFlow (GPU), likewise, for replicas with GPUs")
    tensorboard: PinnedImage = Field(
        DEFAULT_PROFILES[0].image,
        description="TensorBoard where no trainer image is built or given (those carry TensorBoard and run it): "
        "the notebooks' Jupyter Docker Stacks TensorFlow image, which runs as a non-root user",
    )
    training_operator: PinnedImage = Field(TRAINING_OPERATOR_IMAGE, description="the Kubeflow training operator")
    nvidia_device_plugin: PinnedImage = Field(NVIDIA_DEVICE_PLUGIN_IMAGE, description="the NVIDIA device plugin on GPU pools (aks, existing)")

    IMAGE_FIELDS: ClassVar[tuple[str, ...]] = (
        "hub", "proxy", "tensorflow", "tensorflow_gpu", "tensorboard", "training_operator", "nvidia_device_plugin"
    )

    def pull(self, image: str) -> str:
        """What a pod runs for `image`: its local build, or the image from the mirror, when set."""
        if self.local:
            from images.recipe import local_reference

            return local_reference(image) or image
        return mirrored(image, self.registry) if self.registry else image

    def pull_policy(self) -> str:
        """The imagePullPolicy of the containers that would otherwise check the registry on every start.

        `Always` makes the kubelet check the registry's digest and the pod's pull credentials on
        every start instead of trusting a node's cache. The local builds are in no registry: the
        real nodes have them imported (cluster/localcluster/images.py), so `Never`, and an image
        a node lacks fails its pod at once with ErrImageNeverPull naming it, never ImagePullBackOff.
        """
        return "Never" if self.local else "Always"

    def never_pulled(self) -> dict[str, str]:
        """For containers that keep Kubernetes' default policy upstream (IfNotPresent, for a
        tagged image): `imagePullPolicy: Never` with the local builds, as pull_policy() says why."""
        return {"imagePullPolicy": "Never"} if self.local else {}

    def problems(self, key: str) -> Iterator[str]:
        if self.local and self.registry:
            yield f"{key}.registry: set either images.registry or images.local, not both"

    def image_pull_secrets(self) -> list[dict[str, str]]:
        """A PodSpec's imagePullSecrets."""
        return [{"name": name} for name in self.pull_secrets]


# --- the whole stack ---------------------------------------------------------------------------


class StackSettings(Settings):
    cluster: ClusterSettings = Field(ClusterSettings(), description="Where to deploy, and its node pools")
    jupyterhub: JupyterHubSettings = Field(JupyterHubSettings(), description="Multi-user notebooks: JupyterHub with KubeSpawner")
    mnist: MnistSettings = Field(MnistSettings(), description="Distributed MNIST as a Kubeflow TFJob, with TensorBoard")
    images: ImagesSettings = Field(ImagesSettings(), description="Every image the stack runs, and the registry they come from")

    def problems(self, secret_keys: frozenset[str]) -> list[str]:
        """Rules across keys, each problem naming the key it is about.

        `secret_keys` are the top-level keys Pulumi holds as secrets; a client secret anywhere else
        would sit in Pulumi.<stack>.yaml in plain text.
        """
        found = list(self.cluster.problems(f"{NAMESPACE}:cluster"))
        if self.jupyterhub.enabled:
            found += self.jupyterhub.problems(f"{NAMESPACE}:jupyterhub", self.cluster, "jupyterhub" in secret_keys)
        if self.mnist.enabled:
            found += self.mnist.problems(f"{NAMESPACE}:mnist", self.cluster)
        found += self.images.problems(f"{NAMESPACE}:images")
        mnist = self.mnist
        if mnist.enabled and mnist.fetches_from_image and not (self.images.local or mnist.image.build or mnist.image.reference):
            found.append(
                f"{NAMESPACE}:mnist.dataUrl: {mnist.data_url} is a file in the trainer image, and the stock TensorFlow "
                f"image has none; it is the sample of the images built here ({NAMESPACE}:images.local: true) or of an "
                "image of your own (mnist.image.build or mnist.image.reference); elsewhere give an http(s) URL"
            )
        return found


TOP_LEVEL_KEYS = tuple(StackSettings.model_fields)


def parse(
    raw: Mapping[str, Any],
    secret_keys: frozenset[str] = frozenset(),
    local_kubeconfig: str = LOCAL_KUBECONFIG,
    local_node: Callable[[], Allocatable] | None = None,
) -> StackSettings:
    """Validate raw stack config (top-level key -> decoded value) into settings.

    `local_kubeconfig` is the kubeconfig of the local cluster, for a kwok stack that names none.
    `local_node` tells what each real node of a `local` cluster offers pods (this machine's
    allocatable, `this_machine`); it is asked only for cluster.provider local, and without it
    requests are not checked against those nodes.
    """
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            "\n".join(f"{NAMESPACE}:{key}: unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}" for key in unknown)
        )
    try:
        settings = StackSettings.model_validate(dict(raw))
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(e) for e in error.errors())) from None
    if settings.cluster.provider == "local" and local_node is not None:
        settings = settings.model_copy(update={"cluster": settings.cluster.on_machine(local_node())})
    problems = settings.problems(secret_keys)
    if problems:
        raise ConfigError("\n".join(problems))
    if settings.cluster.provider in LOCAL_PROVIDERS and settings.cluster.kubeconfig is None:
        cluster = settings.cluster.model_copy(update={"kubeconfig": local_kubeconfig})
        settings = settings.model_copy(update={"cluster": cluster})
    return _pulled(settings)


def _pulled(settings: StackSettings) -> StackSettings:
    """`settings` with every image reference as pods pull it (the local build with `images.local`,
    else through `images.registry`), so that components, the spawn form and the stack's outputs all
    name what really runs."""
    images = settings.images
    if not (images.registry or images.local):
        return settings
    if images.local:
        from images.recipe import RecipeError, load, names

        for name in names():
            try:  # the local build's tag, which needs all it is made from
                load(name).tag()
            except RecipeError as error:
                raise ConfigError(f"{NAMESPACE}:images.local: image {name}: {error}") from None
    hub, mnist = settings.jupyterhub, settings.mnist
    profiles = tuple(p.model_copy(update={"image": images.pull(p.image)}) for p in hub.profiles)
    reference = mnist.image.reference and images.pull(mnist.image.reference)
    return settings.model_copy(
        update={
            "images": images.model_copy(update={f: images.pull(getattr(images, f)) for f in images.IMAGE_FIELDS}),
            "jupyterhub": hub.model_copy(update={"profiles": profiles}),
            "mnist": mnist.model_copy(update={"image": mnist.image.model_copy(update={"reference": reference})}),
        }
    )


def load() -> StackSettings:
    """Read this stack's `mlplatform:*` config from the Pulumi runtime and validate it."""
    config = pulumi.Config(NAMESPACE)
    prefix = f"{NAMESPACE}:"
    names = {key[len(prefix):] for key in _all_config_keys() if key.startswith(prefix)}
    raw: dict[str, Any] = {}
    for name in sorted(names):
        text = config.get(name)
        try:
            raw[name] = json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            raw[name] = text
    secret_keys = frozenset(name for name in names if pulumi.runtime.is_config_secret(f"{prefix}{name}"))
    # A `local` cluster's real nodes are this machine (bin/cluster up --real runs them here).
    return parse(raw, secret_keys, os.environ.get(KUBECONFIG_ENV) or LOCAL_KUBECONFIG, this_machine)


def _all_config_keys() -> set[str]:
    """Every config key the engine handed the program.

    The SDK has no public call that lists them: `pulumi.Config` reads one key at a time, and the
    engine does not refuse undeclared keys in the project's namespace. A misspelt top-level key
    must fail, not be ignored, so this reads the map `set_all_config` filled (and the
    PULUMI_CONFIG environment that `get_config` falls back to).
    """
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())


# --- messages ----------------------------------------------------------------------------------


def _key_path(loc: tuple[Any, ...]) -> str:
    path = NAMESPACE + ":"
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if i else "") + str(part)
    return path


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings class that holds the value at `loc`, to list its allowed keys."""
    model: Any = StackSettings
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = _settings_class(field.annotation)
        if model is None:
            return None
    return model


def _settings_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) else ():
        found = _settings_class(arg)
        if found:
            return found
    return None


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    # Pydantic puts the type tag (such as `function-after[...]`) into loc for annotated types.
    loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
    key = _key_path(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = f"; allowed: {_allowed_keys(parent)}" if parent else ""
        return f"{key}: unknown key{allowed}"
    if kind == "missing":
        return f"{key}: required"
    if kind == "literal_error":
        return f"{key}: {json.dumps(value)} is not allowed; allowed: {error['ctx']['expected']} (case matters)"
    message = error["msg"].removeprefix("Value error, ")
    if kind in ("greater_than_equal", "greater_than"):
        message = f"must be {'>=' if kind == 'greater_than_equal' else '>'} {error['ctx'].get('ge', error['ctx'].get('gt'))}"
    return f"{key}: {json.dumps(value, default=str)} {message[0].lower()}{message[1:]}"
