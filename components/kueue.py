"""Kueue: its manager, CRDs and webhooks, the resource flavors of the node pools, and the
ClusterQueues of `kueue.clusterQueues`.

What the manager needs that upstream generates (the CRDs, the webhook list, the ClusterRole) is
read from the Kueue module at the pinned version (`tools/build.sh kueue-manifests` copies it out
of the module), and only the parts for what this stack runs are kept: the plain-pod integration
for the hub's queued servers and the TFJob integration for the training job (the two enabled, each
in the namespaces it queues), Kueue's own API, no leader election. The manager's Deployment,
Services, config, namespace and NetworkPolicies are written here, and what its visibility API needs
(`visibility_api` below).

The visibility API (`visibility.kueue.x-k8s.io`, on by default since v0.9: the VisibilityOnDemand
feature gate) answers which workloads wait in a queue and at which position; the hub shows a
queued server its position from it. The manager serves it itself, as an aggregated API server
behind an APIService, so the API server authenticates and authorizes every caller first, and the
manager checks again by delegating to the API server (TokenReview, SubjectAccessReview: the
`system:auth-delegator` ClusterRole) and reading the API server's client and front-proxy CAs
(the `extension-apiserver-authentication-reader` Role in kube-system). Of upstream's install
(config/components/visibility) this deploys the APIService of v1beta2 only (the hub's version;
v1beta1 is the deprecated one), its Service, and those two bindings; not the optional
API-priority-and-fairness objects (visibility-apf). Like upstream's, the APIService skips
verifying the server's certificate: the manager makes a self-signed one when it starts, so there
is no CA to pin; the API server still proves itself to the manager with its front-proxy client
certificate, and the API answers reads only.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.cluster import ANY_API_SERVER, Cluster, Placement
from components.k8s import (
    app_labels,
    cert_rotator_secret,
    grant,
    pod_security_labels,
    restricted,
    webhook_controller_policies,
)
from stacks.images import ImagesSettings
from stacks.cluster import NodePool
from stacks.kueue import ClusterQueueSettings, KueueSettings
from vocab.tfjob_api import GROUP as TFJOB_GROUP
from vocab.tfjob_api import PLURAL as TFJOB_PLURAL
from vocab.kueue_api import (
    API_VERSION,
    CERT_ROTATOR_CA_NAME,
    CERT_ROTATOR_CA_ORGANIZATION,
    CONFIG_API_VERSION,
    LOCAL_QUEUE_PENDING_WORKLOADS,
    CONVERTED_CRDS,
    GROUP,
    MANAGER,
    MUTATING_WEBHOOK_CONFIGURATION,
    NAME,
    NAMESPACE,
    POD_INTEGRATION,
    QUEUE_LABEL,
    TFJOB_INTEGRATION,
    VALIDATING_WEBHOOK_CONFIGURATION,
    VISIBILITY_GROUP,
    VISIBILITY_SERVICE,
    VISIBILITY_VERSION,
    WEBHOOK_SECRET,
    WEBHOOK_SERVICE,
)

WEBHOOK_PORT = 9443
HEALTH_PORT = 8081
# Where the manager serves the visibility API (config.kueue.x-k8s.io DefaultVisibilityBindPort).
VISIBILITY_PORT = 8082
# Where its server writes the self-signed certificate it makes at start (hard-coded upstream,
# pkg/visibility): an emptyDir, the root filesystem being read-only.
VISIBILITY_CERT_DIR = "/visibility"
CONFIG_FILE = "controller_manager_config.yaml"
# PyYAML's libyaml-backed loader (its wheels carry libyaml), else its own: the same documents.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
CONFIG_MAP = f"{NAME}-manager-config"
# The manager's default (config.kueue.x-k8s.io DefaultWebhookCertDir), where the cert rotator
# writes the serving certificate it keeps in WEBHOOK_SECRET.
CERT_DIR = "/tmp/k8s-webhook-server/serving-certs"

# API groups of the generated ClusterRole that the manager uses with the pod integration on:
# the core API (pods, their finalizers and status, namespaces, nodes, limit ranges, pod
# templates), its own API, the webhook configurations and CRDs its cert rotator writes the CA
# into, events, priority classes, runtime classes (pod overhead), DRA objects (devices a pod
# claims count against quota), flow control (the visibility API's), and read access to
# Deployments, ReplicaSets and StatefulSets (a pod's owners). Of Kubeflow's API only the TFJob
# rules are kept, and only while the TFJob integration is on (TFJOB_RESOURCES). The rules for the
# other integrations (batch Jobs, JobSets, the other Kubeflow jobs, Ray, LeaderWorkerSets,
# AppWrappers, Spark, TrainJobs, ProvisioningRequests) are dropped: those controllers never start here.
MANAGER_API_GROUPS = frozenset({
    "", GROUP, "admissionregistration.k8s.io", "apiextensions.k8s.io", "events.k8s.io", "scheduling.k8s.io",
    "node.k8s.io", "resource.k8s.io", "flowcontrol.apiserver.k8s.io", "apps",
})
# The generated rules name the webhook configurations without the installer's prefix (kustomize
# and Helm add it); this stack's are named from WEBHOOK_SERVICE as the rotator derives them.
_UNPREFIXED_WEBHOOK_CONFIGURATIONS = {
    "mutating-webhook-configuration": MUTATING_WEBHOOK_CONFIGURATION,
    "validating-webhook-configuration": VALIDATING_WEBHOOK_CONFIGURATION,
}


def kueue_manifests_dir() -> Path:
    """Where `tools/build.sh kueue-manifests` puts what it reads from the module (tools/versions.sh)."""
    from tools.layout import tools_layout

    return Path(tools_layout()["KUEUE_MANIFESTS_DIR"])


class KueueManifestsError(RuntimeError):
    """The manifests read from the Kueue module are missing (tools/build.sh kueue-manifests)."""


def drop_pod_template_descriptions(crd: dict[str, Any]) -> dict[str, Any]:
    """CRD, changed in place: the field descriptions left out of the pod templates its schemas embed.

    The Workload CRD embeds core/v1's whole PodTemplateSpec schema, descriptions included, in each
    pod set of each of its two versions: 620 of the 850 kB of Kueue's CRDs, which every run of the
    program serializes and reads back and every checkpoint stores (73 % of the dev stack's state).
    Without them the CRD validates exactly the same objects, and `kubectl explain` finds those
    fields' descriptions under pods (`kubectl explain pod.spec`). In place: the CRDs are freshly
    loaded, and a deep copy of them costs a tenth of a second of every run.
    """

    def stripped(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: stripped(value) for key, value in node.items() if key != "description"}
        if isinstance(node, list):
            return [stripped(value) for value in node]
        return node

    for version in crd.get("spec", {}).get("versions", []):
        spec = version.get("schema", {}).get("openAPIV3Schema", {}).get("properties", {}).get("spec", {})
        pod_set = spec.get("properties", {}).get("podSets", {}).get("items", {}).get("properties", {})
        if "template" in pod_set:
            template = pod_set["template"]
            pod_set["template"] = stripped(template)
            if "description" in template:  # the template's own line says what it is
                pod_set["template"]["description"] = template["description"]
    return crd


@dataclass(frozen=True)
class KueueManifests:
    """What upstream generates into the Kueue module (config/components), as tools/build.sh
    kueue-manifests copies it: crd/*.yaml, webhooks.yaml, role.yaml."""

    directory: Path

    def _load_all(self, name: str) -> list[dict[str, Any]]:
        path = self.directory / name
        if not path.is_file():
            raise KueueManifestsError(
                f"{path} is missing: run `tools/build.sh kueue-manifests` (the Kueue CRDs, webhooks and RBAC "
                "come from its module at the version versions.env pins)"
            )
        # libyaml's loader where PyYAML has it: the CRDs are 1.6 MB, about 1 s of pure-Python
        # parsing in every run of the program (a preview, and each of `pulumi up`'s two passes).
        return [doc for doc in yaml.load_all(path.read_text(), Loader=SAFE_LOADER) if doc]

    def crds(self) -> list[dict[str, Any]]:
        names = sorted(p.name for p in (self.directory / "crd").glob("*.yaml")) if (self.directory / "crd").is_dir() else []
        if not names:
            self._load_all("crd/kueue.x-k8s.io_clusterqueues.yaml")  # raises, naming the build step
        return [drop_pod_template_descriptions(doc) for name in names for doc in self._load_all(f"crd/{name}")]

    def webhooks(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The mutating and the validating webhook configuration, as generated."""
        docs = {doc["kind"]: doc for doc in self._load_all("webhooks.yaml")}
        return docs["MutatingWebhookConfiguration"], docs["ValidatingWebhookConfiguration"]

    def cluster_rules(self) -> list[dict[str, Any]]:
        (role,) = self._load_all("role.yaml")
        return role["rules"]


# What the TFJob integration reads and writes of Kubeflow's API (the generated rules name every
# Kubeflow job kind together; these are the TFJob's of them).
TFJOB_RESOURCES = frozenset({TFJOB_PLURAL, f"{TFJOB_PLURAL}/status", f"{TFJOB_PLURAL}/finalizers"})


def manager_rules(generated: list[dict[str, Any]], tfjobs: bool) -> list[dict[str, Any]]:
    """The generated ClusterRole's rules that the manager needs here (MANAGER_API_GROUPS, and the
    TFJob's rules of Kubeflow's API when `tfjobs`), with the webhook configurations' names as this
    stack gives them."""
    rules = []
    for rule in generated:
        rule = copy.deepcopy(rule)
        if tfjobs and rule["apiGroups"] == [TFJOB_GROUP]:
            rule["resources"] = [r for r in rule["resources"] if r in TFJOB_RESOURCES]
            if rule["resources"]:
                rules.append(rule)
            continue
        if not set(rule["apiGroups"]) <= MANAGER_API_GROUPS:
            continue
        if "resourceNames" in rule:
            rule["resourceNames"] = [_UNPREFIXED_WEBHOOK_CONFIGURATIONS.get(n, n) for n in rule["resourceNames"]]
        rules.append(rule)
    return rules


@dataclass(frozen=True)
class QueuedNamespaces:
    """The namespaces whose user servers (plain pods, the hub's) and whose TFJobs (the training
    job's) Kueue queues, by their names: each integration is on only where it queues something."""

    pods: tuple[str, ...] = ()
    tfjobs: tuple[str, ...] = ()

    def all(self) -> list[str]:
        return sorted({*self.pods, *self.tfjobs})

    def frameworks(self) -> list[str]:
        return [name for name, on in ((POD_INTEGRATION, self.pods), (TFJOB_INTEGRATION, self.tfjobs)) if on]


def _scoped(hook: dict[str, Any], namespaces: tuple[str, ...]) -> dict[str, Any]:
    """HOOK called only in NAMESPACES, and only for objects with a queue name."""
    hook["namespaceSelector"] = {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(namespaces)}]
    }
    hook["objectSelector"] = {"matchExpressions": [{"key": QUEUE_LABEL, "operator": "Exists"}]}
    return hook


def _webhook_for(webhook: dict[str, Any], queued: QueuedNamespaces) -> dict[str, Any] | None:
    """A generated webhook, pointed at the stack's Service, if it serves Kueue's own API, pods or
    TFJobs; pod and TFJob webhooks only in the namespaces whose pods or TFJobs are queued and only
    for objects with a queue name (the manager leaves others alone: manageJobsWithoutQueueName is
    false, and no LocalQueue is named `default`), so that nothing else (kube-system above all, the
    hub and its proxy in the hub's namespace, the training job's pods) waits on Kueue to be created."""
    groups = {g for rule in webhook["rules"] for g in rule["apiGroups"]}
    resources = {r for rule in webhook["rules"] for r in rule["resources"]}
    hook = copy.deepcopy(webhook)
    hook["clientConfig"]["service"].update({"name": WEBHOOK_SERVICE, "namespace": NAMESPACE})
    if groups == {GROUP}:
        return hook
    if groups == {""} and resources == {"pods"}:
        return _scoped(hook, queued.pods) if queued.pods else None
    if groups == {TFJOB_GROUP} and resources == {TFJOB_PLURAL}:
        return _scoped(hook, queued.tfjobs) if queued.tfjobs else None
    return None


def stack_webhooks(generated: dict[str, Any], queued: QueuedNamespaces) -> list[dict[str, Any]]:
    """The webhooks of a generated webhook configuration that this stack keeps (_webhook_for)."""
    return [w for w in (_webhook_for(h, queued) for h in generated["webhooks"]) if w]


def manager_config(queued: QueuedNamespaces) -> dict[str, Any]:
    """The manager's Configuration (config.kueue.x-k8s.io/v1beta2)."""
    return {
        "apiVersion": CONFIG_API_VERSION,
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f":{HEALTH_PORT}"},
        # No metrics endpoint: nothing here scrapes it, and upstream serves it only behind
        # authentication that needs more RBAC (tokenreviews, subjectaccessreviews).
        "metrics": {"bindAddress": "0"},
        "webhook": {"port": WEBHOOK_PORT},
        # One replica: no leader to elect, so no Lease or ConfigMap rights.
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_SECRET,
        },
        # Only pods and TFJobs that carry a queue name are queued, and only in these namespaces.
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": queued.all() or ["-"]}
            ]
        },
        "integrations": {"frameworks": queued.frameworks()},
    }


def visibility_api() -> dict[str, Any]:
    """What the visibility API needs beside the manager, as plain objects: its Service, the
    APIService of VISIBILITY_VERSION, and the manager's two grants as an API server that delegates
    authentication and authorization to the cluster's (upstream's config/components/visibility,
    with the names this stack gives)."""
    subject = [{"kind": "ServiceAccount", "name": MANAGER, "namespace": NAMESPACE}]
    labels = app_labels(NAME, "visibility")
    return {
        "service": {
            "metadata": {"name": VISIBILITY_SERVICE, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": app_labels(NAME, "controller"),
                "ports": [{"name": "https", "port": 443, "targetPort": VISIBILITY_PORT, "protocol": "TCP"}],
            },
        },
        "api_service": {
            "metadata": {"name": f"{VISIBILITY_VERSION}.{VISIBILITY_GROUP}", "labels": labels},
            "spec": {
                "group": VISIBILITY_GROUP,
                "version": VISIBILITY_VERSION,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": VISIBILITY_SERVICE, "namespace": NAMESPACE, "port": 443},
                # The manager's certificate is self-signed at its start: nothing to pin (as upstream).
                "insecureSkipTLSVerify": True,
            },
        },
        # TokenReviews and SubjectAccessReviews (create), to check each caller with the API server.
        "auth_delegator": {
            "metadata": {"name": f"{MANAGER}-auth-delegator", "labels": labels},
            "role_ref": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": subject,
        },
        # The ConfigMap extension-apiserver-authentication in kube-system (the client CAs), read only.
        "auth_reader": {
            "metadata": {"name": f"{MANAGER}-auth-reader", "namespace": "kube-system", "labels": labels},
            "role_ref": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "extension-apiserver-authentication-reader"},
            "subjects": subject,
        },
    }


def pending_workloads_rules(local_queue: str) -> list[dict[str, Any]]:
    """Read access to one LocalQueue's pending workloads through the visibility API (for a Role
    in the LocalQueue's namespace): get, on that queue only."""
    return [{
        "apiGroups": [VISIBILITY_GROUP],
        "resources": [LOCAL_QUEUE_PENDING_WORKLOADS],
        "resourceNames": [local_queue],
        "verbs": ["get"],
    }]


def flavor_name(pool: str) -> str:
    """The ResourceFlavor of a node pool."""
    return f"pool-{pool}"


def resource_flavor_spec(pool: NodePool, cluster: Placement) -> dict[str, Any]:
    """A pool's ResourceFlavor: the pool's node labels, and its taints (which Kueue checks the
    workload's tolerations against)."""
    spec: dict[str, Any] = {"nodeLabels": cluster.pool_selector(pool)}
    taints = [{"key": t.key, **({"value": t.value} if t.value is not None else {}), "effect": t.effect}
              for t in pool.taints]
    if taints:
        spec["nodeTaints"] = taints
    return spec


def cluster_queue_spec(queue: ClusterQueueSettings, cluster: Placement) -> dict[str, Any]:
    """One resource group over cpu, memory and the GPU resource of each pool the queue has a quota
    of, one flavor per pool (a pod lands on its pool's flavor by its node selector)."""
    pools = {p.name: p for p in cluster.settings.node_pools}
    gpu_resources = sorted({pools[q.pool].gpu_resource for q in queue.quotas if pools[q.pool].gpus_per_node})
    covered = ["cpu", "memory", *gpu_resources]
    flavors = []
    for quota in queue.quotas:
        pool = pools[quota.pool]
        nominal = {"cpu": quota.cpu, "memory": quota.memory}
        nominal.update({r: str(quota.gpus if r == pool.gpu_resource and pool.gpus_per_node else 0) for r in gpu_resources})
        flavors.append({
            "name": flavor_name(quota.pool),
            "resources": [{"name": r, "nominalQuota": nominal[r]} for r in covered],
        })
    spec: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": covered, "flavors": flavors}],
        # Within a cohort a queue may lend its idle quota and take it back when it needs it.
        "preemption": {"reclaimWithinCohort": "Any", "withinClusterQueue": "Never"},
    }
    if queue.cohort:
        spec["cohortName"] = queue.cohort
    return spec


def stack_crd(generated: dict[str, Any]) -> dict[str, Any]:
    """A generated CRD as this stack deploys it: the converted ones with the manager's conversion
    webhook, labelled as the stack's, without upstream's annotations."""
    crd = copy.deepcopy(generated)
    plural = crd["spec"]["names"]["plural"]
    if plural in CONVERTED_CRDS:
        # Served at v1beta1 and v1beta2: the manager converts between them, as upstream's
        # install configures it; its cert rotator injects the CA into caBundle.
        crd["spec"]["conversion"] = {
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": {"service": {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE, "path": "/convert", "port": 443}},
                "conversionReviewVersions": ["v1"],
            },
        }
    crd["metadata"] = {**crd["metadata"], "labels": {**crd["metadata"].get("labels", {}), **app_labels(NAME, "crd")}}
    crd["metadata"].pop("annotations", None)
    return crd


@dataclass(frozen=True)
class KueueArgs:
    settings: KueueSettings
    cluster: Cluster
    manifests: KueueManifests
    images: ImagesSettings = field(default_factory=ImagesSettings)
    # The namespaces whose user servers and whose TFJobs Kueue queues.
    queued: QueuedNamespaces = field(default_factory=QueuedNamespaces)
    api_server_egress: pulumi.Input[list[dict[str, Any]]] = field(default_factory=lambda: list(ANY_API_SERVER))


class Kueue(pulumi.ComponentResource):
    deployment: k8s.apps.v1.Deployment
    ready: list[pulumi.Resource]  # what a LocalQueue must wait for (the webhooks serve it)
    visibility: k8s.apiregistration.v1.APIService  # the visibility API's registration
    status_command: str  # the kubectl line that shows the queues and what waits in them
    cluster_queues: dict[str, k8s.apiextensions.CustomResource]

    def __init__(self, name: str, args: KueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        crds = args.manifests.crds()
        mutating, validating = args.manifests.webhooks()
        rules = manager_rules(args.manifests.cluster_rules(), tfjobs=bool(args.queued.tfjobs))
        super().__init__("mlplatform:kueue:Kueue", name, None, opts)
        labels = app_labels(NAME, "controller")
        child = pulumi.ResourceOptions(parent=self)

        crd_resources = [self._crd(name, crd, labels) for crd in crds]
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": NAMESPACE, "labels": {**labels, **pod_security_labels()}}, opts=child
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        # The manager reaches the Kubernetes API only, and is reached on its webhook port and its
        # visibility API's only (both called by the API server).
        webhook_controller_policies(name, "manager", NAME, NAMESPACE, labels, WEBHOOK_PORT, args.api_server_egress,
                                    in_namespace, also_served=(VISIBILITY_PORT,))
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata={"name": MANAGER, "namespace": NAMESPACE, "labels": labels}, opts=in_namespace
        )
        grant(self, name, "ClusterRole", None, rules, labels, account, MANAGER, NAMESPACE)
        # The cert rotator keeps the webhook certificate in one Secret of its namespace.
        secret_rules = [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [WEBHOOK_SECRET], "verbs": ["update"]},
        ]
        grant(self, name, "Role", NAMESPACE, secret_rules, labels, account, MANAGER, NAMESPACE, depends_on=[namespace])
        secret = cert_rotator_secret(
            f"{name}-webhook-cert", WEBHOOK_SECRET, NAMESPACE, labels,
            (CERT_ROTATOR_CA_NAME, CERT_ROTATOR_CA_ORGANIZATION), WEBHOOK_SERVICE, in_namespace,
        )
        # The manager exits when its visibility server cannot read the API server's client CAs:
        # it starts once it may.
        visibility = visibility_api()
        visibility_grants = self._visibility_grants(name, account, visibility)
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": CONFIG_MAP, "namespace": NAMESPACE, "labels": labels},
            data={CONFIG_FILE: yaml.safe_dump(manager_config(args.queued), sort_keys=False)},
            opts=in_namespace,
        )
        service = k8s.core.v1.Service(
            f"{name}-webhook-svc",
            metadata={"name": WEBHOOK_SERVICE, "namespace": NAMESPACE, "labels": labels},
            spec={
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "webhook", "port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP"}],
            },
            opts=in_namespace,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": MANAGER, "namespace": NAMESPACE, "labels": labels},
            spec={
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {
                        "labels": labels,
                        # A changed config restarts the manager, which reads it only at start.
                        "annotations": {"mlplatform.dev/config-checksum": _checksum(manager_config(args.queued))},
                    },
                    "spec": self._pod_spec(args.images),
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[namespace, account, secret, config, *visibility_grants, *crd_resources]
            ),
        )
        hooks = []
        for kind, generated, configuration in (
            ("mutating", mutating, MUTATING_WEBHOOK_CONFIGURATION),
            ("validating", validating, VALIDATING_WEBHOOK_CONFIGURATION),
        ):
            webhooks = stack_webhooks(generated, args.queued)
            resource = (
                k8s.admissionregistration.v1.MutatingWebhookConfiguration
                if kind == "mutating" else k8s.admissionregistration.v1.ValidatingWebhookConfiguration
            )
            hooks.append(resource(
                f"{name}-{kind}-webhook",
                metadata={"name": configuration, "labels": labels},
                webhooks=webhooks,
                # The manager's cert rotator injects its CA into caBundle; that field is its own.
                # Created beside the Deployment, not after it: the manager's cert rotator injects
                # the CA into these before the manager reports ready.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["webhooks[*].clientConfig.caBundle"]),
            ))
        # The hub's queued spawner reads positions here; it says less while this is unavailable.
        self.visibility = self._visibility_api(name, in_namespace, visibility)
        # Kueue's objects are admitted by its webhooks: they wait for the manager to serve them.
        self.ready = [*crd_resources, self.deployment, service, *hooks]
        on_kueue = pulumi.ResourceOptions(parent=self, depends_on=self.ready)
        pools = {p.name: p for p in args.cluster.settings.node_pools}
        flavors = sorted({q.pool for queue in args.settings.cluster_queues for q in queue.quotas})
        flavor_resources = []
        for pool_name in flavors:
            flavor_resources.append(k8s.apiextensions.CustomResource(
                f"{name}-flavor-{pool_name}",
                api_version=API_VERSION,
                kind="ResourceFlavor",
                metadata={"name": flavor_name(pool_name), "labels": app_labels(NAME, "flavor")},
                spec=resource_flavor_spec(pools[pool_name], args.cluster),
                opts=on_kueue,
            ))
        self.cluster_queues = {}
        for queue in args.settings.cluster_queues:
            self.cluster_queues[queue.name] = k8s.apiextensions.CustomResource(
                f"{name}-cq-{queue.name}",
                api_version=API_VERSION,
                kind="ClusterQueue",
                metadata={"name": queue.name, "labels": app_labels(NAME, "cluster-queue")},
                spec=cluster_queue_spec(queue, args.cluster),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*self.ready, *flavor_resources]),
            )
        # What `pulumi up` prints for it (stack output kueueQueues): each queue's admitted and pending
        # workloads, and what waits, with Kueue's reason, in every queued namespace.
        reserved = ".status.conditions[?(@.type=='QuotaReserved')]"
        self.status_command = (
            "kubectl get clusterqueues,localqueues -A && kubectl get workloads -A -o "
            f'"custom-columns=NAMESPACE:.metadata.namespace,NAME:.metadata.name,QUEUE:.spec.queueName,'
            f'RESERVED:{reserved}.status,WHY:{reserved}.message"'
        )
        self.register_outputs({"status_command": self.status_command})

    def local_queue(
        self, name: str, queue: str, namespace: pulumi.Input[str], cluster_queue: str, opts: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        """A LocalQueue `queue` in `namespace` (which `opts` must wait for) into `cluster_queue`."""
        return k8s.apiextensions.CustomResource(
            name,
            api_version=API_VERSION,
            kind="LocalQueue",
            metadata={"name": queue, "namespace": namespace, "labels": app_labels(NAME, "local-queue")},
            spec={"clusterQueue": cluster_queue},
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(depends_on=[*self.ready, self.cluster_queues[cluster_queue]])
            ),
        )

    def _visibility_grants(self, name: str, account: k8s.core.v1.ServiceAccount,
                           objects: dict[str, Any]) -> list[pulumi.Resource]:
        return [
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-visibility-auth-delegator", **objects["auth_delegator"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
            ),
            k8s.rbac.v1.RoleBinding(
                f"{name}-visibility-auth-reader", **objects["auth_reader"],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
            ),
        ]

    def _visibility_api(self, name: str, in_namespace: pulumi.ResourceOptions,
                        objects: dict[str, Any]) -> k8s.apiregistration.v1.APIService:
        service = k8s.core.v1.Service(f"{name}-visibility-svc", **objects["service"], opts=in_namespace)
        # Registered once the manager serves it (and removed before the manager goes): an
        # APIService whose server is missing fails discovery of its group, which holds up
        # namespace deletion cluster-wide while it lasts.
        return k8s.apiregistration.v1.APIService(
            f"{name}-visibility-apiservice", **objects["api_service"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment, service]),
        )

    def _crd(self, name: str, crd: dict[str, Any], labels: dict[str, str]) -> k8s.apiextensions.v1.CustomResourceDefinition:
        crd = stack_crd(crd)
        plural = crd["spec"]["names"]["plural"]
        return k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-crd-{plural}",
            metadata=crd["metadata"],
            spec=crd["spec"],
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["spec.conversion.webhook.clientConfig.caBundle"] if plural in CONVERTED_CRDS else []
            ),
        )

    @staticmethod
    def _pod_spec(images: ImagesSettings) -> dict[str, Any]:
        return {
            "serviceAccountName": MANAGER,
            **({"imagePullSecrets": images.image_pull_secrets()} if images.pull_secrets else {}),
            "terminationGracePeriodSeconds": 10,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "manager",
                    "image": images.kueue,
                    "imagePullPolicy": images.pull_policy(),
                    "command": ["/manager"],
                    # The visibility API is on (VisibilityOnDemand, beta and on by default since v0.9).
                    "args": [f"--config=/{CONFIG_FILE}", "--zap-log-level=2"],
                    "ports": [
                        {"name": "webhook-server", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
                        {"name": "visibility", "containerPort": VISIBILITY_PORT, "protocol": "TCP"},
                    ],
                    "securityContext": {**restricted(), "readOnlyRootFilesystem": True},
                    # Upstream's limits are 2 CPUs and 512Mi; one CPU is enough for one team's queues.
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                    "volumeMounts": [
                        {"name": "cert", "mountPath": CERT_DIR, "readOnly": True},
                        {"name": "config", "mountPath": f"/{CONFIG_FILE}", "subPath": CONFIG_FILE, "readOnly": True},
                        {"name": "visibility", "mountPath": VISIBILITY_CERT_DIR},
                    ],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": HEALTH_PORT}, "initialDelaySeconds": 15, "periodSeconds": 20},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT}, "initialDelaySeconds": 5, "periodSeconds": 10},
                }
            ],
            "volumes": [
                {"name": "cert", "secret": {"secretName": WEBHOOK_SECRET, "defaultMode": 420}},
                {"name": "config", "configMap": {"name": CONFIG_MAP}},
                {"name": "visibility", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            ],
        }


def _checksum(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
