"""Multi-user Jupyter notebooks: JupyterHub with KubeSpawner behind configurable-http-proxy.

What runs in the hub's namespace (names as Zero to JupyterHub uses them):
- Deployment `hub` (the k8s-hub image) with its sqlite database on the PVC `hub-db-dir`, its
  configuration in the ConfigMap `hub-config` (see components/hub_config), and a ServiceAccount
  whose namespaced Role allows exactly what KubeSpawner does;
- Deployment `proxy` (configurable-http-proxy) in its own pod, so routes survive a hub restart;
- Services `hub` and `proxy-api` (ClusterIP) and `proxy-public`, of type `jupyterhub.serviceType`;
- Secrets: `hub` (proxy token and cookie secret, generated once) and `hub-oauth` (the OAuth client
  secret from stack config), both created from Pulumi secrets;
- NetworkPolicies that let user servers reach the hub, the proxy, DNS and the internet, but not
  the Kubernetes API, other private addresses or each other.
User servers are KubeSpawner's pods: one per user, with the profile's image, CPU, memory and GPU
limits, placed on the pool the cluster component says, and a home volume per user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import hub_config as hub
from components.cluster import Cluster, Scheduling
from components.k8s import (
    CLUSTER_DNS_PEER,
    DNS_PORTS,
    FIELD_MANAGER,
    FIELD_MANAGER_ANNOTATION,
    NON_INTERNET_RANGES,
    PART_OF,
    app_labels,
    restricted,
    port_forward_command,
    service_url,
)
from stacks.config import ImagesSettings, JupyterHubSettings

HUB_DB_SIZE = "1Gi"  # a sqlite file of users, servers and tokens
SECRET_NAME = "hub"
OAUTH_SECRET_NAME = "hub-oauth"
CONFIG_MAP_NAME = "hub-config"
DB_CLAIM_NAME = "hub-db-dir"
PORT_FORWARD_LOCAL_PORT = 8080

# The keys of the generated Secret, and the environment variables they become.
PROXY_TOKEN_KEY = "proxy-token"
COOKIE_SECRET_KEY = "cookie-secret"
CLIENT_SECRET_KEY = "client-secret"

# KubeSpawner's needs, and nothing more: it creates, watches and deletes user pods, their PVCs,
# their Services and Secrets (internal SSL), and reads events to report spawn progress.
SPAWNER_RULES = (
    {
        "apiGroups": [""],
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
)


@dataclass(frozen=True)
class JupyterHubArgs:
    """The hub's settings and where its pods run.

    `profile_scheduling` maps every profile name to the pool its user pods go to (from the cluster
    component, never written by hand); `core_scheduling` places the hub and proxy pods.
    `simulated`: a kwok cluster, where nothing provisions volumes; `volume_for` (the cluster's)
    then makes the volume the hub's database claim binds to, and user homes are emptyDir volumes.
    """

    settings: JupyterHubSettings
    profile_scheduling: Mapping[str, Scheduling]
    core_scheduling: Scheduling = field(default_factory=Scheduling)
    simulated: bool = False
    volume_for: Callable[..., None] | None = None
    images: ImagesSettings = field(default_factory=ImagesSettings)

    @classmethod
    def from_cluster(
        cls, settings: JupyterHubSettings, cluster: Cluster, images: ImagesSettings | None = None
    ) -> JupyterHubArgs:
        """GPU profiles go to a GPU pool, CPU profiles to `userPool`, the hub and proxy off GPU nodes."""
        return cls(
            settings=settings,
            profile_scheduling={
                p.name: cluster.scheduling_for(p.gpus, None if p.gpus else settings.user_pool) for p in settings.profiles
            },
            core_scheduling=cluster.scheduling_for(0),
            simulated=cluster.simulated,
            volume_for=cluster.volume_for,
            images=images or ImagesSettings(),
        )


def _check(args: JupyterHubArgs) -> None:
    # The profile rules are the config layer's, so settings built any other way meet them too.
    problems = list(args.settings.profile_problems("JupyterHubArgs.settings"))
    if problems:
        raise ValueError("\n".join(problems))
    names = [p.name for p in args.settings.profiles]
    missing = sorted(set(names) - set(args.profile_scheduling))
    extra = sorted(set(args.profile_scheduling) - set(names))
    if missing or extra:
        raise ValueError(f"JupyterHubArgs.profile_scheduling: missing {missing}, unknown {extra}; needs one entry per profile")
    for scheduling in (*args.profile_scheduling.values(), args.core_scheduling):
        hub.placement(scheduling)  # raises for placements KubeSpawner cannot express


def _encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _checksum(*documents: Any) -> str:
    return hashlib.sha256(json.dumps(documents, sort_keys=True, default=str).encode()).hexdigest()


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


class JupyterHub(pulumi.ComponentResource):
    url: pulumi.Output[str]
    namespace: str
    port_forward: str

    def __init__(self, name: str, args: JupyterHubArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _check(args)
        super().__init__("mlplatform:jupyterhub:JupyterHub", name, None, opts)
        settings = args.settings
        self._name = name
        self._settings = settings
        self._simulated = args.simulated
        self._volume_for = args.volume_for
        self._images = args.images
        self.namespace = settings.namespace
        self.port_forward = port_forward_command(settings.namespace, hub.PROXY_PUBLIC_SERVICE, PORT_FORWARD_LOCAL_PORT, hub.PUBLIC_PORT)
        child = pulumi.ResourceOptions(parent=self)

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": settings.namespace, "labels": {"app.kubernetes.io/part-of": PART_OF}},
            opts=child,
        )
        # Every object names the namespace through the Namespace resource, so it is created first.
        self._ns = namespace.metadata.name

        self._rbac(child)
        generated = self._generated_secret(child)
        oauth = self._oauth_secret(child)
        document = hub.render(
            settings, args.profile_scheduling, persistent_homes=not args.simulated, pull_secrets=args.images.pull_secrets,
            pull_policy=args.images.never_pulled().get("imagePullPolicy"),
        )
        config_data = {
            hub.CONFIG_FILE.name: hub.CONFIG_FILE.read_text(),
            hub.DOCUMENT_NAME: json.dumps(document, indent=2) + "\n",
        }
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=self._metadata(CONFIG_MAP_NAME, hub.HUB_COMPONENT),
            data=config_data,
            opts=child,
        )
        # Pods read config and secrets only when they start: these checksums in their templates roll
        # them when either changes. The secrets' checksum is left in the clear so that a Deployment
        # diff stays readable; a SHA-256 of high-entropy tokens and client secrets gives nothing away.
        secret_data = [generated.data] + ([oauth.data] if oauth else [])
        secrets_checksum = pulumi.Output.unsecret(pulumi.Output.all(*secret_data).apply(lambda d: _checksum(*d)))
        self._hub(config_map, _checksum(config_data), secrets_checksum, oauth is not None, args.core_scheduling, child)
        self._proxy(secrets_checksum, args.core_scheduling, child)
        public = self._services(settings, child)
        self._network_policies(child)

        self.url = service_url(public, settings.service_type, hub.PUBLIC_PORT, self.port_forward)
        self.register_outputs({"url": self.url})

    # --- helpers --------------------------------------------------------------------------------

    def _metadata(self, object_name: str, component: str) -> dict[str, Any]:
        return {"name": object_name, "namespace": self._ns, "labels": app_labels(hub.APP_NAME, component)}

    # --- access to the Kubernetes API ----------------------------------------------------------

    def _rbac(self, opts: pulumi.ResourceOptions) -> None:
        name = self._name
        k8s.core.v1.ServiceAccount(f"{name}-hub-account", metadata=self._metadata(hub.HUB_SERVICE, hub.HUB_COMPONENT), opts=opts)
        k8s.rbac.v1.Role(
            f"{name}-hub-role",
            metadata=self._metadata(hub.HUB_SERVICE, hub.HUB_COMPONENT),
            rules=[dict(rule) for rule in SPAWNER_RULES],
            opts=opts,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-hub-role-binding",
            metadata=self._metadata(hub.HUB_SERVICE, hub.HUB_COMPONENT),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": hub.HUB_SERVICE},
            subjects=[{"kind": "ServiceAccount", "name": hub.HUB_SERVICE, "namespace": self._ns}],
            opts=opts,
        )

    # --- secrets --------------------------------------------------------------------------------

    def _generated_secret(self, opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        """The proxy's API token and the hub's cookie secret: random once, then kept.

        Each run draws fresh values, but `ignore_changes` makes Pulumi keep the ones in its state
        (encrypted, as the inputs are secrets) for as long as the Secret exists, so a `pulumi up`
        never rotates them. `pulumi up --replace <this Secret's URN>` rotates both; the checksum in
        the pod templates then restarts hub and proxy together. The values go in as `data`
        (base64), the form the kubernetes provider keeps in state, so that the ignored property is
        the one that is stored.
        """
        data = pulumi.Output.secret(
            {
                PROXY_TOKEN_KEY: _encode(secrets.token_hex(32)),
                COOKIE_SECRET_KEY: _encode(secrets.token_hex(32)),
            }
        )
        return k8s.core.v1.Secret(
            f"{self._name}-secret",
            metadata=self._metadata(SECRET_NAME, hub.HUB_COMPONENT),
            type="Opaque",
            data=data,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["data"])),
        )

    def _oauth_secret(self, opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret | None:
        auth = self._settings.auth
        if auth.type not in ("github", "azuread") or auth.client_secret is None:
            return None
        # Stack config hands the value over as plain text; it becomes a Pulumi secret again here,
        # before it reaches any resource.
        return k8s.core.v1.Secret(
            f"{self._name}-oauth",
            metadata=self._metadata(OAUTH_SECRET_NAME, hub.HUB_COMPONENT),
            type="Opaque",
            data=pulumi.Output.secret({CLIENT_SECRET_KEY: _encode(auth.client_secret)}),
            opts=opts,
        )

    # --- the hub and the proxy -------------------------------------------------------------------

    def _hub(
        self,
        config_map: k8s.core.v1.ConfigMap,
        config_checksum: str,
        secrets_checksum: pulumi.Output[str],
        oauth: bool,
        scheduling: Scheduling,
        opts: pulumi.ResourceOptions,
    ) -> None:
        name = self._name
        claim_spec: dict[str, Any] = {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": HUB_DB_SIZE}},
        }
        if self._settings.storage.storage_class:
            claim_spec["storageClassName"] = self._settings.storage.storage_class
        elif self._simulated:
            claim_spec["storageClassName"] = ""  # bind to the pre-made volume, not a default class
        if self._volume_for is not None:
            self._volume_for(DB_CLAIM_NAME, self.namespace, HUB_DB_SIZE, claim_spec["accessModes"], opts)
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-db",
            metadata=self._metadata(DB_CLAIM_NAME, hub.HUB_COMPONENT),
            spec=claim_spec,
            opts=opts,
        )
        env = [
            {"name": hub.DOCUMENT_ENV, "value": f"{hub.CONFIG_DIR}/{hub.DOCUMENT_NAME}"},
            _secret_env(hub.PROXY_TOKEN_ENV, SECRET_NAME, PROXY_TOKEN_KEY),
            _secret_env(hub.COOKIE_SECRET_ENV, SECRET_NAME, COOKIE_SECRET_KEY),
        ]
        if oauth:
            env.append(_secret_env(hub.OAUTH_CLIENT_SECRET_ENV, OAUTH_SECRET_NAME, CLIENT_SECRET_KEY))
        probe = {"httpGet": {"path": "/hub/health", "port": "http"}}
        pod_spec: dict[str, Any] = {
            "serviceAccountName": hub.HUB_SERVICE,
            "securityContext": {
                # The k8s-hub image's user; fsGroup makes the database volume writable for it.
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **scheduling.pod_spec(),
            "containers": [
                {
                    "name": "hub",
                    "image": self._images.hub,
                    **self._images.never_pulled(),
                    # Arguments only: the image's entrypoint (tini) stays PID 1 and reaps the
                    # culler's processes.
                    "args": ["jupyterhub", f"--config={hub.CONFIG_DIR}/{hub.CONFIG_FILE.name}", "--upgrade-db"],
                    "env": env,
                    "ports": [{"name": "http", "containerPort": hub.HUB_PORT}],
                    "volumeMounts": [
                        {"name": "config", "mountPath": hub.CONFIG_DIR, "readOnly": True},
                        {"name": "db", "mountPath": hub.DATA_DIR},
                    ],
                    "readinessProbe": {**probe, "periodSeconds": 5},
                    # A database upgrade after an image change can take minutes: be patient.
                    "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 10, "failureThreshold": 30},
                    "resources": self._settings.hub_resources.manifest(),
                    "securityContext": restricted(),
                }
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": config_map.metadata.name}},
                {"name": "db", "persistentVolumeClaim": {"claimName": DB_CLAIM_NAME}},
            ],
        }
        self._singleton(
            f"{name}-hub",
            hub.HUB_SERVICE,
            hub.HUB_COMPONENT,
            {"checksum/config": config_checksum, "checksum/secrets": secrets_checksum},
            pod_spec,
            opts,
        )

    def _proxy(self, secrets_checksum: pulumi.Output[str], scheduling: Scheduling, opts: pulumi.ResourceOptions) -> None:
        probe = {"httpGet": {"path": "/_chp_healthz", "port": "http"}}
        pod_spec: dict[str, Any] = {
            # The proxy never talks to the Kubernetes API.
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "runAsGroup": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            **scheduling.pod_spec(),
            "containers": [
                {
                    "name": "chp",
                    "image": self._images.proxy,
                    **self._images.never_pulled(),
                    "command": hub.proxy_command(hub.hub_url()),
                    "env": [_secret_env(hub.PROXY_TOKEN_ENV, SECRET_NAME, PROXY_TOKEN_KEY)],
                    "ports": [
                        {"name": "http", "containerPort": hub.PROXY_PORT},
                        {"name": "api", "containerPort": hub.PROXY_API_PORT},
                    ],
                    "readinessProbe": {**probe, "periodSeconds": 5},
                    "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 10},
                    "resources": self._settings.proxy_resources.manifest(),
                    "securityContext": restricted(),
                }
            ],
        }
        self._singleton(
            f"{self._name}-proxy",
            hub.PROXY_DEPLOYMENT,
            hub.PROXY_COMPONENT,
            {"checksum/secrets": secrets_checksum},
            pod_spec,
            opts,
        )

    def _singleton(
        self,
        resource_name: str,
        object_name: str,
        component: str,
        annotations: Mapping[str, pulumi.Input[str]],
        pod_spec: dict[str, Any],
        opts: pulumi.ResourceOptions,
    ) -> None:
        """A Deployment of exactly one pod, the old one gone before the new one starts.

        Neither the hub nor the proxy may ever run twice: the hub keeps sqlite on a ReadWriteOnce
        volume and JupyterHub is not built to share a database, and the proxy keeps its routing
        table in memory, so a hub that saw two proxies would configure the old pod and then find
        the new one empty. `annotations` (checksums) roll the pod when what it read at start changes.
        """
        labels = app_labels(hub.APP_NAME, component)
        if self._images.pull_secrets:
            pod_spec = {**pod_spec, "imagePullSecrets": self._images.image_pull_secrets()}
        k8s.apps.v1.Deployment(
            resource_name,
            metadata=self._metadata(object_name, component),
            spec={
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels, "annotations": dict(annotations)}, "spec": pod_spec},
            },
            opts=opts,
        )

    # --- services -------------------------------------------------------------------------------

    def _services(self, settings: JupyterHubSettings, opts: pulumi.ResourceOptions) -> k8s.core.v1.Service:
        name = self._name
        proxy_labels = app_labels(hub.APP_NAME, hub.PROXY_COMPONENT)
        # The hub's API and the proxy's API: in-cluster only.
        for resource_name, object_name, component, port_name, port in (
            (f"{name}-hub-service", hub.HUB_SERVICE, hub.HUB_COMPONENT, "http", hub.HUB_PORT),
            (f"{name}-proxy-api", hub.PROXY_API_SERVICE, hub.PROXY_COMPONENT, "api", hub.PROXY_API_PORT),
        ):
            k8s.core.v1.Service(
                resource_name,
                metadata=self._metadata(object_name, component),
                spec={
                    "type": "ClusterIP",
                    "selector": app_labels(hub.APP_NAME, component),
                    "ports": [{"name": port_name, "port": port, "targetPort": port_name}],
                },
                opts=opts,
            )
        spec: dict[str, Any] = {
            "type": settings.service_type,
            "selector": proxy_labels,
            "ports": [{"name": "http", "port": hub.PUBLIC_PORT, "targetPort": "http"}],
        }
        if settings.load_balancer_source_ranges:
            spec["loadBalancerSourceRanges"] = list(settings.load_balancer_source_ranges)
        return k8s.core.v1.Service(
            f"{name}-proxy-public",
            # One field manager for every generation of this Service (see components/k8s.py).
            metadata={
                **self._metadata(hub.PROXY_PUBLIC_SERVICE, hub.PROXY_COMPONENT),
                "annotations": {FIELD_MANAGER_ANNOTATION: FIELD_MANAGER},
            },
            spec=spec,
            # The API server refuses some type changes in place: going back to ClusterIP keeps the
            # nodePort it allocated ("nodePort: Forbidden: may not be used when type is ClusterIP"),
            # and loadBalancer-only fields linger the same way. A new type means a new Service,
            # deleted first because its name is fixed. The address changes with the type anyway.
            opts=pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(replace_on_changes=["spec.type"], delete_before_replace=True)
            ),
        )

    # --- network policies -----------------------------------------------------------------------

    def _network_policies(self, opts: pulumi.ResourceOptions) -> None:
        """Who may talk to whom.

        User servers: reached by the hub and the proxy only; they reach the hub's API, the proxy,
        the cluster DNS, and the internet — every address outside the private, shared and
        link-local ranges (NON_INTERNET_RANGES). That excludes other users' pods, in-cluster
        Services (the API server's `kubernetes` Service included), nodes and cloud metadata. A
        managed control plane with a public address (an AKS cluster without private API) counts as
        internet; user pods carry no service account token, so it only ever sees anonymous calls.
        Hub: reached on its API port by the proxy, user servers and itself (the culler calls it
        through its Service); its own egress stays open, as it must reach the Kubernetes API and
        OAuth providers at addresses unknown ahead of time. Proxy: public port open to all, API
        port to the hub only; it reaches the hub, user servers and DNS.
        Known limits: the allow-list is IPv4 (user pods get no IPv6 egress on dual-stack clusters),
        and DNS is allowed to the kube-dns pods only (a NodeLocal DNSCache on 169.254.20.10 would
        need its own rule).
        """
        hub_pods = {"podSelector": {"matchLabels": app_labels(hub.APP_NAME, hub.HUB_COMPONENT)}}
        proxy_pods = {"podSelector": {"matchLabels": app_labels(hub.APP_NAME, hub.PROXY_COMPONENT)}}
        user_pods = {"podSelector": {"matchLabels": app_labels(hub.APP_NAME, hub.USER_COMPONENT)}}
        hub_api = [{"protocol": "TCP", "port": hub.HUB_PORT}]
        proxy_http = [{"protocol": "TCP", "port": hub.PROXY_PORT}]
        proxy_api = [{"protocol": "TCP", "port": hub.PROXY_API_PORT}]
        notebook = [{"protocol": "TCP", "port": hub.SINGLEUSER_PORT}]
        dns = {"to": [CLUSTER_DNS_PEER], "ports": DNS_PORTS}
        policies = {
            hub.HUB_COMPONENT: {
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [proxy_pods, user_pods, hub_pods], "ports": hub_api}],
            },
            hub.PROXY_COMPONENT: {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"ports": proxy_http}, {"from": [hub_pods], "ports": proxy_api}],
                "egress": [{"to": [hub_pods], "ports": hub_api}, {"to": [user_pods], "ports": notebook}, dns],
            },
            hub.USER_COMPONENT: {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [hub_pods, proxy_pods], "ports": notebook}],
                "egress": [
                    {"to": [hub_pods], "ports": hub_api},
                    {"to": [proxy_pods], "ports": proxy_http},
                    dns,
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NON_INTERNET_RANGES)}}]},
                ],
            },
        }
        for component, rules in policies.items():
            k8s.networking.v1.NetworkPolicy(
                f"{self._name}-netpol-{component}",
                metadata=self._metadata(component, component),
                spec={"podSelector": {"matchLabels": app_labels(hub.APP_NAME, component)}, **rules},
                opts=opts,
            )
