"""What the components share about Kubernetes objects: label sets, network ranges, patch annotations.

The label keys and resource names that `stacks/` needs too live in vocab/names.py (no Pulumi there).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import tls
from vocab.names import (  # noqa: F401 (re-exported for the components)
    CAPACITY_ANNOTATION,
    DEVICE_PLUGIN_CONFIG_LABEL,
    GPU_RESOURCE,
    KWOK_NODE_ANNOTATION,
    PART_OF,
    POOL_LABEL,
)
from vocab.versions import PINS

# Pod Security Admission (built into the API server since Kubernetes 1.25): a namespace's labels say
# which Pod Security Standard its pods must meet. The version label pins the standard as it was in
# the Kubernetes minor the platform is built and tested against (versions.env), so a cluster
# upgrade never tightens it unannounced; a newer API server evaluates a pinned older version as
# that version said.
POD_SECURITY_MODES = ("enforce", "audit", "warn")
POD_SECURITY_VERSION = "v" + ".".join(PINS["KUBERNETES_VERSION"].lstrip("v").split(".")[:2])

# Where user servers and training pods may not connect: every IPv4 range that is not globally
# reachable (IANA's special-purpose registry), so the pod and service networks (other users, the
# Kubernetes API's in-cluster address), the nodes and cloud metadata endpoints (169.254.169.254)
# are out of reach, while the internet is not. Not only the private ones: an API server may be
# advertised at a reserved address (the local cluster's is 192.0.2.2, TEST-NET-1), and the
# `kubernetes` Service's traffic is checked against that endpoint once kube-proxy has translated it.
NON_INTERNET_RANGES = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier-grade NAT)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local, cloud metadata
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # TEST-NET-1 (documentation)
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
)
DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
# The cluster DNS pods: CoreDNS keeps the kube-dns label on kubeadm, AKS, EKS and GKE.
CLUSTER_DNS_PEER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}

# Every container of the platform runs without privilege escalation and Linux capabilities.
RESTRICTED_CONTAINER: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def restricted() -> dict[str, Any]:
    """A fresh copy of RESTRICTED_CONTAINER for one container's securityContext."""
    return copy.deepcopy(RESTRICTED_CONTAINER)


def pod_security_labels(enforce: str = "restricted") -> dict[str, str]:
    """A namespace's Pod Security Admission labels: `enforce` refuses pods below that level; audit
    and warn always hold the namespace to `restricted`, so a namespace allowed less (a profile's
    `podSecurity: baseline`) still says so in the audit log and to whoever creates such a pod."""
    levels = {"enforce": enforce, "audit": "restricted", "warn": "restricted"}
    labels: dict[str, str] = {}
    for mode in POD_SECURITY_MODES:
        labels[f"pod-security.kubernetes.io/{mode}"] = levels[mode]
        labels[f"pod-security.kubernetes.io/{mode}-version"] = POD_SECURITY_VERSION
    return labels


def default_deny(namespace: pulumi.Input[str], labels: dict[str, str], opts: pulumi.ResourceOptions,
                 resource_name: str) -> k8s.networking.v1.NetworkPolicy:
    """The NetworkPolicy `default-deny` of `namespace`: every pod there selected for ingress and
    egress with no rule, so nothing reaches a pod or leaves it unless another policy allows it
    (policies add up; none takes an allow away)."""
    return k8s.networking.v1.NetworkPolicy(
        resource_name,
        metadata={"name": "default-deny", "namespace": namespace, "labels": labels},
        spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        opts=opts,
    )

