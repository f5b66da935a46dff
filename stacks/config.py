"""The stack configuration of mlplatform, read once into typed, frozen settings.

Keys live in the project namespace `mlplatform` as three structured values, `cluster`,
`jupyterhub` and `mnist`, set with `pulumi config set --path`. The shape (types, allowed
values, unknown keys) is checked by pydantic; the rules that tie several keys together are
checked afterwards in `_check_rules`. Either way the result is one ConfigError whose lines each
name the key, the value and what is allowed, raised before any resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args, get_origin

from kubernetes.utils import parse_quantity
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic.alias_generators import to_camel

import pulumi

NAMESPACE = "mlplatform"
TOP_LEVEL_KEYS = ("cluster", "jupyterhub", "mnist")

# The TFJob replica types, in the order the operator and the tutorial list them.
REPLICA_TYPES = ("Chief", "Master", "Worker", "PS", "Evaluator")
SERVICE_TYPES = ("ClusterIP", "LoadBalancer", "NodePort")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


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


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        raise ValueError("must be a CIDR block such as 203.0.113.0/24") from None
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
PinnedImage = Annotated[str, AfterValidator(_pinned_image)]
Cidr = Annotated[str, AfterValidator(_cidr)]
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


# --- cluster ---------------------------------------------------------------------------------


class NodePool(Settings):
    name: DnsLabel
    count: Count | None = None
    min_count: Count | None = None
    max_count: Count | None = None
    vm_size: str | None = None
    # Capacity of each simulated node (kwok); real pools report their own.
    cpu: Quantity = "8"
    memory: Quantity = "32Gi"
    gpus_per_node: Count = 0
    max_pods: Annotated[int, Field(ge=1)] = 110
    taints: tuple[ParsedTaint, ...] = ()
    labels: dict[str, str] = {}

    @property
    def autoscaled(self) -> bool:
        return self.min_count is not None or self.max_count is not None

    @property
    def node_count(self) -> int:
        """Nodes to simulate: a fixed count, or the most an autoscaled pool may grow to."""
        if self.autoscaled:
            return self.max_count or 0
        return 1 if self.count is None else self.count


class ClusterSettings(Settings):
    provider: Literal["kwok", "existing", "aks", "render"] = "kwok"
    # kwok and existing: the cluster's kubeconfig (a path or the contents) and context.
    kubeconfig: str | None = None
    context: str | None = None
    # aks
    location: str | None = None
    kubernetes_version: str | None = None
    resource_group: str | None = None
    system_pool_vm_size: str = "Standard_D4s_v5"
    system_pool_count: Annotated[int, Field(ge=1)] = 1
    # render: where renderYamlToDirectory writes the manifests.
    render_dir: str = ".local/render"
    # On real GPU backends (aks, existing): deploy the NVIDIA device plugin onto GPU pools.
    nvidia_device_plugin: bool = True
    node_pools: tuple[NodePool, ...] = ()


# Keys that only mean something for one provider, so that a key set for another is a mistake.
_PROVIDER_KEYS = {
    "kubeconfig": ("kwok", "existing"),
    "context": ("kwok", "existing"),
    "location": ("aks",),
    "kubernetesVersion": ("aks",),
    "resourceGroup": ("aks",),
    "systemPoolVmSize": ("aks",),
    "systemPoolCount": ("aks",),
    "renderDir": ("render",),
}


# --- jupyterhub ------------------------------------------------------------------------------


class Profile(Settings):
    name: Annotated[str, Field(min_length=1)]
    description: str = ""
    image: PinnedImage
    cpu_guarantee: Quantity | None = None
    cpu_limit: Quantity | None = None
    memory_guarantee: Quantity | None = None
    memory_limit: Quantity | None = None
    gpus: Count = 0
    default: bool = False


class Auth(Settings):
    type: Literal["dummy", "native", "github", "azuread"] = "native"
    admin_users: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    # OAuth (github, azuread). The client secret must be set with `--secret`.
    client_id: str | None = None
    client_secret: str | None = None
    callback_url: str | None = None
    tenant_id: str | None = None
    allowed_organizations: tuple[str, ...] = ()


class Storage(Settings):
    size: Quantity = "10Gi"
    storage_class: str | None = None


DEFAULT_PROFILES = (
    Profile(
        name="TensorFlow (CPU)",
        description="Jupyter with TensorFlow 2.21 on CPU",
        image="quay.io/jupyter/tensorflow-notebook:2025-12-01",
        cpu_guarantee="500m",
        cpu_limit="2",
        memory_guarantee="1Gi",
        memory_limit="4Gi",
        default=True,
    ),
)


class JupyterHubSettings(Settings):
    enabled: bool = True
    namespace: DnsLabel = "jupyterhub"
    service_type: Literal["ClusterIP", "LoadBalancer", "NodePort"] = "ClusterIP"
    load_balancer_source_ranges: tuple[Cidr, ...] = ()
    auth: Auth = Auth()
    profiles: tuple[Profile, ...] = DEFAULT_PROFILES
    cull_idle_seconds: Count = 3600
    storage: Storage = Storage()
    # The node pool for CPU-only notebooks; GPU profiles always go to a GPU pool.
    user_pool: str | None = None


# --- mnist -----------------------------------------------------------------------------------


class ReplicaCounts(Settings):
    """Counts per TFJob replica type; keys are the operator's replica type names, as written."""

    model_config = ConfigDict(alias_generator=None)
    Chief: Count | None = None
    Master: Count | None = None
    Worker: Count | None = None
    PS: Count | None = None
    Evaluator: Count | None = None


