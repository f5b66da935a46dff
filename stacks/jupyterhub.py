"""The hub's settings (`mlplatform:jupyterhub`): Service, TLS, sign-in, the spawn form's profiles.

Configures components/jupyterhub.py and the hub's own configuration (components/hub_config/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Annotated, Literal
from urllib.parse import urlparse

from vocab.quantity import quantity
from pydantic import Field
from pydantic.alias_generators import to_camel

from stacks.cluster import ClusterSettings
from stacks.values import (
    Cidr,
    Count,
    DataRetention,
    DnsLabel,
    DnsSubdomain,
    Hostname,
    LabelValue,
    PinnedImage,
    Quantity,
    ServiceType,
    Settings,
    Storage,
    _only_with,
    _source_ranges_problems,
    resources,
)

AuthType = Literal["dummy", "native", "github", "azuread"]
OAUTH_TYPES = ("github", "azuread")
HttpsType = Literal["secret", "letsencrypt", "selfSigned", "offload"]
# The Pod Security Standards a user server may be held to: restricted (non-root, no capabilities,
# no privilege escalation, the runtime's seccomp profile), or baseline for an image that must start
# as root (Jupyter Docker Stacks' GRANT_SUDO, CHOWN_HOME, NB_UID).
PodSecurityLevel = Literal["restricted", "baseline"]
LETS_ENCRYPT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
# A JupyterHub group's name: what an admin types, or an Azure AD group's object id (a GUID).
GroupName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]
# Native sign-in on a hub reachable from outside the cluster only with passwords at least this long.
PUBLIC_MINIMUM_PASSWORD_LENGTH = 8
# The Auth keys that configure NativeAuthenticator.
NATIVE_ONLY = ("allowed_failed_logins", "lockout_seconds", "minimum_password_length", "check_common_password")
# Where oauthenticator's callback handler answers, below the hub's prefix.
OAUTH_CALLBACK_PATH = "/hub/oauth_callback"


class Profile(Settings):
    name: Annotated[str, Field(min_length=1)] = Field(description="the choice's title on the spawn form")
    description: str = Field("", description="shown under the title, after the image and limits")
    image: PinnedImage = Field(description="the notebook image, pinned by tag or digest")
    cpu_guarantee: Quantity | None = Field(None, description="CPU the server is guaranteed (request)")
    cpu_limit: Quantity | None = Field(None, description="CPU the server may use at most")
    memory_guarantee: Quantity | None = Field(None, description="memory the server is guaranteed (request)")
    memory_limit: Quantity | None = Field(None, description="memory the server may use at most")
    gpus: Count = Field(0, description="`nvidia.com/gpu` for the server; it then runs on a GPU pool")
    gpu_choices: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (),
        description="GPU counts offered on the spawn form (`gpus` is the preselected one and must be among them); "
        "each must fit a node of a GPU pool",
    )
    gpu_types: tuple[LabelValue, ...] = Field(
        (),
        description="GPU types offered on the spawn form, each the `gpuType` of a GPU pool (the first preselected); "
        "the server lands on a pool of the chosen type, which must hold every offered count",
    )
    groups: tuple[GroupName, ...] = Field(
        (),
        description="JupyterHub groups whose members see and may start the profile (empty: everyone); "
        "a user in several groups sees the profiles of each",
    )
    cull_idle_seconds: Count | None = Field(
        None, description="stop this profile's servers idle this long (default: jupyterhub.cullIdleSeconds; 0: never)"
    )
    max_age_seconds: Count = Field(
        0, description="stop this profile's servers this long after they started, in use or not (0: no limit); homes are kept"
    )
    start_timeout_seconds: Annotated[int, Field(ge=1)] | None = Field(
        None, description="how long this profile's pod may take to be scheduled and start before the spawn fails, "
        "the scheduler's reason on the spawn page (default: jupyterhub.limits.startTimeoutSeconds; a GPU profile may "
        "give up sooner when every GPU is taken)"
    )
    default: bool = Field(False, description="preselected on the form (at most one profile)")
    pod_security: PodSecurityLevel = Field(
        "restricted",
        description="the Pod Security Standard the server meets: `restricted` (non-root, all capabilities dropped, "
        "no privilege escalation, seccomp RuntimeDefault) or `baseline` (starts as root, for images that must; "
        "the hub's namespace then enforces baseline, still warning and auditing against restricted)",
    )

    @property
    def slug(self) -> str:
        """The spawn form's machine name for the profile: lowercase letters, digits and '-'."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "profile"

    @property
    def offered_gpus(self) -> tuple[int, ...]:
        """The GPU counts a user may start the profile with: its choices, or its one count."""
        return self.gpu_choices or (self.gpus,)

    def culling(self, hub_timeout: int) -> tuple[int, int]:
        """(idle timeout, max age) in seconds for this profile's servers; 0 is never."""
        return (hub_timeout if self.cull_idle_seconds is None else self.cull_idle_seconds), self.max_age_seconds

    def choice_problems(self, key: str, cluster: ClusterSettings) -> Iterator[str]:
        """Every count and type the form offers, checked against the pools that would serve it."""
        for field, values in (("gpuChoices", self.gpu_choices), ("gpuTypes", self.gpu_types)):
            for i, value in enumerate(values):
                if values.index(value) != i:
                    yield f"{key}.{field}[{i}]: {json.dumps(value)} is offered twice"
        if self.gpu_choices and self.gpus not in self.gpu_choices:
            yield (
                f"{key}.gpus: {self.gpus} must be one of gpuChoices ({', '.join(map(str, self.gpu_choices))}): "
                "it is the count preselected on the form"
            )
        if self.gpu_types and not self.gpus:
            yield f"{key}.gpuTypes: only for a profile with GPUs (set gpus and, if you like, gpuChoices)"
            return
        count_keys = [f"{key}.gpuChoices[{i}]" for i in range(len(self.gpu_choices))] or [f"{key}.gpus"]
        types = cluster.gpu_types()
        for j, gpu_type in enumerate(self.gpu_types):
            if gpu_type not in types:
                yield cluster.gpu_type_problem(f"{key}.gpuTypes[{j}]", gpu_type, 1)
                continue
            for count_key, count in zip(count_keys, self.offered_gpus, strict=True):
                problem = cluster.gpu_type_problem(count_key, gpu_type, count)
                if problem:
                    yield problem
        if not self.gpu_types:
            # Every count lands on the pool the profile's own count picks (its placement).
            pool = cluster.pool_for(self.gpus)
            for count_key, count in zip(count_keys, self.offered_gpus, strict=True):
                problem = (cluster.gpu_request_problem(count_key, count, pool.gpu_resource, pool.name) if pool
                           else cluster.gpu_problem(count_key, count))
                if problem:
                    yield problem
        else:
            pools = [p for t in self.gpu_types for p in types.get(t, ())]
            resources = {p.gpu_resource for p in pools}
            if len(resources) > 1:
                have = ", ".join(f"{p.gpu_type} ({p.name}): {p.gpu_resource}" for p in pools)
                yield (f"{key}.gpuTypes: the pools of these types advertise their GPUs under different names ({have}), "
                       "and one count choice asks for one name; give the pools the same "
                       "gpuSharing.renameByDefault, or offer the types in different profiles")

    def problems(self, key: str, cluster: ClusterSettings, user_pool: str | None) -> Iterator[str]:
        # Where the server may land: a pool of each offered type, or the pool for its counts.
        if self.gpu_types:
            types = cluster.gpu_types()
            nodes = [cluster.pool_capacity(p) for t in self.gpu_types for p in types.get(t, ())]
        else:
            nodes = [cluster.node_capacity(max(self.offered_gpus), None if self.gpus else user_pool)]
        for resource in ("cpu", "memory"):
            guarantee = getattr(self, f"{resource}_guarantee")
            limit = getattr(self, f"{resource}_limit")
            if guarantee and limit and quantity(guarantee) > quantity(limit):
                yield f"{key}.{resource}Guarantee: {guarantee} must be <= {resource}Limit ({limit})"
            for node in nodes:
                if node is not None:
                    yield from node.problems(f"{key}.{resource}Guarantee", resource, guarantee)
        yield from self.choice_problems(key, cluster)