def webhook_controller_policies(
    name: str,
    component: str,
    app: str,
    namespace: str,
    pod_labels: dict[str, str],
    webhook_port: int,
    api_server: pulumi.Input[list[dict[str, Any]]],
    opts: pulumi.ResourceOptions,
    also_served: tuple[int, ...] = (),
) -> None:
    """The policies of a namespace that holds one controller with an admission webhook: default
    deny, then the controller (`pod_labels`) reaching the Kubernetes API only (`api_server`, the
    egress rules to its address) and reached on its webhook port only. The webhook's caller is the
    API server, whose source address no rule can name across clusters (a control-plane node, a
    konnectivity agent, a managed control plane's tunnel): so from anywhere, as cert-manager's
    chart does for its webhook; a webhook answers TLS admission reviews and nothing else.
    `also_served`: other ports the API server calls the controller on (an aggregated API). Pulumi
    names them `<name>-netpol-default-deny` and `<name>-netpol-<component>`."""
    policy_labels = app_labels(app, "network-policy")
    default_deny(namespace, policy_labels, opts, f"{name}-netpol-default-deny")
    k8s.networking.v1.NetworkPolicy(
        f"{name}-netpol-{component}",
        metadata={"name": app, "namespace": namespace, "labels": policy_labels},
        spec={
            "podSelector": {"matchLabels": pod_labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": port} for port in (webhook_port, *also_served)]}],
            "egress": api_server,
        },
        opts=opts,
    )

# A public Service is replaced when its type changes but keeps its name (users port-forward to
# it), so the replacement's preview is a server-side dry-run apply over the live Service. Under
# the fresh field manager a new resource gets, that apply keeps the old type's fields, and the API
# server refuses e.g. loadBalancerSourceRanges on a ClusterIP Service; the same manager for every
# generation of the Service lets the dry run drop them, as the real replacement does.
FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"
FIELD_MANAGER = "mlplatform"


# Drift heals on `pulumi up --refresh`. A field someone changed by hand (`kubectl edit`, `kubectl
# scale`) belongs to that field manager from then on, and Server-Side Apply refuses to take it
# back ("conflict with kubectl with subresource scale") unless the apply is forced. The provider
# documents this annotation as the per-object switch; every object of the stack carries it, so
# the declared state wins, as users of `pulumi up` expect. Fields the stack does not declare stay
# with whoever set them.
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"


def _force_annotation(metadata: Any) -> Any:
    def add(meta: Any) -> dict[str, Any]:
        meta = dict(meta or {})
        meta["annotations"] = {**(meta.get("annotations") or {}), PATCH_FORCE_ANNOTATION: "true"}
        return meta

    if metadata is None or (isinstance(metadata, dict) and not isinstance(metadata.get("annotations"), pulumi.Output)):
        return add(metadata)
    return pulumi.Output.from_input(metadata).apply(add)


def declared_state_wins(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
    """A stack transformation: every Kubernetes object is applied with conflicts forced."""
    if not args.type_.startswith("kubernetes:") or "metadata" not in args.props:
        return None
    props = {**args.props, "metadata": _force_annotation(args.props["metadata"])}
    return pulumi.ResourceTransformationResult(props, args.opts)


# What `pulumi up` waits for on a Service. The provider's own wait for a Service with a selector
# ends 10 s after the last change to its Endpoints ("settled"), on every create and update, and
# asks nothing of the pods that its Deployment's wait does not already ask more precisely (each
# replica Ready and Available). The Services the stack fronts its Deployments with therefore skip
# it: the Deployment, which the provider waits for, is what says they serve. A LoadBalancer still
# waits for its address, which the stack's outputs show (pulumi.com/waitFor replaces the
# provider's wait with that one condition). A Service something else needs endpoints behind before
# it is created (the operator's webhook, before the TFJob) keeps the provider's wait.
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
WAIT_FOR_ANNOTATION = "pulumi.com/waitFor"


def service_await(service_type: str) -> dict[str, str]:
    """The annotation that makes a Service fronting an awaited Deployment wait only for what its
    Deployment's wait does not cover: a LoadBalancer's address."""
    if service_type == "LoadBalancer":
        return {WAIT_FOR_ANNOTATION: "jsonpath={.status.loadBalancer.ingress}"}
    return {SKIP_AWAIT_ANNOTATION: "true"}


def secret_value(value: str) -> str:
    """A value as a Secret's `data` holds it (base64), the form the provider keeps in state."""
    return base64.b64encode(value.encode()).decode()


def cert_rotator_secret(
    name: str,
    secret_name: str,
    namespace: str,
    labels: dict[str, str],
    ca: tuple[str, str],
    service: str,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """The Secret in which a controller's cert rotator keeps its webhook certificate, created with
    a first one (`ca`: the CA's name and organization as the rotator names them; `service`: the
    webhook Service's name in `namespace`).

    Created empty, the rotator writes a certificate into it when the controller starts and then
    waits for the kubelet to mount the changed Secret before the controller is ready, on every
    fresh deploy (docs/benchmarks.md has how long). With a certificate the rotator keeps, the pod
    starts with it mounted. Drawn on every run like the hub's other secrets; `ignore_changes` keeps the one in
    Pulumi's state (encrypted) and never touches what the rotator writes later (its renewals),
    so an existing stack keeps the rotator's own certificate.
    """
    data = tls.cert_rotator_secret_data(*ca, f"{service}.{namespace}.svc")
    encoded = pulumi.Output.secret({key: secret_value(value) for key, value in data.items()})
    return k8s.core.v1.Secret(
        name,
        metadata={"name": secret_name, "namespace": namespace, "labels": labels},
        type="Opaque",
        data=encoded,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["data"])),
    )


def grant(
    parent: pulumi.Resource,
    name: str,
    kind: str,
    namespace: str | None,
    rules: list[dict[str, Any]],
    labels: dict[str, str],
    account: k8s.core.v1.ServiceAccount,
    account_name: str,
    account_namespace: str,
    depends_on: list[pulumi.Resource] | None = None,
) -> None:
    """A ClusterRole (`namespace` None) or Role with `rules`, bound to `account` (named
    `account_name` in `account_namespace`): both named as the account, as a controller's own grants
    are. Pulumi names them `<name>-<kind>` and `<name>-<kind>binding` under `parent`."""
    metadata = {"name": account_name, "labels": labels, **({"namespace": namespace} if namespace else {})}
    slug = kind.lower()
    role_type = k8s.rbac.v1.ClusterRole if kind == "ClusterRole" else k8s.rbac.v1.Role
    binding_type = k8s.rbac.v1.ClusterRoleBinding if kind == "ClusterRole" else k8s.rbac.v1.RoleBinding
    role = role_type(f"{name}-{slug}", metadata=metadata, rules=rules,
                     opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []))
    binding_type(
        f"{name}-{slug}binding",
        metadata=metadata,
        role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": account_name},
        subjects=[{"kind": "ServiceAccount", "name": account_name, "namespace": account_namespace}],
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role, account]),
    )


def app_labels(name: str, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels, used for both selectors and templates."""
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
    }


def port_forward_command(namespace: str, service: str, local: int, remote: int) -> str:
    return f"kubectl port-forward -n {namespace} svc/{service} {local}:{remote}"


def service_url(
    service: k8s.core.v1.Service,
    service_type: str,
    port: int,
    fallback: str,
    scheme: str = "http",
    public_url: str | None = None,
) -> pulumi.Output[str]:
    """The public URL once a LoadBalancer has an address; otherwise `fallback` (how to reach it).

    With `public_url` (a DNS name of the stack's config) that is the URL, and the address is
    what its name must resolve to.
    """
    if service_type != "LoadBalancer":
        return pulumi.Output.from_input(fallback)

    def pick(status: Any) -> str:
        balancer = getattr(status, "load_balancer", None)
        for entry in getattr(balancer, "ingress", None) or []:
            address = entry.ip or entry.hostname
            if address and public_url:
                return f"{public_url} (its DNS name must point at {address})"
            if address:
                return f"{scheme}://{address}:{port}"
        return f"(no LoadBalancer address yet) {fallback}"

    return service.status.apply(pick)