class ImageSettings(Settings):
    # Build trainer/Dockerfile{,.gpu} and push to `repository` (a registry path); on aks an Azure
    # Container Registry is created when no repository is given.
    build: bool = False
    repository: str | None = None
    tag: str | None = None
    # A ready image to run instead (pinned); without build or reference the stock TensorFlow image
    # runs the trainer from a ConfigMap.
    reference: PinnedImage | None = None


class TensorBoard(Settings):
    enabled: bool = True
    service_type: Literal["ClusterIP", "LoadBalancer", "NodePort"] = "ClusterIP"
    # TensorBoard has no sign-in, so a LoadBalancer must be limited to these source ranges.
    load_balancer_source_ranges: tuple[Cidr, ...] = ()


class RunPolicy(Settings):
    clean_pod_policy: Literal["None", "Running", "All"] = "Running"
    backoff_limit: Count = 3
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    ttl_seconds_after_finished: Count | None = None


class MnistSettings(Settings):
    enabled: bool = True
    namespace: DnsLabel = "mnist"
    job_name: DnsLabel = "distributed-mnist"
    replicas: ReplicaCounts = ReplicaCounts()
    gpus: ReplicaCounts = ReplicaCounts()
    restart_policy: Literal["Always", "OnFailure", "Never", "ExitCode"] = "OnFailure"
    train_steps: Annotated[int, Field(ge=1)] = 1000
    batch_size: Annotated[int, Field(ge=1)] = 100
    learning_rate: Annotated[float, Field(gt=0)] = 0.001
    eval_every: Annotated[int, Field(ge=1)] = 100
    image: ImageSettings = ImageSettings()
    tensorboard: TensorBoard = TensorBoard()
    run_policy: RunPolicy = RunPolicy()
    storage: Storage = Storage(size="5Gi")

    @property
    def replica_counts(self) -> dict[str, int]:
        """Replica type -> count, defaults applied (Chief 1, Worker 2, PS 1), zero counts left out."""
        given = self.replicas.model_dump(exclude_none=True)
        counts = {"Worker": 2, "PS": 1, "Evaluator": 0}
        if "Master" not in given:
            counts["Chief"] = 1
        counts.update(given)
        return {kind: counts[kind] for kind in REPLICA_TYPES if counts.get(kind)}

    @property
    def gpu_counts(self) -> dict[str, int]:
        return {kind: n for kind, n in self.gpus.model_dump(exclude_none=True).items() if n}


# --- the whole stack ---------------------------------------------------------------------------


class StackSettings(Settings):
    cluster: ClusterSettings = ClusterSettings()
    jupyterhub: JupyterHubSettings = JupyterHubSettings()
    mnist: MnistSettings = MnistSettings()

    def pool(self, name: str) -> NodePool:
        return next(p for p in self.cluster.node_pools if p.name == name)


