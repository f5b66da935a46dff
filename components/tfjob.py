"""A typed TFJob: replica specs as Python types, checked as the operator's webhook would, and the
TF_CONFIG every replica will receive, computed by the operator's rules (training-operator v1.9).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from vocab.kueue_api import QUEUE_LABEL
from vocab.tfjob_api import (
    API_VERSION,
    CLEAN_POD_POLICIES,
    CONTAINER_NAME,
    DEFAULT_PORT,
    KIND,
    PORT_NAME,
    RESTART_POLICIES,
    replica_problems,
)

_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class TFJobError(ValueError):
    """A TFJob the operator's webhook (or TensorFlow) would refuse."""


@dataclass(frozen=True)
class ReplicaSpec:
    replicas: int
    template: Mapping[str, Any]  # a PodTemplateSpec, camelCase as the API spells it
    restart_policy: str = "Never"

    def container(self) -> Mapping[str, Any] | None:
        containers = self.template.get("spec", {}).get("containers", [])
        return next((c for c in containers if c.get("name") == CONTAINER_NAME), None)

    def port(self) -> int:
        container = self.container() or {}
        ports = [p for p in container.get("ports", []) if p.get("name") == PORT_NAME]
        return ports[0]["containerPort"] if ports else DEFAULT_PORT


@dataclass(frozen=True)
class RunPolicy:
    clean_pod_policy: str = "None"
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None

    def manifest(self) -> dict[str, Any]:
        fields = {
            "cleanPodPolicy": self.clean_pod_policy,
            "backoffLimit": self.backoff_limit,
            "activeDeadlineSeconds": self.active_deadline_seconds,
            "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
        }
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class TFJobSpec:
    name: str
    namespace: str
    replica_specs: Mapping[str, ReplicaSpec]
    run_policy: RunPolicy = field(default_factory=RunPolicy)
    labels: Mapping[str, str] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """What the operator's webhook would reject, plus what this stack holds its own job to:
        canonical replica types, one Chief, policies from their lists (the CRD admits more)."""
        found = []
        if len(self.name) > 63 or not _DNS_1035.match(self.name):
            found.append(f"metadata.name: {self.name!r} must be a DNS-1035 label (lowercase letters, digits, '-')")
        if not self.replica_specs:
            found.append("spec.tfReplicaSpecs: at least one replica type is required")
        for kind, message in replica_problems({kind: spec.replicas for kind, spec in self.replica_specs.items()}):
            found.append(f"spec.tfReplicaSpecs{f'[{kind}]' if kind else ''}: {message}")
        for kind, spec in self.replica_specs.items():
            path = f"spec.tfReplicaSpecs[{kind}]"
            if spec.replicas < 0:
                # The CRD leaves replicas a free integer, as upstream's does.
                found.append(f"{path}.replicas: {spec.replicas} must be >= 0")
            if spec.restart_policy not in RESTART_POLICIES:
                found.append(f"{path}.restartPolicy: {spec.restart_policy!r}; allowed: {', '.join(RESTART_POLICIES)}")
            containers = spec.template.get("spec", {}).get("containers", [])
            if spec.container() is None:
                found.append(f"{path}.template.spec.containers: needs a container named {CONTAINER_NAME!r}")
            for i, container in enumerate(containers):
                if not container.get("image"):
                    found.append(f"{path}.template.spec.containers[{i}].image: required")
        policy = self.run_policy
        for key, value, least in (
            ("backoffLimit", policy.backoff_limit, 0),
            ("activeDeadlineSeconds", policy.active_deadline_seconds, 1),
            ("ttlSecondsAfterFinished", policy.ttl_seconds_after_finished, 0),
        ):
            if value is not None and value < least:
                found.append(f"spec.runPolicy.{key}: {value} must be >= {least}")
        if self.run_policy.clean_pod_policy not in CLEAN_POD_POLICIES:
            found.append(
                f"spec.runPolicy.cleanPodPolicy: {self.run_policy.clean_pod_policy!r}; allowed: {', '.join(CLEAN_POD_POLICIES)}"
            )
        return found

    def validate(self) -> None:
        found = self.problems()
        if found:
            raise TFJobError(f"TFJob {self.name!r} would be rejected:\n" + "\n".join(found))

    # --- TF_CONFIG, as the operator builds it ---------------------------------------------------

    def is_distributed(self) -> bool:
        # The operator sets no TF_CONFIG when the whole job is a single process.
        return sum(spec.replicas for spec in self.replica_specs.values()) != 1

    def pod_name(self, kind: str, index: int) -> str:
        """Pod and headless Service name: {job}-{type lowercased}-{index}."""
        return f"{self.name}-{kind.lower()}-{index}"

    def cluster_spec(self) -> dict[str, list[str]]:
        return {
            kind.lower(): [
                f"{self.pod_name(kind, i)}.{self.namespace}.svc:{spec.port()}" for i in range(spec.replicas)
            ]
            for kind, spec in self.replica_specs.items()
        }

    def tf_config(self, kind: str, index: int) -> dict[str, Any] | None:
        if not self.is_distributed():
            return None
        # As the operator writes it: Go's json.Marshal of its TFConfig struct, so the fields in
        # the struct's order (cluster, task, environment), and the cluster spec, a Go map, with
        # its keys sorted.
        return {
            "cluster": dict(sorted(self.cluster_spec().items())),
            "task": {"type": kind.lower(), "index": index},
            "environment": "cloud",
        }

    def tf_configs(self) -> dict[str, str]:
        """Pod name -> the TF_CONFIG value its `tensorflow` container receives."""
        configs = {}
        for kind, spec in self.replica_specs.items():
            for i in range(spec.replicas):
                config = self.tf_config(kind, i)
                if config is not None:
                    configs[self.pod_name(kind, i)] = json.dumps(config, separators=(",", ":"))
        return configs

    def pod_template(self, kind: str) -> Mapping[str, Any]:
        """A replica's pod template as the job runs it. With `activeDeadlineSeconds`, every pod gets
        the same deadline: the operator (kubeflow/trainer#3358, open for its v1 line) checks the
        job's deadline only when something wakes it (its deadline re-check is queued on a work
        queue that drops it), so a job whose pods run quietly would run past it; the kubelet fails each pod at its
        own deadline, never before the job's (the job starts before its pods), and that wakes the
        operator, which then fails the job."""
        template = self.replica_specs[kind].template
        deadline = self.run_policy.active_deadline_seconds
        if deadline is None:
            return template
        spec = template.get("spec", {})
        return {**template, "spec": {**spec, "activeDeadlineSeconds": min(deadline, spec.get("activeDeadlineSeconds", deadline))}}

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(self.labels)},
            "spec": {
                "runPolicy": self.run_policy.manifest(),
                "tfReplicaSpecs": {
                    kind: {
                        "replicas": spec.replicas,
                        "restartPolicy": spec.restart_policy,
                        "template": self.pod_template(kind),
                    }
                    for kind, spec in self.replica_specs.items()
                },
            },
        }


