"""TF_CONFIG, read: which cluster this process belongs to, what it does in it, and which strategy that implies.

Kubeflow's TFJob names its coordinating replica ``master`` (legacy) or ``chief``; TensorFlow 2 only knows
``chief``. ``use_chief_for_master`` rewrites TF_CONFIG in the environment before anything in TensorFlow reads
it. Everything else is read through ``TFConfigClusterResolver``.
"""

import enum
import json
from collections.abc import MutableMapping
from dataclasses import dataclass


class ClusterConfigError(ValueError):
    """TF_CONFIG describes a cluster this trainer cannot run."""


class StrategyKind(enum.Enum):
    SINGLE = "single process"
    MULTI_WORKER_MIRRORED = "MultiWorkerMirroredStrategy"
    PARAMETER_SERVER = "ParameterServerStrategy"


def use_chief_for_master(environ: MutableMapping[str, str]) -> None:
    """Rewrite a ``master`` cluster key and task type in ``environ["TF_CONFIG"]`` to ``chief``.

    Every process of the job must do this, so that all of them agree on the job names they dial.
    """
    raw = environ.get("TF_CONFIG")
    if not raw:
        return
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ClusterConfigError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(config, dict):
        raise ClusterConfigError("TF_CONFIG must be a JSON object")
    cluster = config.get("cluster") or {}
    task = config.get("task") or {}
    if "master" in cluster:
        if "chief" in cluster:
            raise ClusterConfigError("TF_CONFIG has both a 'master' and a 'chief' job; a TFJob has at most one")
        cluster["chief"] = cluster.pop("master")
    if task.get("type") == "master":
        task["type"] = "chief"
    environ["TF_CONFIG"] = json.dumps(config)


@dataclass(frozen=True)
class Role:
    """This process's part in the job, as the cluster resolver reports it."""

    kind: StrategyKind
    task_type: str | None  # None when there is no TF_CONFIG
    task_id: int
    jobs: frozenset[str]

    @property
    def is_chief(self) -> bool:
        return is_chief(self.task_type, self.task_id, self.jobs)

    @property
    def serves(self) -> bool:
        """Parameter-server workers and PS tasks only serve the chief's requests."""
        return self.kind is StrategyKind.PARAMETER_SERVER and self.task_type in ("worker", "ps")

    @property
    def name(self) -> str:
        return "chief" if self.task_type is None else f"{self.task_type}:{self.task_id}"


def is_chief(task_type: str | None, task_id: int, jobs: frozenset[str] | set[str]) -> bool:
    """The chief writes checkpoints, summaries and the model. No TF_CONFIG means a lone process: the chief.

    A cluster of workers without a chief job makes worker 0 the chief, as TensorFlow itself does.
    """
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in jobs


def strategy_kind(jobs: frozenset[str] | set[str]) -> StrategyKind:
    if not jobs:
        return StrategyKind.SINGLE
    if "ps" in jobs:
        return StrategyKind.PARAMETER_SERVER
    return StrategyKind.MULTI_WORKER_MIRRORED


def resolve_role(resolver) -> Role:
    """Describe this process from a ``TFConfigClusterResolver``; reject clusters this trainer can't run."""
    jobs = frozenset(resolver.cluster_spec().jobs)
    kind = strategy_kind(jobs)
    task_type = resolver.task_type if jobs else None
    if jobs and task_type not in jobs:
        raise ClusterConfigError(f"TF_CONFIG task type {task_type!r} is not one of the cluster's jobs {sorted(jobs)}")
    unsupported = jobs - {"chief", "worker", "ps"}
    if unsupported:
        raise ClusterConfigError(f"TF_CONFIG job(s) {sorted(unsupported)} not supported; use chief/master, worker, ps")
    if kind is StrategyKind.PARAMETER_SERVER and ("chief" not in jobs or "worker" not in jobs):
        raise ClusterConfigError("a cluster with 'ps' needs a 'chief' (or 'master') to coordinate and at least one 'worker'")
    return Role(kind=kind, task_type=task_type, task_id=int(resolver.task_id or 0) if jobs else 0, jobs=jobs)