class Auth(Settings):
    type: AuthType = Field(
        "native",
        description="`native` (sign-up, approved by an admin), `github` or `azuread` (OAuth), "
        "`dummy` (anyone; refused unless serviceType is ClusterIP)",
    )
    admin_users: tuple[str, ...] = Field(
        (),
        description="users who are hub admins (native: the hub creates the first one's account with a generated "
        "password, the stack output `jupyterhubAdminPassword`, so nobody can claim it by signing up)",
    )
    allowed_users: tuple[str, ...] = Field((), description="users allowed to sign in (OAuth: besides allowedOrganizations)")
    client_id: str | None = Field(None, description="OAuth: the application's client id")
    client_secret: str | None = Field(None, description="OAuth: the client secret, set with `pulumi config set --secret`")
    callback_url: str | None = Field(None, description="OAuth: `https://<hub address>/hub/oauth_callback`")
    tenant_id: str | None = Field(None, description="azuread: the tenant")
    allowed_organizations: tuple[str, ...] = Field((), description="github: organizations whose members may sign in")
    allowed_failed_logins: Count = Field(
        3,
        description="native: wrong passwords in a row after which an account is locked for lockoutSeconds (0: never "
        "locked; refused on a public hub)",
    )
    lockout_seconds: Annotated[int, Field(ge=1)] = Field(
        600, description="native: how long an account stays locked after allowedFailedLogins wrong passwords"
    )
    minimum_password_length: Annotated[int, Field(ge=1)] = Field(
        10, description=f"native: the shortest password sign-up accepts (a public hub needs at least {PUBLIC_MINIMUM_PASSWORD_LENGTH})"
    )
    check_common_password: bool = Field(
        True,
        description="native: refuse passwords on NativeAuthenticator's list of common passwords at sign-up "
        "(required on a public hub)",
    )

    def native_problems(self, key: str, service_type: str) -> Iterator[str]:
        """NativeAuthenticator's keys: only for native, and on a public hub only with every guard on."""
        if self.type != "native":
            for field in NATIVE_ONLY:
                if field in self.model_fields_set:
                    yield _only_with(f"{key}.{to_camel(field)}", "auth.type native", self.type)
            return
        if service_type == "ClusterIP":
            return
        public = f"a public hub (jupyterhub.serviceType {service_type}) needs it"
        if not self.allowed_failed_logins:
            yield f"{key}.allowedFailedLogins: 0 turns the lockout after wrong passwords off; {public}: set 1 or more (default 3)"
        if self.minimum_password_length < PUBLIC_MINIMUM_PASSWORD_LENGTH:
            yield (
                f"{key}.minimumPasswordLength: {self.minimum_password_length} is too short; {public} to be at least "
                f"{PUBLIC_MINIMUM_PASSWORD_LENGTH}"
            )
        if not self.check_common_password:
            yield f"{key}.checkCommonPassword: false lets common passwords in; {public} to be true"

    def problems(self, key: str, stored_as_secret: bool) -> Iterator[str]:
        if self.type in OAUTH_TYPES:
            needed = ("client_id", "client_secret", "callback_url") + (("tenant_id",) if self.type == "azuread" else ())
            for field in needed:
                if not getattr(self, field):
                    yield f"{key}.{to_camel(field)}: required with auth.type {self.type}"
        if self.client_secret and not stored_as_secret:
            yield (
                f"{key}.clientSecret: is stored in plain text; set it with "
                "`pulumi config set --secret --path jupyterhub.auth.clientSecret`"
            )


