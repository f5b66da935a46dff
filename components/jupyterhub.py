"""Multi-user Jupyter notebooks: JupyterHub with KubeSpawner behind configurable-http-proxy.

What runs in the hub's namespace (names as Zero to JupyterHub uses them):
- Deployment `hub` (the k8s-hub image) with its sqlite database on the PVC `hub-db-dir`, its
  configuration in the ConfigMap `hub-config` (see components/hub_config/document.py), and a ServiceAccount
  whose namespaced Role allows exactly what KubeSpawner does;
- Deployment `proxy` (configurable-http-proxy) in its own pod, so routes survive a hub restart;
- Services `hub` and `proxy-api` (ClusterIP) and `proxy-public`, of type `jupyterhub.serviceType`;
- Secrets: `hub` (proxy token and cookie secret, generated once), `hub-admin` (native sign-in: the
  first admin's password, generated once) and `hub-oauth` (the OAuth client secret from stack
  config), all created from Pulumi secrets;
- with `jupyterhub.https`, the proxy serves TLS on `proxy-public`'s port 443 and redirects port
  80 there, with the certificate of a `kubernetes.io/tls` Secret: one the user names (`secret`),
  one cert-manager keeps from an ACME server (`letsencrypt`: an Issuer and a Certificate), or one
  generated once (`selfSigned`); or TLS ends in front of the Service (`offload`) and the hub is
  told its public https URL;
- NetworkPolicies: nothing in or out of any pod of the namespace but what each part needs (user
  servers reach the hub's API, DNS and the internet, never the Kubernetes API, other private
  addresses or each other);
- Pod Security Admission labels: `restricted` enforced, unless a profile asks for `baseline`.
User servers are KubeSpawner's pods: one per user, with the profile's image, CPU, memory and GPU
limits, placed on the pool the cluster component says, a home volume per user, and the restricted
Pod Security Standard's settings (components/hub_config/document.py).
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

from components import cert_manager
from components.hub_config import document as hub
from components import tls
from components.cluster import ANY_API_SERVER, Cluster, Scheduling
from components.kueue import Kueue, pending_workloads_rules
from components.k8s import (
    CLUSTER_DNS_PEER,
    DNS_PORTS,
    FIELD_MANAGER,
    FIELD_MANAGER_ANNOTATION,
    NON_INTERNET_RANGES,
    PART_OF,
    app_labels,
    default_deny,
    pod_security_labels,
    restricted,
    port_forward_command,
    secret_value,
    service_await,
    service_url,
)
from stacks import retention
from stacks.images import ImagesSettings
from stacks.jupyterhub import Https, JupyterHubSettings
from stacks.kueue import KueueSettings
from vocab.kueue_api import GROUP as KUEUE_GROUP
from vocab.kueue_api import NOTEBOOK_LOCAL_QUEUE, WORKLOADS

HUB_DB_SIZE = "1Gi"  # a sqlite file of users, servers and tokens
SECRET_NAME = "hub"
OAUTH_SECRET_NAME = "hub-oauth"
ADMIN_SECRET_NAME = "hub-admin"
CONFIG_MAP_NAME = "hub-config"
DB_CLAIM_NAME = retention.HUB_DB_CLAIM
PORT_FORWARD_LOCAL_PORT = 8080
PORT_FORWARD_LOCAL_HTTPS_PORT = 8443
# letsencrypt: the Issuer, and the Secret cert-manager keeps the ACME account's key in.
ISSUER_NAME = "letsencrypt"
ACME_ACCOUNT_SECRET_NAME = "letsencrypt-account-key"
# cert-manager's HTTP-01 solver makes an Ingress for every challenge. No controller serves this
# class: the proxy itself routes the challenges to the solver pods (hub_config.acme_route_command),
# so that the hub's own address answers them and no ingress controller is needed.
ACME_INGRESS_CLASS = "mlplatform-proxy-routes-acme"
# The sidecar that keeps that route: a node process waking every 30 s.
ACME_ROUTE_RESOURCES = {"requests": {"cpu": "5m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}
# On the selfSigned Secret: the names its certificate is for. A change (jupyterhub.https.hosts)
# replaces the Secret, and so draws a certificate for the new names.
CERTIFICATE_NAMES_ANNOTATION = "mlplatform.dev/certificate-names"

# The keys of the generated Secret, and the environment variables they become.
PROXY_TOKEN_KEY = "proxy-token"
COOKIE_SECRET_KEY = "cookie-secret"
CLIENT_SECRET_KEY = "client-secret"
ADMIN_PASSWORD_KEY = "password"

# The hub and the proxy each run as one pod, so being taken out of their Service helps nobody:
# readiness says "started" and then stays, and liveness restarts a process that stopped answering.
# With the default (3 failures of 1 s), 20 sign-ups at once (bcrypt blocks the hub for 0.3 s
# each) made the hub unready for about 5 s, and the proxy answered 503 to everyone (2026-12-07).
# Zero to JupyterHub's chart probes the same way.
STAY_READY = {"periodSeconds": 2, "failureThreshold": 1000}

# KubeSpawner's needs, and nothing more: it creates, watches and deletes user pods, their PVCs,
# their Services and Secrets (internal SSL), and reads events to report spawn progress; the hub
# reads its own ServiceAccount, which owns the user pods.
SPAWNER_RULES = (
    {
        "apiGroups": [""],
        "resources": ["pods", "persistentvolumeclaims", "secrets", "services"],
        "verbs": ["get", "watch", "list", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "watch", "list"]},
    # The hub's own account, the owner of user pods (hub_config.USER_POD_OWNER).
    {"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": [hub.HUB_SERVICE], "verbs": ["get"]},
)
# With queued notebooks: the Workloads Kueue makes for user pods, read to tell a waiting user why
# (queued_spawner.py lists them by a pod's uid), and the pending workloads of the notebooks'
# LocalQueue through Kueue's visibility API, read to tell them their position (that queue only);
# in the hub's namespace only, never written.
QUEUED_SPAWNER_RULES = (
    {"apiGroups": [KUEUE_GROUP], "resources": [WORKLOADS], "verbs": ["get", "list"]},
    *pending_workloads_rules(NOTEBOOK_LOCAL_QUEUE),
)


@dataclass(frozen=True)
class JupyterHubArgs:
    """The hub's settings and where its pods run.

    `profile_scheduling` maps every profile name to the pool its user pods go to (from the cluster
    component, never written by hand); `core_scheduling` places the hub and proxy pods;
    `gpu_type_scheduling` maps each GPU type a profile offers (`gpuTypes`) to the pools of that type.
    `simulated`: a kwok cluster, where nothing provisions volumes; `volume_for` (the cluster's)
    then makes the volume the hub's database claim binds to, and user homes are emptyDir volumes.
    `cert_manager`: what the Issuer and Certificate wait for (the stack's cert-manager install),
    with `https.type letsencrypt`. `api_server_egress`: the NetworkPolicy egress rules that reach
    the Kubernetes API (the cluster's `api_server_egress()`), which the hub needs and nothing else.
    `data_checked`: what the namespace (and so everything in it) waits for, the check that this
    config keeps the data the last deployment kept (components/kept_data.py).
    """

    settings: JupyterHubSettings
    profile_scheduling: Mapping[str, Scheduling]
    core_scheduling: Scheduling = field(default_factory=Scheduling)
    gpu_type_scheduling: Mapping[str, Scheduling] = field(default_factory=dict)
    simulated: bool = False
    volume_for: Callable[..., None] | None = None
    images: ImagesSettings = field(default_factory=ImagesSettings)
    cert_manager: tuple[pulumi.Resource, ...] = ()
    data_checked: pulumi.Output[Any] | None = None
    api_server_egress: pulumi.Input[list[dict[str, Any]]] = field(default_factory=lambda: list(ANY_API_SERVER))
    # Kueue and which servers queue in it (kueue.notebookQueue): a LocalQueue in the namespace, and
    # the queued profiles' pods labelled with it.
    kueue: Kueue | None = None
    queue: hub.NotebookQueue | None = None

    @classmethod
    def from_cluster(
        cls,
        settings: JupyterHubSettings,
        cluster: Cluster,
        images: ImagesSettings | None = None,
        cert_manager: tuple[pulumi.Resource, ...] = (),
        data_checked: pulumi.Output[Any] | None = None,
        kueue: Kueue | None = None,
        kueue_settings: KueueSettings | None = None,
    ) -> JupyterHubArgs:
        """GPU profiles go to a GPU pool, CPU profiles to `userPool`, the hub and proxy off GPU nodes;
        with `kueue` and a `notebookQueue` in `kueue_settings`, the queued profiles' servers wait
        in it."""
        queue = None
        queued = frozenset(p.name for p in kueue_settings.queued_profiles(settings)) if kueue_settings else frozenset()
        if kueue is not None and kueue_settings is not None and kueue_settings.notebook_queue and queued:
            queue = hub.NotebookQueue(kueue_settings.notebook_queue, queued)
        return cls(
            settings=settings,
            profile_scheduling={
                p.name: cluster.scheduling_for(max(p.offered_gpus), None if p.gpus else settings.user_pool)
                for p in settings.profiles
            },
            core_scheduling=cluster.scheduling_for(0),
            gpu_type_scheduling={
                t: cluster.scheduling_for_gpu_type(t) for t in sorted({t for p in settings.profiles for t in p.gpu_types})
            },
            simulated=cluster.simulated,
            volume_for=cluster.volume_for,
            images=images or ImagesSettings(),
            cert_manager=cert_manager,
            data_checked=data_checked,
            api_server_egress=cluster.api_server_egress(),
            kueue=kueue if queue is not None else None,
            queue=queue,
        )


def _check(args: JupyterHubArgs) -> None:
    # The profile rules are the config layer's, so settings built any other way meet them too.
    problems = list(args.settings.profile_problems("JupyterHubArgs.settings"))
    problems += args.settings.https_problems("JupyterHubArgs.settings")
    if problems:
        raise ValueError("\n".join(problems))
    names = [p.name for p in args.settings.profiles]
    missing = sorted(set(names) - set(args.profile_scheduling))
    extra = sorted(set(args.profile_scheduling) - set(names))
    if missing or extra:
        raise ValueError(f"JupyterHubArgs.profile_scheduling: missing {missing}, unknown {extra}; needs one entry per profile")
    types = sorted({t for p in args.settings.profiles for t in p.gpu_types} - set(args.gpu_type_scheduling))
    if types:
        raise ValueError(f"JupyterHubArgs.gpu_type_scheduling: missing {types}; needs one entry per GPU type a profile offers")
    for scheduling in (*args.profile_scheduling.values(), *args.gpu_type_scheduling.values(), args.core_scheduling):
        hub.placement(scheduling)  # raises for placements KubeSpawner cannot express
    if (args.kueue is None) != (args.queue is None):
        raise ValueError("JupyterHubArgs.kueue and .queue: give both (queued notebooks) or neither")
    if args.queue is not None:
        unknown = sorted(args.queue.profiles - set(names))
        if unknown:
            raise ValueError(f"JupyterHubArgs.queue.profiles: {unknown} are not profiles; profiles: {names}")


def _checksum(*documents: Any) -> str:
    return hashlib.sha256(json.dumps(documents, sort_keys=True, default=str).encode()).hexdigest()


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


class JupyterHub(pulumi.ComponentResource):
    url: pulumi.Output[str]
    # native sign-in with adminUsers: the first admin's generated password (a secret), else None.
    admin_password: pulumi.Output[str] | None
    namespace: str
    port_forward: str
    tls_secret_name: str | None

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
        https = settings.https
        self._tls_at_proxy = https is not None and https.terminates_tls
        if self._tls_at_proxy:
            self.port_forward = port_forward_command(
                settings.namespace, hub.PROXY_PUBLIC_SERVICE, PORT_FORWARD_LOCAL_HTTPS_PORT, hub.PUBLIC_HTTPS_PORT
            )
        else:
            self.port_forward = port_forward_command(settings.namespace, hub.PROXY_PUBLIC_SERVICE, PORT_FORWARD_LOCAL_PORT, hub.PUBLIC_PORT)
        self.tls_secret_name = None
        if self._tls_at_proxy:
            self.tls_secret_name = https.secret_name if https.type == "secret" else hub.TLS_SECRET_NAME
        child = pulumi.ResourceOptions(parent=self)
        # With dataRetention keep, the namespace (and with it the users' home claims, which
        # KubeSpawner makes) and the database's claim outlive a delete (docs/data.md).
        self._kept = pulumi.ResourceOptions(parent=self, retain_on_delete=settings.data_retention == "keep")

        namespace_name: pulumi.Input[str] = settings.namespace
        if args.data_checked is not None:
            namespace_name = args.data_checked.apply(lambda _: settings.namespace)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={
                "name": namespace_name,
                "labels": {"app.kubernetes.io/part-of": PART_OF, **pod_security_labels(settings.pod_security_level)},
            },
            opts=self._kept,
        )
        # Every object names the namespace through the Namespace resource, so it is created first.
        self._ns = namespace.metadata.name

        self._rbac(child, queued=args.queue is not None)
        if args.kueue is not None and args.queue is not None:
            args.kueue.local_queue(
                f"{name}-queue", NOTEBOOK_LOCAL_QUEUE, self._ns, args.queue.cluster_queue,
                pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
        generated = self._generated_secret(child)
        certificate = self._certificate(https, args.core_scheduling, args.cert_manager, child) if https else None
        oauth = self._oauth_secret(child)
        admin = self._admin_secret(child)
        self.admin_password = None
        if admin is not None:
            self.admin_password = pulumi.Output.secret(
                admin.data.apply(lambda data: base64.b64decode(data[ADMIN_PASSWORD_KEY]).decode())
            )
        document = hub.render(
            settings, args.profile_scheduling, persistent_homes=not args.simulated, pull_secrets=args.images.pull_secrets,
            pull_policy=args.images.never_pulled().get("imagePullPolicy"), gpu_type_scheduling=args.gpu_type_scheduling,
            queue=args.queue,
        )
        config_data = {
            **{shipped.name: shipped.read_text() for shipped in hub.shipped_files(args.queue)},
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
        # Only the hub reads the first admin's password.
        hub_checksum = secrets_checksum
        if admin is not None:
            hub_checksum = pulumi.Output.unsecret(pulumi.Output.all(*secret_data, admin.data).apply(lambda d: _checksum(*d)))
        self._hub(
            config_map, _checksum(config_data), hub_checksum, oauth is not None, admin is not None, args.core_scheduling, child
        )
        # The proxy restarts with a new self-signed certificate (a checksum in the clear, as above:
        # a SHA-256 of a random private key gives nothing away); renewed ones (letsencrypt, secret)
        # it notices itself (hub_config.served_certificate_check).
        proxy_checksum = secrets_checksum
        if certificate is not None:
            proxy_checksum = pulumi.Output.unsecret(
                pulumi.Output.all(secrets_checksum, certificate.data).apply(lambda d: _checksum(*d))
            )
        self._proxy(proxy_checksum, args.core_scheduling, child)
        public = self._services(settings, child)
        self._network_policies(args.api_server_egress, child)

        # With offload the Service itself is plain HTTP; what is in front serves the public URL.
        port, scheme = (hub.PUBLIC_HTTPS_PORT, "https") if self._tls_at_proxy else (hub.PUBLIC_PORT, "http")
        self.url = service_url(
            public, settings.service_type, port, self.port_forward, scheme=scheme, public_url=https.public_url if https else None
        )
        self.register_outputs({"url": self.url, "tls_secret_name": self.tls_secret_name, "admin_password": self.admin_password})

    # --- helpers --------------------------------------------------------------------------------

    def _metadata(self, object_name: str, component: str) -> dict[str, Any]:
        return {"name": object_name, "namespace": self._ns, "labels": app_labels(hub.APP_NAME, component)}

    # --- access to the Kubernetes API ----------------------------------------------------------

    def _rbac(self, opts: pulumi.ResourceOptions, queued: bool) -> None:
        name = self._name
        k8s.core.v1.ServiceAccount(f"{name}-hub-account", metadata=self._metadata(hub.HUB_SERVICE, hub.HUB_COMPONENT), opts=opts)
        k8s.rbac.v1.Role(
            f"{name}-hub-role",
            metadata=self._metadata(hub.HUB_SERVICE, hub.HUB_COMPONENT),
            rules=[dict(rule) for rule in (*SPAWNER_RULES, *(QUEUED_SPAWNER_RULES if queued else ()))],
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
                PROXY_TOKEN_KEY: secret_value(secrets.token_hex(32)),
                COOKIE_SECRET_KEY: secret_value(secrets.token_hex(32)),
            }
        )
        return k8s.core.v1.Secret(
            f"{self._name}-secret",
            metadata=self._metadata(SECRET_NAME, hub.HUB_COMPONENT),
            type="Opaque",
            data=data,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["data"])),
        )

    def _admin_secret(self, opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret | None:
        """native sign-in: the first admin's password, random once, then kept (as `_generated_secret`).

        NativeAuthenticator would make whoever signs up first under an admin's name that admin;
        instead the hub creates the account with this password at start (guarded_native.py), and
        the operator reads it with `pulumi stack output jupyterhubAdminPassword --show-secrets`.
        A Secret of its own, so that stacks deployed before it get one: the `hub` Secret's data
        is never updated. `pulumi up --replace` on it draws a new password, which the restarted
        hub then sets.
        """
        auth = self._settings.auth
        if auth.type != "native" or not auth.admin_users:
            return None
        return k8s.core.v1.Secret(
            f"{self._name}-admin",
            metadata=self._metadata(ADMIN_SECRET_NAME, hub.HUB_COMPONENT),
            type="Opaque",
            data=pulumi.Output.secret({ADMIN_PASSWORD_KEY: secret_value(secrets.token_hex(16))}),
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
            data=pulumi.Output.secret({CLIENT_SECRET_KEY: secret_value(auth.client_secret)}),
            opts=opts,
        )

    # --- TLS ------------------------------------------------------------------------------------

    def _certificate(
        self,
        https: Https,
        scheduling: Scheduling,
        cert_manager_ready: tuple[pulumi.Resource, ...],
        opts: pulumi.ResourceOptions,
    ) -> k8s.core.v1.Secret | None:
        """What provides the proxy's certificate; the generated Secret for selfSigned, else None.

        secret: the user's Secret, which the stack only mounts; offload: nothing here.
        """
        if https.type == "selfSigned":
            return self._self_signed_secret(https, opts)
        if https.type == "letsencrypt":
            self._letsencrypt(https, scheduling, cert_manager_ready, opts)
        return None

    def _self_signed_secret(self, https: Https, opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret:
        """A certificate for the hub's names, drawn once and kept, as the proxy token is.

        Each run draws a new one, and `ignore_changes` keeps the one in Pulumi's state (encrypted:
        the inputs are secrets, the private key among them) for as long as the Secret exists. New
        names in `jupyterhub.https.hosts` change the annotation, which replaces the Secret with a
        certificate for them; `pulumi up --replace <this Secret's URN>` draws a new one for the
        same names (do so before it expires, after tls.SERVER_DAYS days).
        """
        service = hub.PROXY_PUBLIC_SERVICE
        namespace = self.namespace
        # Its public names, the in-cluster ones, and those of `kubectl port-forward`.
        names = (*https.hosts, f"{service}.{namespace}.svc", f"{service}.{namespace}", service, "localhost", "127.0.0.1")
        generated = tls.self_signed(names)
        data = pulumi.Output.secret({key: secret_value(value) for key, value in generated.secret_data().items()})
        return k8s.core.v1.Secret(
            f"{self._name}-tls",
            metadata={
                **self._metadata(hub.TLS_SECRET_NAME, hub.PROXY_COMPONENT),
                "annotations": {CERTIFICATE_NAMES_ANNOTATION: ",".join(dict.fromkeys(names))},
            },
            type="kubernetes.io/tls",
            data=data,
            opts=pulumi.ResourceOptions.merge(
                opts,
                pulumi.ResourceOptions(
                    ignore_changes=["data"],
                    replace_on_changes=[f'metadata.annotations["{CERTIFICATE_NAMES_ANNOTATION}"]'],
                    delete_before_replace=True,
                ),
            ),
        )

    def _letsencrypt(
        self,
        https: Https,
        scheduling: Scheduling,
        cert_manager_ready: tuple[pulumi.Resource, ...],
        opts: pulumi.ResourceOptions,
    ) -> None:
        """An ACME Issuer and a Certificate for `https.hosts`, kept and renewed by cert-manager.

        The ACME server checks each host over HTTP-01: it fetches
        http://<host>/.well-known/acme-challenge/<token>, which the proxy redirects to https (the
        ACME server follows, and does not check that certificate: cert-manager's temporary one
        is served until the real one exists) and routes to cert-manager's solver pods through the
        `acme-solver` Service.
        """
        after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(cert_manager_ready)))
        solver_labels = {cert_manager.HTTP01_SOLVER_LABEL: "true"}
        k8s.apiextensions.CustomResource(
            f"{self._name}-issuer",
            api_version=cert_manager.API_VERSION,
            kind=cert_manager.ISSUER_KIND,
            metadata=self._metadata(ISSUER_NAME, hub.PROXY_COMPONENT),
            spec={
                "acme": {
                    "server": https.acme_server,
                    "email": https.contact_email,
                    "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET_NAME},
                    "solvers": [
                        {
                            "http01": {
                                "ingress": {
                                    "ingressClassName": ACME_INGRESS_CLASS,
                                    "serviceType": "ClusterIP",
                                    # The solver pods run where the hub's own pods do.
                                    "podTemplate": {"spec": scheduling.pod_spec()},
                                }
                            }
                        }
                    ],
                }
            },
            opts=after,
        )
        k8s.apiextensions.CustomResource(
            f"{self._name}-certificate",
            api_version=cert_manager.API_VERSION,
            kind=cert_manager.CERTIFICATE_KIND,
            metadata={
                **self._metadata(hub.TLS_SECRET_NAME, hub.PROXY_COMPONENT),
                "annotations": {cert_manager.ISSUE_TEMPORARY_CERTIFICATE: "true"},
            },
            spec={
                "secretName": hub.TLS_SECRET_NAME,
                "dnsNames": list(https.hosts),
                "issuerRef": {"group": "cert-manager.io", "kind": cert_manager.ISSUER_KIND, "name": ISSUER_NAME},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            },
            opts=after,
        )
        k8s.core.v1.Service(
            f"{self._name}-acme-solver",
            metadata=self._metadata(hub.ACME_SOLVER_SERVICE, hub.PROXY_COMPONENT),
            spec={
                "type": "ClusterIP",
                "selector": solver_labels,
                "ports": [{"name": "http", "port": hub.ACME_SOLVER_PORT, "targetPort": hub.ACME_SOLVER_PORT}],
            },
            opts=opts,
        )

    # --- the hub and the proxy -------------------------------------------------------------------

    def _hub(
        self,
        config_map: k8s.core.v1.ConfigMap,
        config_checksum: str,
        secrets_checksum: pulumi.Output[str],
        oauth: bool,
        admin: bool,
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
        kept = pulumi.ResourceOptions.merge(opts, self._kept)
        if self._volume_for is not None:
            self._volume_for(DB_CLAIM_NAME, self.namespace, HUB_DB_SIZE, claim_spec["accessModes"], kept)
        k8s.core.v1.PersistentVolumeClaim(
            f"{name}-db",
            metadata=self._metadata(DB_CLAIM_NAME, hub.HUB_COMPONENT),
            spec=claim_spec,
            opts=kept,
        )
        env = [
            {"name": hub.DOCUMENT_ENV, "value": f"{hub.CONFIG_DIR}/{hub.DOCUMENT_NAME}"},
            _secret_env(hub.PROXY_TOKEN_ENV, SECRET_NAME, PROXY_TOKEN_KEY),
            _secret_env(hub.COOKIE_SECRET_ENV, SECRET_NAME, COOKIE_SECRET_KEY),
        ]
        if oauth:
            env.append(_secret_env(hub.OAUTH_CLIENT_SECRET_ENV, OAUTH_SECRET_NAME, CLIENT_SECRET_KEY))
        if admin:
            env.append(_secret_env(hub.FIRST_ADMIN_PASSWORD_ENV, ADMIN_SECRET_NAME, ADMIN_PASSWORD_KEY))
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
                    "readinessProbe": {**probe, **STAY_READY},
                    # A database upgrade after an image change can take minutes, and a burst of
                    # sign-ins holds the hub's event loop for seconds: restart after 5 minutes.
                    "livenessProbe": {**probe, "initialDelaySeconds": 60, "periodSeconds": 10, "failureThreshold": 30,
                                      "timeoutSeconds": 3},
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
        token_env = [_secret_env(hub.PROXY_TOKEN_ENV, SECRET_NAME, PROXY_TOKEN_KEY)]
        ports = [
            {"name": "http", "containerPort": hub.PROXY_PORT},
            {"name": "api", "containerPort": hub.PROXY_API_PORT},
        ]
        probe: dict[str, Any] = {"httpGet": {"path": "/_chp_healthz", "port": "http"}}
        liveness: dict[str, Any] = {**probe, "initialDelaySeconds": 60, "periodSeconds": 10, "failureThreshold": 30,
                                    "timeoutSeconds": 3}
        command = hub.proxy_command(hub.hub_url())
        tls_volume: dict[str, Any] = {}
        if self._tls_at_proxy:
            command = hub.proxy_command(hub.hub_url(), https_port=hub.PROXY_HTTPS_PORT)
            ports.insert(0, {"name": "https", "containerPort": hub.PROXY_HTTPS_PORT})
            probe = {"httpGet": {"path": "/_chp_healthz", "port": "https", "scheme": "HTTPS"}}
            # Alive means: answering TLS with the certificate the Secret holds now.
            liveness = {
                "exec": {"command": hub.served_certificate_check()},
                "initialDelaySeconds": 60,
                "periodSeconds": 30,
                "timeoutSeconds": 10,
            }
            tls_volume = {"name": "tls", "mountPath": hub.TLS_DIR, "readOnly": True}
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
                    "command": command,
                    "env": token_env,
                    "ports": ports,
                    "readinessProbe": {**probe, **STAY_READY},
                    "livenessProbe": liveness,
                    "resources": self._settings.proxy_resources.manifest(),
                    "securityContext": restricted(),
                    **({"volumeMounts": [tls_volume]} if tls_volume else {}),
                }
            ],
        }
        if tls_volume:
            pod_spec["volumes"] = [{"name": "tls", "secret": {"secretName": self.tls_secret_name}}]
        https = self._settings.https
        if https is not None and https.type == "letsencrypt":
            pod_spec["containers"].append(
                {
                    "name": "acme-route",
                    "image": self._images.proxy,
                    **self._images.never_pulled(),
                    "command": hub.acme_route_command(),
                    "env": token_env,
                    "resources": ACME_ROUTE_RESOURCES,
                    "securityContext": restricted(),
                }
            )
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
                # The hub's and the proxy's Deployments are waited for (see service_await).
                metadata={**self._metadata(object_name, component), "annotations": service_await("ClusterIP")},
                spec={
                    "type": "ClusterIP",
                    "selector": app_labels(hub.APP_NAME, component),
                    "ports": [{"name": port_name, "port": port, "targetPort": port_name}],
                },
                opts=opts,
            )
        ports = [{"name": "http", "port": hub.PUBLIC_PORT, "targetPort": "http"}]
        if settings.https is not None:
            # With TLS at the proxy, 443 is its TLS port and 80 its redirect to https; with offload
            # both reach its plain port, and what is in front terminates TLS (and redirects).
            target = "https" if self._tls_at_proxy else "http"
            ports.insert(0, {"name": "https", "port": hub.PUBLIC_HTTPS_PORT, "targetPort": target})
        spec: dict[str, Any] = {
            "type": settings.service_type,
            "selector": proxy_labels,
            "ports": ports,
        }
        if settings.load_balancer_source_ranges:
            spec["loadBalancerSourceRanges"] = list(settings.load_balancer_source_ranges)
        return k8s.core.v1.Service(
            f"{name}-proxy-public",
            # One field manager for every generation of this Service (see components/k8s.py).
            metadata={
                **self._metadata(hub.PROXY_PUBLIC_SERVICE, hub.PROXY_COMPONENT),
                "annotations": {FIELD_MANAGER_ANNOTATION: FIELD_MANAGER, **service_await(settings.service_type)},
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

    def _network_policies(self, api_server: pulumi.Input[list[dict[str, Any]]], opts: pulumi.ResourceOptions) -> None:
        """Who may talk to whom: nothing, unless a rule below allows it (the policy `default-deny`
        selects every pod of the namespace for both directions).

        User servers: reached by the hub and the proxy only; they reach the hub's API, the cluster
        DNS, and the internet — every globally reachable address, none of the private, shared,
        link-local or reserved ranges (NON_INTERNET_RANGES). That excludes other users' pods, the
        proxy's API, in-cluster Services (the API server's `kubernetes` Service included), nodes
        and cloud metadata. A managed control plane with a public address (an AKS cluster without
        private API) counts as internet; user pods carry no service account token, so it only
        ever sees anonymous calls.
        Hub: reached on its API port by the proxy, user servers and itself (the culler, a process
        of the hub's pod, calls it through its Service); it reaches the Kubernetes API (KubeSpawner;
        `api_server`: the API server's own address and port), the proxy's API, user servers, DNS,
        and with OAuth sign-in the internet (the provider's token and user endpoints).
        Proxy: public port open to all, API port to the hub only; it reaches the hub, user servers
        and DNS.
        Known limits: the allow-list is IPv4 (user pods get no IPv6 egress on dual-stack clusters),
        and DNS is allowed to the kube-dns pods only (a NodeLocal DNSCache on 169.254.20.10 would
        need its own rule).
        """
        hub_pods = {"podSelector": {"matchLabels": app_labels(hub.APP_NAME, hub.HUB_COMPONENT)}}
        proxy_pods = {"podSelector": {"matchLabels": app_labels(hub.APP_NAME, hub.PROXY_COMPONENT)}}
        user_pods = {"podSelector": {"matchLabels": app_labels(hub.APP_NAME, hub.USER_COMPONENT)}}
        hub_api = [{"protocol": "TCP", "port": hub.HUB_PORT}]
        proxy_http = [{"protocol": "TCP", "port": hub.PROXY_PORT}]
        proxy_public = [*proxy_http, *([{"protocol": "TCP", "port": hub.PROXY_HTTPS_PORT}] if self._tls_at_proxy else [])]
        proxy_api = [{"protocol": "TCP", "port": hub.PROXY_API_PORT}]
        notebook = [{"protocol": "TCP", "port": hub.SINGLEUSER_PORT}]
        dns = {"to": [CLUSTER_DNS_PEER], "ports": DNS_PORTS}
        internet = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NON_INTERNET_RANGES)}}]}
        oauth = self._settings.auth.type in ("github", "azuread")
        hub_egress = pulumi.Output.from_input(api_server).apply(
            lambda api_rules: [
                *api_rules,
                {"to": [hub_pods], "ports": hub_api},
                {"to": [proxy_pods], "ports": proxy_api},
                {"to": [user_pods], "ports": notebook},
                dns,
                *([internet] if oauth else []),
            ]
        )
        policies: dict[str, dict[str, Any]] = {
            hub.HUB_COMPONENT: {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [proxy_pods, user_pods, hub_pods], "ports": hub_api}],
                "egress": hub_egress,
            },
            hub.PROXY_COMPONENT: {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"ports": proxy_public}, {"from": [hub_pods], "ports": proxy_api}],
                "egress": [{"to": [hub_pods], "ports": hub_api}, {"to": [user_pods], "ports": notebook}, dns],
            },
            hub.USER_COMPONENT: {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [hub_pods, proxy_pods], "ports": notebook}],
                "egress": [{"to": [hub_pods], "ports": hub_api}, dns, internet],
            },
        }
        https = self._settings.https
        if https is not None and https.type == "letsencrypt":
            # The proxy forwards the ACME server's challenges to cert-manager's solver pods.
            solver_pods = {"podSelector": {"matchLabels": {cert_manager.HTTP01_SOLVER_LABEL: "true"}}}
            policies[hub.PROXY_COMPONENT]["egress"].append(
                {"to": [solver_pods], "ports": [{"protocol": "TCP", "port": hub.ACME_SOLVER_PORT}]}
            )
        default_deny(self._ns, app_labels(hub.APP_NAME, "network-policy"), opts, f"{self._name}-netpol-default-deny")
        for component, rules in policies.items():
            k8s.networking.v1.NetworkPolicy(
                f"{self._name}-netpol-{component}",
                metadata=self._metadata(component, component),
                spec={"podSelector": {"matchLabels": app_labels(hub.APP_NAME, component)}, **rules},
                opts=opts,
            )