def parse(raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackSettings:
    """Validate raw stack config (top-level key -> decoded value) into settings.

    `secret_keys` are the top-level keys Pulumi holds as secrets; a client secret anywhere else
    would sit in Pulumi.<stack>.yaml in plain text.
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
    problems = _check_rules(raw, settings, secret_keys)
    if problems:
        raise ConfigError("\n".join(problems))
    return settings


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
    return parse(raw, secret_keys)


def _all_config_keys() -> set[str]:
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
    if kind == "literal_error":
        return f"{key}: {json.dumps(value)} is not allowed; allowed: {error['ctx']['expected']} (case matters)"
    message = error["msg"].removeprefix("Value error, ")
    if kind in ("greater_than_equal", "greater_than"):
        message = f"must be {'>=' if kind == 'greater_than_equal' else '>'} {error['ctx'].get('ge', error['ctx'].get('gt'))}"
    return f"{key}: {json.dumps(value, default=str)} {message[0].lower()}{message[1:]}"


def _check_rules(raw: Mapping[str, Any], settings: StackSettings, secret_keys: frozenset[str]) -> list[str]:
    """Rules across keys, each problem naming the key it is about."""
    problems: list[str] = []
    cluster, hub, mnist = settings.cluster, settings.jupyterhub, settings.mnist
    cluster_raw = raw.get("cluster") or {}

    for key, providers in _PROVIDER_KEYS.items():
        if key in cluster_raw and cluster.provider not in providers:
            problems.append(
                f"{NAMESPACE}:cluster.{key}: only used with cluster.provider {' or '.join(providers)}, "
                f"not {cluster.provider}"
            )
    if cluster.provider == "existing" and not cluster.kubeconfig:
        problems.append(f"{NAMESPACE}:cluster.kubeconfig: required with cluster.provider existing (a path or the contents)")
    if cluster.provider == "aks" and not cluster.location:
        problems.append(f"{NAMESPACE}:cluster.location: required with cluster.provider aks (an Azure region such as westeurope)")

    names = [p.name for p in cluster.node_pools]
    for i, pool in enumerate(cluster.node_pools):
        key = f"{NAMESPACE}:cluster.nodePools[{i}]"
        if names.count(pool.name) > 1:
            problems.append(f"{key}.name: {json.dumps(pool.name)} is used by more than one pool; names must be unique")
        if pool.count is not None and pool.autoscaled:
            problems.append(f"{key}.count: set either count or minCount/maxCount, not both")
        if pool.autoscaled and (pool.min_count is None or pool.max_count is None):
            problems.append(f"{key}: autoscaling needs both minCount and maxCount")
        elif pool.autoscaled and pool.min_count > pool.max_count:
            problems.append(f"{key}.minCount: {pool.min_count} must be <= maxCount ({pool.max_count})")
        if cluster.provider == "existing" and not pool.labels:
            problems.append(f"{key}.labels: required with cluster.provider existing: the labels that select this pool's nodes")
        if cluster.provider == "aks":
            if not pool.vm_size:
                problems.append(f"{key}.vmSize: required with cluster.provider aks (e.g. Standard_NC6s_v3 for GPUs)")
            if len(pool.name) > 12 or not pool.name.isalnum():
                problems.append(f"{key}.name: {json.dumps(pool.name)} must be at most 12 lowercase letters and digits on aks")

    gpu_pools = {p.name: p.gpus_per_node for p in cluster.node_pools if p.gpus_per_node}

    def check_gpus(key: str, gpus: int) -> None:
        if gpus and not any(n >= gpus for n in gpu_pools.values()):
            have = ", ".join(f"{n}={g}" for n, g in gpu_pools.items()) or "none"
            problems.append(
                f"{key}: {gpus} GPUs asked for, but no node pool has gpusPerNode >= {gpus} (GPU pools: {have})"
            )

    if hub.enabled:
        if hub.auth.type == "dummy" and hub.service_type != "ClusterIP":
            problems.append(
                f"{NAMESPACE}:jupyterhub.auth.type: \"dummy\" lets anyone in and is not allowed with "
                f"jupyterhub.serviceType {hub.service_type}; use native, github or azuread, or serviceType ClusterIP"
            )
        if hub.load_balancer_source_ranges and hub.service_type != "LoadBalancer":
            problems.append(
                f"{NAMESPACE}:jupyterhub.loadBalancerSourceRanges: only used with serviceType LoadBalancer, "
                f"not {hub.service_type}"
            )
        if hub.auth.type in ("github", "azuread"):
            for field in ("client_id", "client_secret", "callback_url") + (("tenant_id",) if hub.auth.type == "azuread" else ()):
                if not getattr(hub.auth, field):
                    problems.append(f"{NAMESPACE}:jupyterhub.auth.{to_camel(field)}: required with auth.type {hub.auth.type}")
        if hub.auth.client_secret and "jupyterhub" not in secret_keys:
            problems.append(
                f"{NAMESPACE}:jupyterhub.auth.clientSecret: is stored in plain text; set it with "
                "`pulumi config set --secret --path jupyterhub.auth.clientSecret`"
            )
        if hub.user_pool is not None and hub.user_pool not in names:
            problems.append(
                f"{NAMESPACE}:jupyterhub.userPool: {json.dumps(hub.user_pool)} is not a node pool; "
                f"pools: {', '.join(names) or 'none'}"
            )
        profile_names = [p.name for p in hub.profiles]
        if not hub.profiles:
            problems.append(f"{NAMESPACE}:jupyterhub.profiles: at least one profile is needed")
        if sum(p.default for p in hub.profiles) > 1:
            problems.append(f"{NAMESPACE}:jupyterhub.profiles: at most one profile may be the default")
        for i, profile in enumerate(hub.profiles):
            key = f"{NAMESPACE}:jupyterhub.profiles[{i}]"
            if profile_names.count(profile.name) > 1:
                problems.append(f"{key}.name: {json.dumps(profile.name)} is used by more than one profile")
            for resource in ("cpu", "memory"):
                guarantee = getattr(profile, f"{resource}_guarantee")
                limit = getattr(profile, f"{resource}_limit")
                if guarantee and limit and parse_quantity(guarantee) > parse_quantity(limit):
                    problems.append(
                        f"{key}.{resource}Guarantee: {guarantee} must be <= {resource}Limit ({limit})"
                    )
            check_gpus(f"{key}.gpus", profile.gpus)

    if mnist.enabled:
        given = mnist.replicas.model_dump(exclude_none=True)
        if "Chief" in given and "Master" in given:
            problems.append(
                f"{NAMESPACE}:mnist.replicas: Chief and Master are both set; use one of them (Master is the legacy name)"
            )
        counts = mnist.replica_counts
        for kind in ("Chief", "Master"):
            if counts.get(kind, 0) > 1:
                problems.append(f"{NAMESPACE}:mnist.replicas.{kind}: {counts[kind]} must be <= 1 (one coordinator)")
        if not counts.get("Chief") and not counts.get("Master") and not counts.get("Worker"):
            problems.append(f"{NAMESPACE}:mnist.replicas: needs a Chief, a Master or at least one Worker")
        if counts.get("PS") and not (counts.get("Chief") or counts.get("Master")):
            problems.append(
                f"{NAMESPACE}:mnist.replicas.PS: parameter servers need a Chief (or Master) to coordinate them"
            )
        for kind, gpus in mnist.gpu_counts.items():
            key = f"{NAMESPACE}:mnist.gpus.{kind}"
            if kind not in counts:
                problems.append(f"{key}: {gpus} GPUs for {kind}, but there are no {kind} replicas")
            if kind == "PS":
                problems.append(f"{key}: parameter servers hold variables on CPU; GPUs are not allowed for PS")
            check_gpus(key, gpus)
        board = mnist.tensorboard
        if board.enabled and board.service_type == "LoadBalancer" and not board.load_balancer_source_ranges:
            problems.append(
                f"{NAMESPACE}:mnist.tensorboard.loadBalancerSourceRanges: required with serviceType LoadBalancer: "
                "TensorBoard has no sign-in, so list the CIDR blocks allowed to reach it"
            )
        if board.load_balancer_source_ranges and board.service_type != "LoadBalancer":
            problems.append(
                f"{NAMESPACE}:mnist.tensorboard.loadBalancerSourceRanges: only used with serviceType LoadBalancer, "
                f"not {board.service_type}"
            )
        if mnist.image.build and mnist.image.reference:
            problems.append(f"{NAMESPACE}:mnist.image.reference: set either image.build or image.reference, not both")
        if mnist.image.build and not mnist.image.repository and cluster.provider != "aks":
            problems.append(
                f"{NAMESPACE}:mnist.image.repository: required with image.build outside aks (the registry to push to)"
            )
        # Without PS the job trains with MultiWorkerMirroredStrategy: every chief and worker takes an
        # equal share of the global batch.
        mirrored = sum(n for kind, n in counts.items() if kind in ("Chief", "Master", "Worker"))
        if not counts.get("PS") and mirrored and mnist.batch_size % mirrored:
            problems.append(
                f"{NAMESPACE}:mnist.batchSize: {mnist.batch_size} must divide by the number of chief and worker "
                f"replicas ({mirrored}) when there is no PS"
            )
    return problems
