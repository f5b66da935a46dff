"""The Kueue API the platform speaks: group, versions, kinds, the labels that queue a pod, and the
names of what components/kueue.py deploys.

Imported by stacks/kueue.py (config), components/kueue.py (the manager and the queues),
components/mnist.py (the training job's queue), components/hub_config/document.py (a user
server's queue), bench/bench_kueue.py (its simulated jobs' pod groups) and the tests.
"""

from __future__ import annotations

GROUP = "kueue.x-k8s.io"
# The storage version of every Kueue CRD in v0.19 (v1beta1 is still served, converted by the
# manager's conversion webhook).
VERSION = "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
CONFIG_API_VERSION = "config.kueue.x-k8s.io/v1beta2"

# The plain-pod integration (on by default since v0.16): a pod with the queue label is gated at
# creation (SCHEDULING_GATE) until its Workload is admitted. Pods that share a group name are one
# Workload, admitted as a unit once as many pods as the total count annotation says exist.
QUEUE_LABEL = f"{GROUP}/queue-name"
POD_GROUP_LABEL = f"{GROUP}/pod-group-name"
POD_GROUP_TOTAL_COUNT = f"{GROUP}/pod-group-total-count"
SCHEDULING_GATE = f"{GROUP}/admission"
# "false" on a group's pods: the group is over once none of its pods is running or pending, with
# failed ones among them. Without it Kueue waits for a failed pod's replacement ("At least one pod
# has failed, waiting for recovery"), keeping the group's quota and its finalizer on every pod: seen
# on the real nodes (2026-12-07) for a TFJob whose PS the operator stopped once the chief had
# succeeded (exit 143), which no one replaces.
RETRIABLE_IN_GROUP = f"{GROUP}/retriable-in-group"


def pod_group(local_queue: str, group: str, total: int) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations that make a pod one of the `total` pods of `group`, queued in the
    LocalQueue `local_queue` and admitted with the others as one Workload, which ends when none of
    them runs any more (bench/bench_kueue.py puts them on its simulated jobs' pods; the stack's
    TFJob queues through TFJOB_INTEGRATION instead)."""
    return ({QUEUE_LABEL: local_queue, POD_GROUP_LABEL: group},
            {POD_GROUP_TOTAL_COUNT: str(total), RETRIABLE_IN_GROUP: "false"})

POD_INTEGRATION = "pod"
# Kueue's TFJob integration, how the stack's training job queues: a TFJob with the queue label is
# created suspended (`runPolicy.suspend`, by Kueue's webhook) and its Workload, one pod set per
# replica type, is admitted whole; Kueue then unsuspends it and leaves its pods to the training
# operator, which restarts and replaces them as it would without Kueue. The pod integration cannot
# carry a TFJob: the operator replaces a replica's pod under the same name once the old one is gone,
# and Kueue keeps a failed pod of an admitted group until its replacement runs (docs/training.md).
# Off by default upstream since v0.19 and slated for removal (kueue #12606), so named in the config.
TFJOB_INTEGRATION = "kubeflow.org/tfjob"

# What the stack deploys: the manager's namespace and names. The cert rotator derives the webhook
# configurations' names from the Service's (`<base>-webhook-service` -> `<base>-mutating-webhook-
# configuration`), so they are spelled out from one base.
NAMESPACE = "kueue-system"
NAME = "kueue"
MANAGER = f"{NAME}-controller-manager"
WEBHOOK_SERVICE = f"{NAME}-webhook-service"
WEBHOOK_SECRET = f"{NAME}-webhook-server-cert"
# What the cert rotator names its CA (pkg/util/cert/cert.go caName, caOrganization): a certificate
# in the Secret is kept only if its CA verifies for that DNS name.
CERT_ROTATOR_CA_NAME = "kueue-ca"
CERT_ROTATOR_CA_ORGANIZATION = "kueue"
MUTATING_WEBHOOK_CONFIGURATION = f"{NAME}-mutating-webhook-configuration"
VALIDATING_WEBHOOK_CONFIGURATION = f"{NAME}-validating-webhook-configuration"
# The CRDs whose versions the manager converts, and whose caBundle its cert rotator writes.
CONVERTED_CRDS = ("localqueues", "clusterqueues", "workloads", "cohorts", "multikueueclusters")

# The LocalQueue the stack makes in the job's namespace, into the ClusterQueue `kueue.trainingQueue`.
TRAINING_LOCAL_QUEUE = "training"
# The LocalQueue the stack makes in the hub's namespace, into the ClusterQueue
# `kueue.notebookQueue`: the queue label of every queued user server.
NOTEBOOK_LOCAL_QUEUE = "notebooks"

# What the hub reads of a queued user server (components/hub_config/queued_spawner.py, which the hub
# loads without mlplatform and so spells these out itself; a unit test holds them equal): the
# Workload Kueue makes for the pod, found by the pod's uid in this label, and its condition that
# says whether quota is reserved and, while it is not, why.
WORKLOADS = "workloads"
JOB_UID_LABEL = f"{GROUP}/job-uid"
QUOTA_RESERVED = "QuotaReserved"

# Kueue's visibility API (the on-demand one): pending workloads and their positions, served by the
# manager itself as an aggregated API server behind an APIService (components/kueue.py). The hub
# reads its own LocalQueue's (queued_spawner.py spells these out too; a unit test holds them equal).
VISIBILITY_GROUP = f"visibility.{GROUP}"
VISIBILITY_VERSION = "v1beta2"
VISIBILITY_SERVICE = f"{NAME}-visibility-server"
PENDING_WORKLOADS = "pendingworkloads"
LOCAL_QUEUE_PENDING_WORKLOADS = f"localqueues/{PENDING_WORKLOADS}"