# The https types each type-specific key is for: such a key set for another type is a mistake.
_HTTPS_TYPES_OF = {
    "secret_name": ("secret",),
    "contact_email": ("letsencrypt",),
    "acme_server": ("letsencrypt",),
    "install_cert_manager": ("letsencrypt",),
}


class Https(Settings):
    """TLS for the public proxy Service, in the spirit of Zero to JupyterHub's `proxy.https`."""

    type: HttpsType = Field(
        description="`secret` (an existing `kubernetes.io/tls` Secret), `letsencrypt` (a certificate from an ACME "
        "server through cert-manager), `selfSigned` (generated once and kept, for private and local use), "
        "`offload` (TLS ends at a load balancer or ingress in front of the Service)"
    )
    hosts: tuple[Hostname, ...] = Field(
        (),
        description="the hub's public DNS names; the first is its public URL `https://<host>/` (required with "
        "letsencrypt, which takes one, and offload; selfSigned: added to the certificate's names)",
    )
    secret_name: DnsSubdomain | None = Field(
        None, description="secret: the `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`) in the hub's namespace"
    )
    contact_email: str | None = Field(None, description="letsencrypt: the ACME account's e-mail address (required there)")
    acme_server: str = Field(
        LETS_ENCRYPT_SERVER,
        description="letsencrypt: the ACME directory (Let's Encrypt's staging server for trials: "
        "https://acme-staging-v02.api.letsencrypt.org/directory)",
    )
    install_cert_manager: bool = Field(
        False, description="letsencrypt: install cert-manager (the pinned upstream release) into the cluster"
    )

    @property
    def terminates_tls(self) -> bool:
        """Whether the proxy itself serves TLS (every type but offload)."""
        return self.type != "offload"

    @property
    def public_url(self) -> str | None:
        """The hub's address as browsers see it, when the config names one."""
        return f"https://{self.hosts[0]}/" if self.hosts else None

    def callback_hosts(self) -> tuple[str, ...]:
        """Hosts an OAuth callback may name: the public names, and for a self-signed hub its port-forward."""
        return self.hosts + (("localhost",) if self.type == "selfSigned" else ())

    def problems(self, key: str, service_type: str) -> Iterator[str]:
        for field, types in _HTTPS_TYPES_OF.items():
            if field in self.model_fields_set and self.type not in types:
                yield _only_with(f"{key}.{to_camel(field)}", f"https.type {' or '.join(types)}", self.type)
        if self.type == "secret" and not self.secret_name:
            yield f"{key}.secretName: required with https.type secret: the name of a kubernetes.io/tls Secret in the hub's namespace"
        if self.type in ("letsencrypt", "offload") and not self.hosts:
            what = "the names the certificate is for" if self.type == "letsencrypt" else "the public URL the hub is reached at"
            yield f"{key}.hosts: required with https.type {self.type}: {what}"
        if self.type == "letsencrypt":
            if len(self.hosts) > 1:
                # cert-manager runs one solver pod per name, and the proxy's one route for
                # challenges reaches any of them: each would answer for its own name only.
                yield (
                    f"{key}.hosts: letsencrypt takes one host here, not {len(self.hosts)}: the proxy routes every "
                    "ACME challenge to the same solver Service"
                )
            if not self.contact_email or "@" not in self.contact_email:
                yield f"{key}.contactEmail: {json.dumps(self.contact_email)} must be an e-mail address (required with https.type letsencrypt)"
            if not self.acme_server.startswith("https://"):
                yield f"{key}.acmeServer: {json.dumps(self.acme_server)} must be an https:// ACME directory URL"
            if service_type != "LoadBalancer":
                # The ACME server proves control of each host by fetching http://<host>/.well-known/...
                yield (
                    f"{key}.type: letsencrypt needs jupyterhub.serviceType LoadBalancer, not {service_type}: the ACME "
                    "server checks http://<host>/ on port 80; use secret, selfSigned or offload otherwise"
                )


