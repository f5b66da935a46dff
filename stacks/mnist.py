"""The training job's settings (`mlplatform:mnist`): the TFJob's replicas, their resources and GPUs,
the trainer's image and flags, TensorBoard and the shared volume.

Configures components/mnist.py (with components/tfjob.py and components/training_operator.py);
the TFJob API's names and replica rules are vocab/tfjob_api.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar
from urllib.parse import urlparse

from pydantic import ConfigDict, Field

from stacks.cluster import ClusterSettings
from stacks.values import (
    NAMESPACE,
    Cidr,
    Count,
    DataRetention,
    DataUrl,
    DnsLabel,
    PinnedImage,
    ServiceType,
    Settings,
    SharedStorage,
    _shown,
    _source_ranges_problems,
    resources,
)
from trainer.flags import DEFAULT_DATA_URL, SAMPLE_DATA_URL
from vocab.tfjob_api import COORDINATORS, REPLICA_TYPES, CleanPodPolicy, RestartPolicy, replica_problems


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
    backoff_limit: Count = Field(
        3,
        description="container restarts (summed over the job's running pods) before the operator fails the job; "
        "counted with restartPolicy `OnFailure`, `Always` or `ExitCode`, never with `Never`",
    )
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = Field(
        None, description="seconds from the job's start after which the job fails and its pods stop (each replica's pod gets "
        "the same deadline, docs/training.md)"
    )
    ttl_seconds_after_finished: Count | None = Field(
        None,
        description="the operator deletes the finished TFJob (and its pods) after this many seconds; the next "
        "`pulumi up` creates it again (docs/training.md)",
    )

    def problems(self, key: str, restart_policy: str) -> Iterator[str]:
        if restart_policy == "Never" and "backoff_limit" in self.model_fields_set:
            yield (
                f"{key}.backoffLimit: {self.backoff_limit} has no effect with mnist.restartPolicy Never (the operator "
                "counts restarts only with OnFailure, Always or ExitCode, and Never restarts nothing); drop it or "
                "choose one of those restart policies"
            )


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
    restart_policy: RestartPolicy = Field(
        "OnFailure",
        description="what happens when a replica exits: `OnFailure` (the kubelet restarts a failed container in its "
        "pod), `Always`, `Never` (a failed replica fails the job), `ExitCode` (the operator recreates the pod on an "
        "exit code of 128 or more, a signal or the trainer's 138 after a lost peer, and fails the job on 1-127)",
    )
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
    data_retention: DataRetention = Field(
        "keep",
        description="`keep`: the namespace and the shared volume (data, checkpoints, logs) outlive `pulumi destroy`, "
        "and a change that would delete, replace or strand them fails the preview; `delete`: they go with the "
        "stack (docs/data.md)",
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
            free = [pool.gpus_advertised] * nodes
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
                f"at most {nodes * pool.gpus_advertised} ({cluster.pool_key(NAMESPACE + ':cluster', pool)}.{size} {nodes} "
                f"x gpusPerNode {pool.gpu_shown()}); raise {size} or ask for fewer GPUs"
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
        yield from self.run_policy.problems(f"{key}.runPolicy", self.restart_policy)
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
