"""The Kubeflow training operator (v1 line), reconciling TFJobs only, and the TFJob CRD."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.crd_schema import tfjob_schema
from components.cluster import ANY_API_SERVER
from components.k8s import (
    app_labels,
    cert_rotator_secret,
    grant,
    pod_security_labels,
    service_await,
    webhook_controller_policies,
)
from stacks.images import ImagesSettings
from vocab.tfjob_api import (
    CERT_DIR,
    CERT_ROTATOR_CA_NAME,
    CERT_ROTATOR_CA_ORGANIZATION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    WEBHOOK_CONFIGURATION,
    WEBHOOK_SECRET,
)
from vocab.tfjob_api import OPERATOR_NAME as NAME
from vocab.tfjob_api import OPERATOR_NAMESPACE as NAMESPACE

WEBHOOK_PATH = "/validate-kubeflow-org-v1-tfjob"
WEBHOOK_PORT = 9443
HEALTH_PORT = 8081
METRICS_PORT = 8080

_VERBS_ALL = ["create", "delete", "get", "list", "patch", "update", "watch"]

# Gang scheduling: the PodGroup API of each scheduler the v1.9 operator supports. The operator
# watches PodGroups of every group whose CRD exists on the cluster, gang scheduling on or off
# (tfjob_controller.go SetupWithManager); without list and watch its cache never syncs and the
# manager exits. Only with --gang-scheduler-name does it also create, read, update and delete one
# PodGroup per job (controller.v1/control/podgroup_control.go), in that scheduler's group only.
VOLCANO = "volcano"
PODGROUP_GROUPS = {VOLCANO: "scheduling.volcano.sh", "scheduler-plugins": "scheduling.x-k8s.io"}
_PODGROUP_WATCH = ["list", "watch"]
_PODGROUP_GANG = ["create", "delete", "get", "update"]


def podgroup_group(gang_scheduler: str) -> str:
    """The PodGroup API a --gang-scheduler-name uses: Volcano's, else scheduler-plugins' (any other name)."""
    return PODGROUP_GROUPS[VOLCANO if gang_scheduler.lower() == VOLCANO else "scheduler-plugins"]


def cluster_rules(gang_scheduler: str | None = None) -> list[dict[str, Any]]:
    """Exactly what the TFJob reconciler and the webhook certificate rotator use; no wildcards."""
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": _VERBS_ALL},
        {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "delete", "get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": _VERBS_ALL},
        {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
        {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations"],
            "resourceNames": [WEBHOOK_CONFIGURATION],
            "verbs": ["update"],
        },
    ]
    gang_group = podgroup_group(gang_scheduler) if gang_scheduler else None
    for group in PODGROUP_GROUPS.values():
        verbs = _PODGROUP_WATCH + (_PODGROUP_GANG if group == gang_group else [])
        rules.append({"apiGroups": [group], "resources": ["podgroups"], "verbs": sorted(verbs)})
    return rules


# The webhook certificate lives in one Secret of the operator's own namespace.
NAMESPACE_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [WEBHOOK_SECRET], "verbs": ["update"]},
]


@dataclass(frozen=True)
class TrainingOperatorArgs:
    images: ImagesSettings = field(default_factory=ImagesSettings)
    # The admission webhook needs the API server to reach the operator's pod. A simulated
    # cluster has no pod network (and its operator runs as a local process), so there the CRD's
    # own validation rules stand in for the webhook.
    webhook: bool = True
    # --gang-scheduler-name: "volcano", or the name of a scheduler-plugins scheduler; None: off.
    gang_scheduler: str | None = None
    # NetworkPolicy egress rules to the Kubernetes API (the cluster component's api_server_egress()).
    api_server_egress: pulumi.Input[list[dict[str, Any]]] = field(default_factory=lambda: list(ANY_API_SERVER))


class TrainingOperator(pulumi.ComponentResource):
    crd: k8s.apiextensions.v1.CustomResourceDefinition
    deployment: k8s.apps.v1.Deployment
    ready: list[pulumi.Resource]  # what a TFJob must wait for before it is created

    def __init__(self, name: str, args: TrainingOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlplatform:training_operator:TrainingOperator", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = app_labels(NAME, "controller")

        self.crd = k8s.apiextensions.v1.CustomResourceDefinition(
            f"{name}-tfjob-crd",
            metadata={"name": f"{PLURAL}.{GROUP}", "labels": app_labels(NAME, "crd")},
            spec={
                "group": GROUP,
                "scope": "Namespaced",
                "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": KIND.lower()},
                "versions": [
                    {
                        "name": VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "schema": {"openAPIV3Schema": tfjob_schema()},
                        "additionalPrinterColumns": [
                            {"name": "State", "type": "string", "jsonPath": ".status.conditions[-1:].type"},
                            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                        ],
                    }
                ],
            },
            opts=child,
        )
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": NAMESPACE, "labels": {**labels, **pod_security_labels()}}, opts=child
        )
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        # Nothing in or out of the operator's namespace but what the operator needs: the API (by the
        # address in its in-cluster config, no DNS) and its webhook port; its metrics port admits
        # no one, and the kubelet's probes are the node's own traffic, which policy engines let through.
        webhook_controller_policies(name, "operator", NAME, NAMESPACE, labels, WEBHOOK_PORT, args.api_server_egress, in_namespace)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata={"name": NAME, "namespace": NAMESPACE, "labels": labels}, opts=in_namespace
        )
        grant(self, name, "ClusterRole", None, cluster_rules(args.gang_scheduler), labels, account, NAME, NAMESPACE)
        grant(self, name, "Role", NAMESPACE, NAMESPACE_RULES, labels, account, NAME, NAMESPACE, depends_on=[namespace])
        secret = cert_rotator_secret(
            f"{name}-webhook-cert", WEBHOOK_SECRET, NAMESPACE, labels,
            (CERT_ROTATOR_CA_NAME, CERT_ROTATOR_CA_ORGANIZATION), NAME, in_namespace,
        )
        # With the webhook, the provider's own wait (endpoints settled) stays: the TFJob's
        # admission needs the API server to find the webhook behind this Service. Without it,
        # nothing needs more than the Deployment's wait (components/k8s.py, service_await).
        service = k8s.core.v1.Service(
            f"{name}-svc",
            metadata={
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": labels,
                **({} if args.webhook else {"annotations": service_await("ClusterIP")}),
            },
            spec={
                "type": "ClusterIP",
                "selector": labels,
                "ports": [
                    {"name": "monitoring-port", "port": METRICS_PORT, "targetPort": METRICS_PORT},
                    {"name": "webhook-server", "port": 443, "targetPort": WEBHOOK_PORT, "protocol": "TCP"},
                ],
            },
            opts=in_namespace,
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": NAME, "namespace": NAMESPACE, "labels": labels},
            spec={
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": self._pod_spec(args.images, args.gang_scheduler)},
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace, account, secret, self.crd]),
        )
        # The operator's certificate rotator injects its CA into every webhook of this
        # configuration and starts its controllers only once that is done, so the configuration
        # exists on every cluster; where the API server could not reach the operator it lists
        # no webhook at all.
        tfjob_webhook = {
            "name": "validator.tfjob.training-operator.kubeflow.org",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "clientConfig": {"service": {"name": NAME, "namespace": NAMESPACE, "path": WEBHOOK_PATH}},
            "rules": [
                {"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": ["CREATE", "UPDATE"], "resources": [PLURAL]}
            ],
        }
        webhook = k8s.admissionregistration.v1.ValidatingWebhookConfiguration(
            f"{name}-webhook",
            metadata={"name": WEBHOOK_CONFIGURATION, "labels": labels},
            webhooks=[tfjob_webhook] if args.webhook else [],
            # The operator injects its CA into caBundle; that field is its own.
            opts=pulumi.ResourceOptions(
                parent=self, ignore_changes=["webhooks[*].clientConfig.caBundle"] if args.webhook else []
            ),
        )
        # With the webhook in place, a TFJob can only be admitted once the operator serves it: its
        # pod ready, and the Service the API server calls it by (awaited until it has endpoints).
        self.ready = [self.crd, webhook, self.deployment, service] if args.webhook else [self.crd]
        self.register_outputs({})

    @staticmethod
    def _pod_spec(images: ImagesSettings, gang_scheduler: str | None) -> dict[str, Any]:
        flags = ["--enable-scheme=tfjob", f"--webhook-server-port={WEBHOOK_PORT}"]
        if gang_scheduler:
            flags.append(f"--gang-scheduler-name={gang_scheduler}")
        return {
            "serviceAccountName": NAME,
            **({"imagePullSecrets": images.image_pull_secrets()} if images.pull_secrets else {}),
            "terminationGracePeriodSeconds": 10,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": NAME,
                    "image": images.training_operator,
                    "imagePullPolicy": images.pull_policy(),
                    "command": ["/manager"],
                    "args": flags,
                    "env": [
                        {"name": "MY_POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                    "ports": [
                        {"name": "metrics", "containerPort": METRICS_PORT},
                        {"name": "webhook-server", "containerPort": WEBHOOK_PORT, "protocol": "TCP"},
                    ],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                    "volumeMounts": [{"name": "cert", "mountPath": CERT_DIR, "readOnly": True}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": HEALTH_PORT}, "initialDelaySeconds": 15, "periodSeconds": 20},
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": HEALTH_PORT}, "initialDelaySeconds": 10, "periodSeconds": 15},
                }
            ],
            "volumes": [{"name": "cert", "secret": {"secretName": WEBHOOK_SECRET, "defaultMode": 420}}],
        }