def replaced_on_changes(spec: TFJobSpec) -> list[str]:
    """The changes that make the job a new one rather than an update of the one running.

    A job queued in another LocalQueue, or queued or not any more, is another job: Kueue refuses to
    change the queue of a job it has let run (its webhook: "field is immutable"). And any change to
    a queued job's spec: Kueue admitted the job's pod sets as they were, and writes the admitted
    flavor's node selector into the running job's templates. Updated in place, a job admitted to
    the CPU pool and given GPU workers kept that selector, and its new Workload waited for ever
    ("untolerated taint" in the GPU flavor, 2026-12-07); a new job is admitted afresh, and resumes
    from its checkpoint as a requeued one would.
    """
    return [f'metadata.labels["{QUEUE_LABEL}"]', *(["spec"] if QUEUE_LABEL in spec.labels else [])]


@dataclass(frozen=True)
class TFJobArgs:
    spec: TFJobSpec


class TFJob(pulumi.ComponentResource):
    """One TFJob custom resource, refused at preview time if the operator would refuse it."""

    tf_config: dict[str, str]
    resource: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: TFJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        args.spec.validate()
        super().__init__("mlplatform:tfjob:TFJob", name, None, opts)
        manifest = args.spec.manifest()
        self.tf_config = args.spec.tf_configs()
        self.resource = k8s.apiextensions.CustomResource(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            # Deleted first when replaced: its name is fixed, and a replacement created first is
            # the same object, then deleted with the old one (seen: the job gone after `pulumi up`).
            opts=pulumi.ResourceOptions(parent=self, replace_on_changes=replaced_on_changes(args.spec),
                                        delete_before_replace=True),
        )
        self.register_outputs({"tf_config": self.tf_config})
