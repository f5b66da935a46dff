"""The TFJob API's vocabulary (kubeflow.org/v1, training-operator v1.9), and the replica rules.

One place for what the config layer, the typed TFJob, the CRD schema and the MNIST component
all speak: the group/version/kind, the replica types, the policies, the default port and the
labels the operator puts on replica pods, and the operator's own names. Standard library only:
the config layer imports it, and so does the cluster manager, which runs the operator on the
simulated cluster (cluster/localcluster/trainingoperator.py) before any virtualenv exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

GROUP = "kubeflow.org"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "TFJob"
PLURAL = "tfjobs"

# In the order the operator and the tutorial list them. `Master` is the legacy name of `Chief`.
ReplicaType = Literal["Chief", "Master", "Worker", "PS", "Evaluator"]
REPLICA_TYPES: tuple[str, ...] = get_args(ReplicaType)
# The replica types that coordinate a job; a job has at most one of them, with one replica.
COORDINATORS = ("Chief", "Master")

RestartPolicy = Literal["Always", "OnFailure", "Never", "ExitCode"]
RESTART_POLICIES: tuple[str, ...] = get_args(RestartPolicy)
CleanPodPolicy = Literal["None", "Running", "All"]
CLEAN_POD_POLICIES: tuple[str, ...] = get_args(CleanPodPolicy)

CONTAINER_NAME = "tensorflow"  # the operator injects TF_CONFIG into this container only
PORT_NAME = "tfjob-port"
DEFAULT_PORT = 2222

# Labels the operator sets on every replica pod (and its headless Service).
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"
REPLICA_INDEX_LABEL = "training.kubeflow.org/replica-index"

# The operator's own names (training-operator v1.9 cmd/training-operator.v1 and pkg/cert): it finds
# its webhook Secret and Service by these names in the namespace it runs in (MY_POD_NAMESPACE,
# "kubeflow" when unset, as for a local process), injects its CA into the
# ValidatingWebhookConfiguration of this name, and reads its certificate from a fixed directory.
OPERATOR_NAMESPACE = "kubeflow"
OPERATOR_NAME = "training-operator"
WEBHOOK_SECRET = "training-operator-webhook-cert"
WEBHOOK_CONFIGURATION = "validator.training-operator.kubeflow.org"
CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"
# What its cert rotator names its CA (pkg/cert/cert.go caName, caOrganization): a certificate in the
# Secret is kept only if its CA verifies for that DNS name.
CERT_ROTATOR_CA_NAME = "training-operator-ca"
CERT_ROTATOR_CA_ORGANIZATION = "training-operator"


def replica_problems(counts: Mapping[str, int]) -> list[tuple[str | None, str]]:
    """What the operator's webhook, or TensorFlow, refuses in a job's replica counts.

    `counts` maps replica type to replicas, as written. Each problem is (the replica type it is
    about, or None for the job as a whole; the message). The config layer and the typed TFJob
    both report these, each under its own key.
    """
    found: list[tuple[str | None, str]] = []
    for kind in counts:
        canonical = next((t for t in REPLICA_TYPES if t.lower() == kind.lower()), None)
        if canonical and canonical != kind:
            # The operator's defaulting would rename it (and the CRD admits it); a job this stack
            # writes says what it means.
            found.append((kind, f"write the replica type as {canonical!r}"))
        elif kind not in REPLICA_TYPES:
            found.append((kind, f"unknown replica type; allowed: {', '.join(REPLICA_TYPES)}"))
    if sum(kind in counts for kind in COORDINATORS) > 1:
        found.append(
            (None, "Chief and Master are both set: must not have more than 1 Chief or Master role "
                   "(use one of them; Master is the legacy name)")
        )
    for kind in COORDINATORS:
        if counts.get(kind, 0) > 1:
            found.append((kind, f"{counts[kind]} must be <= 1: a TFJob has one {kind}"))
    running = {kind for kind, n in counts.items() if n > 0}
    has_coordinator = bool(running & set(COORDINATORS))
    if not has_coordinator and "Worker" not in running:
        found.append((None, "needs a Chief, a Master or at least one Worker"))
    if "PS" in running and not has_coordinator:
        # TF2's ParameterServerStrategy runs its coordinator in the chief.
        found.append(("PS", "parameter servers need a Chief (or Master) to coordinate them"))
    return found