class Limits(Settings):
    """How the hub protects itself from a crowd and from a broken spawner (Zero to JupyterHub's defaults or stricter)."""

    concurrent_spawn_limit: Count = Field(
        64, description="servers that may be starting at once; one more is answered 429 \"Too many users trying to log "
        "in right now\" (0: no limit; Zero to JupyterHub's default 64)"
    )
    active_server_limit: Count = Field(
        0, description="servers that may be running or starting at once; one more is answered 429 \"Active user limit "
        "exceeded\" (0: no limit, as Zero to JupyterHub)"
    )
    consecutive_failure_limit: Count = Field(
        5, description="failed spawns in a row after which the hub exits, for Kubernetes to restart it "
        "(0: never; Zero to JupyterHub's default 5)"
    )
    start_timeout_seconds: Annotated[int, Field(ge=1)] = Field(
        900, description="how long a user's pod may take to be scheduled, pull its image and start before the "
        "spawn fails (longer than Zero to JupyterHub's 300: notebook images are gigabytes, a GPU pool may scale up from zero)"
    )
    http_timeout_seconds: Annotated[int, Field(ge=1)] = Field(
        30, description="how long a started server may take to answer HTTP before the spawn fails (KubeSpawner's 30)"
    )


DEFAULT_PROFILES = (
    Profile(
        name="TensorFlow (CPU)",
        description="Jupyter with TensorFlow on CPU",
        image="quay.io/jupyter/tensorflow-notebook:2025-12-01",
        cpu_guarantee="500m",
        cpu_limit="2",
        memory_guarantee="1Gi",
        memory_limit="4Gi",
        default=True,
    ),
)


class JupyterHubSettings(Settings):
    enabled: bool = Field(True, description="deploy the hub")
    namespace: DnsLabel = Field("jupyterhub", description="the hub's namespace")
    service_type: ServiceType = Field("ClusterIP", description="the public proxy Service `proxy-public`: `ClusterIP`, `LoadBalancer` or `NodePort`")
    load_balancer_source_ranges: tuple[Cidr, ...] = Field((), description="LoadBalancer: the CIDR blocks allowed to reach it")
    https: Https | None = Field(
        None, description="TLS for the public Service (required with serviceType LoadBalancer or NodePort)"
    )
    auth: Auth = Field(Auth(), description="how users sign in")
    profiles: tuple[Profile, ...] = Field(
        DEFAULT_PROFILES,
        description="the spawn form's choices, each an image with its limits",
        json_schema_extra={"shown_default": "one CPU TensorFlow profile"},
    )
    cull_idle_seconds: Count = Field(
        3600, description="stop servers idle this long (jupyterhub-idle-culler; 0: never); a profile may set its own"
    )
    groups: dict[GroupName, tuple[Annotated[str, Field(min_length=1)], ...]] = Field(
        {},
        description="JupyterHub groups and their members, created and filled at every hub start (JupyterHub "
        "`load_groups`; it adds members, so take one out on the admin page too); profiles[].groups name them",
    )
    groups_from_sign_in: bool = Field(
        False,
        description="azuread: a user's groups are the ID token's `groups` claim (group object ids), set at each "
        "sign-in (oauthenticator `manage_groups`); jupyterhub.groups must then be empty",
    )
    limits: Limits = Field(Limits(), description="spawn limits and timeouts that keep the hub up under a crowd")
    storage: Storage = Field(Storage(), description="each user's home volume")
    data_retention: DataRetention = Field(
        "keep",
        description="`keep`: the namespace, the hub's database (`hub-db-dir`) and the users' homes (`claim-<user>`) "
        "outlive `pulumi destroy`, and a change that would delete, replace or strand them fails the preview; "
        "`delete`: they go with the stack (docs/data.md)",
    )
    user_pool: str | None = Field(None, description="the node pool for CPU notebooks (GPU profiles always go to a GPU pool)")
    hub_resources: resources(cpu_request="200m", memory_request="512Mi")  # type: ignore[valid-type]
    proxy_resources: resources(cpu_request="100m", memory_request="128Mi")  # type: ignore[valid-type]

    @property
    def pod_security_level(self) -> PodSecurityLevel:
        """What the hub's namespace enforces: restricted, unless a profile asks for baseline."""
        return "baseline" if any(p.pod_security == "baseline" for p in self.profiles) else "restricted"

    def profile_problems(self, key: str) -> Iterator[str]:
        """The rules on the profile list as a whole: the spawn form needs them, whoever builds the hub."""
        if not self.profiles:
            yield f"{key}.profiles: at least one profile is needed"
        if sum(p.default for p in self.profiles) > 1:
            yield f"{key}.profiles: at most one profile may be the default"
        if self.profiles and all(p.groups for p in self.profiles):
            yield (
                f"{key}.profiles: every profile is limited to groups, so a user in none could start nothing; "
                "leave at least one profile without groups"
            )
        for i, profile in enumerate(self.profiles):
            timeout = profile.start_timeout_seconds
            if timeout is not None and timeout > self.limits.start_timeout_seconds:
                # The hub stops waiting for any spawn after the hub-wide timeout, whatever the profile says.
                yield (
                    f"{key}.profiles[{i}].startTimeoutSeconds: {timeout} must be at most "
                    f"jupyterhub.limits.startTimeoutSeconds ({self.limits.start_timeout_seconds}), after which the hub "
                    "gives up on any spawn"
                )
        names = [p.name for p in self.profiles]
        slugs = [p.slug for p in self.profiles]
        for i, profile in enumerate(self.profiles):
            if names.count(profile.name) > 1:
                yield f"{key}.profiles[{i}].name: {json.dumps(profile.name)} is used by more than one profile"
            elif slugs.count(profile.slug) > 1:
                yield (
                    f"{key}.profiles[{i}].name: {json.dumps(profile.name)} gives the spawn form the same "
                    f"name ({profile.slug}) as another profile; rename one"
                )

    def group_problems(self, key: str) -> Iterator[str]:
        """Groups come from the stack config or from Azure AD sign-in, not both; profiles name known ones."""
        if self.groups_from_sign_in:
            if self.auth.type != "azuread":
                yield f"{key}.groupsFromSignIn: only with auth.type azuread (the ID token's groups claim), not {self.auth.type}"
            if self.groups:
                yield (
                    f"{key}.groups: must be empty with groupsFromSignIn: sign-in then sets every user's groups, "
                    "and JupyterHub refuses groups from its config besides"
                )
            return
        for i, profile in enumerate(self.profiles):
            for j, group in enumerate(profile.groups):
                if group not in self.groups:
                    yield (
                        f"{key}.profiles[{i}].groups[{j}]: {json.dumps(group)} is not in jupyterhub.groups "
                        f"(groups: {', '.join(self.groups) or 'none'}; or set groupsFromSignIn with azuread)"
                    )

    def https_problems(self, key: str) -> Iterator[str]:
        """A public hub serves TLS, and an OAuth provider sends users back to its https address."""
        if self.https is None:
            if self.service_type != "ClusterIP":
                yield (
                    f"{key}.https: required with jupyterhub.serviceType {self.service_type}: without it the hub "
                    "serves sign-in and notebooks over plain HTTP; set https.type to secret, letsencrypt, selfSigned or offload"
                )
            return
        yield from self.https.problems(f"{key}.https", self.service_type)
        callback = self.auth.callback_url
        if self.auth.type not in OAUTH_TYPES or not callback:
            return
        url = urlparse(callback)
        hosts = self.https.callback_hosts()
        if url.scheme != "https" or url.path != OAUTH_CALLBACK_PATH or (hosts and url.hostname not in hosts):
            where = " or ".join(f"https://{host}{OAUTH_CALLBACK_PATH}" for host in hosts) or f"https://<host>{OAUTH_CALLBACK_PATH}"
            yield (
                f"{key}.auth.callbackUrl: {json.dumps(callback)} is not on the hub's https address; "
                f"must be {where} (the hosts of jupyterhub.https.hosts)"
            )
        if not hosts:
            yield (
                f"{key}.https.hosts: required with auth.type {self.auth.type}: the host of auth.callbackUrl, "
                "so that the callback is checked against the hub's address"
            )

    def problems(self, key: str, cluster: ClusterSettings, secret: bool) -> Iterator[str]:
        if self.auth.type == "dummy" and self.service_type != "ClusterIP":
            yield (
                f"{key}.auth.type: \"dummy\" lets anyone in and is not allowed with "
                f"jupyterhub.serviceType {self.service_type}; use native, github or azuread, or serviceType ClusterIP"
            )
        yield from _source_ranges_problems(key, self.service_type, self.load_balancer_source_ranges)
        yield from self.auth.problems(f"{key}.auth", secret)
        yield from self.auth.native_problems(f"{key}.auth", self.service_type)
        yield from self.https_problems(key)
        if self.user_pool is not None and self.user_pool not in cluster.pool_names:
            yield (
                f"{key}.userPool: {json.dumps(self.user_pool)} is not a node pool; "
                f"pools: {', '.join(cluster.pool_names) or 'none'}"
            )
        yield from self.profile_problems(key)
        for i, profile in enumerate(self.profiles):
            yield from profile.problems(f"{key}.profiles[{i}]", cluster, self.user_pool)
        yield from self.group_problems(key)
        core_node = cluster.node_capacity(0)
        yield from self.hub_resources.problems(f"{key}.hubResources", core_node)
        yield from self.proxy_resources.problems(f"{key}.proxyResources", core_node)
