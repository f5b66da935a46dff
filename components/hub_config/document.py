"""The hub's configuration as data, rendered from the typed `jupyterhub.*` settings.

The JupyterHub component puts the document rendered here into a ConfigMap beside
`jupyterhub_config.py` (beside it in this package), which the hub image loads when it starts. The
document's `traits` are plain traitlets configuration (`{"KubeSpawner": {"profile_list": ...}}`),
so which JupyterHub, KubeSpawner and authenticator settings the platform uses is written down
here, once, and the tests load the very same document with the real packages. The config file
adds only what cannot be data: secrets, which arrive as environment variables from Kubernetes
Secrets (`secretEnv`), and the interpreter that runs hub-managed services (`managedServices`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes.utils import parse_quantity

from components.cluster import Scheduling
from components.k8s import PART_OF
from stacks.jupyterhub import Auth, JupyterHubSettings, Profile

CONFIG_FILE = Path(__file__).with_name("jupyterhub_config.py")
# Beside it in the ConfigMap: the profile rules the config file and the per-profile cullers share,
# and the culler's per-profile view of the hub (both loaded from the config directory).
PROFILES_FILE = Path(__file__).with_name("hub_profiles.py")
CULL_BY_PROFILE_FILE = Path(__file__).with_name("cull_by_profile.py")
SHIPPED_FILES = (CONFIG_FILE, PROFILES_FILE, CULL_BY_PROFILE_FILE)
# The k8s-hub image's configuration directory; the ConfigMap is mounted here.
CONFIG_DIR = "/usr/local/etc/jupyterhub"
DOCUMENT_NAME = "mlplatform-hub.json"
# jupyterhub_config.py reads the document from this path (default: beside itself).
DOCUMENT_ENV = "MLPLATFORM_HUB_CONFIG"
# The k8s-hub image's working directory: the sqlite database lives here, on its own volume.
DATA_DIR = "/srv/jupyterhub"

HUB_PORT = 8081
PUBLIC_PORT = 80  # the public Service's port, in front of the proxy's PROXY_PORT
PUBLIC_HTTPS_PORT = 443  # with jupyterhub.https: the public Service's TLS port
PROXY_PORT = 8000  # plain HTTP; with TLS at the proxy, it only redirects to https
PROXY_HTTPS_PORT = 8443  # the proxy's TLS port (as Zero to JupyterHub's), in front of which is PUBLIC_HTTPS_PORT
PROXY_API_PORT = 8001
SINGLEUSER_PORT = 8888  # KubeSpawner's default port for user servers
HOME_DIR = "/home/jovyan"  # home of the Jupyter Docker Stacks images (user jovyan, uid 1000, gid 100)

# Object names inside the hub's namespace; the hub, the proxy and user servers reach each other
# by these DNS names.
HUB_SERVICE = "hub"  # also the hub's Deployment, ServiceAccount and Role
PROXY_DEPLOYMENT = "proxy"
PROXY_API_SERVICE = "proxy-api"
PROXY_PUBLIC_SERVICE = "proxy-public"
# The proxy's certificate: the Secret the stack makes (selfSigned) or cert-manager writes
# (letsencrypt), mounted where configurable-http-proxy reads it.
TLS_SECRET_NAME = "proxy-public-tls"
TLS_DIR = "/etc/chp/tls"
# letsencrypt: cert-manager's HTTP-01 solver pods answer the ACME server's challenges; the proxy
# routes this path to them through the Service ACME_SOLVER_SERVICE.
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
ACME_SOLVER_SERVICE = "acme-solver"
ACME_SOLVER_PORT = 8089  # cert-manager's acmesolver listens here

# The `app.kubernetes.io/name` and `.../component` label values of the hub's pods. KubeSpawner
# labels user pods with its `component_label`, singleuser-server.
APP_NAME = "jupyterhub"
HUB_COMPONENT = "hub"
PROXY_COMPONENT = "proxy"
USER_COMPONENT = "singleuser-server"

# Secrets reach the hub and the proxy as environment variables. configurable-http-proxy reads
# CONFIGPROXY_AUTH_TOKEN itself; the hub's names are ours, mapped to traits by `secretEnv`.
PROXY_TOKEN_ENV = "CONFIGPROXY_AUTH_TOKEN"
COOKIE_SECRET_ENV = "JPY_COOKIE_SECRET"
OAUTH_CLIENT_SECRET_ENV = "OAUTH_CLIENT_SECRET"

CULLER_SERVICE = "jupyterhub-idle-culler"
CULL_EVERY_SECONDS = 600  # as Zero to JupyterHub: check every 10 minutes (at most)
# How often the hub learns of a server's activity: the proxy's routes are read every
# `JupyterHub.last_activity_interval`, and jupyterhub-singleuser posts its own activity every
# $JUPYTERHUB_ACTIVITY_INTERVAL; both are 300 s by default.
ACTIVITY_INTERVAL_SECONDS = 300
ACTIVITY_INTERVAL_ENV = "JUPYTERHUB_ACTIVITY_INTERVAL"
# What jupyterhub-idle-culler needs (its README): find users and their servers' last activity,
# and stop servers. Nothing more: it does not delete users.
CULLER_SCOPES = ("list:users", "read:users:activity", "read:servers", "delete:servers")

AUTHENTICATOR_CLASSES = {
    "dummy": "jupyterhub.auth.DummyAuthenticator",
    "native": "nativeauthenticator.NativeAuthenticator",
    "github": "oauthenticator.github.GitHubOAuthenticator",
    "azuread": "oauthenticator.azuread.AzureAdOAuthenticator",
}

# Pulling a multi-gigabyte notebook image, or waiting for a GPU pool to scale up from zero
# nodes, takes longer than KubeSpawner's default of 5 minutes.
START_TIMEOUT_SECONDS = 900


def hub_url() -> str:
    """Where user servers and the proxy reach the hub (its Service, in their own namespace)."""
    return f"http://{HUB_SERVICE}:{HUB_PORT}"


def proxy_command(
    hub: str,
    *,
    ip: str = "",
    port: int = PROXY_PORT,
    api_ip: str = "",
    api_port: int = PROXY_API_PORT,
    https_port: int | None = None,
    tls_dir: str = TLS_DIR,
) -> list[str]:
    """The configurable-http-proxy command line: public port, API port, and the hub as default target.

    An empty ip listens on every interface. The token for the API comes from the environment.
    With `https_port` the proxy serves TLS there with the certificate in `tls_dir` (a
    `kubernetes.io/tls` Secret's keys), and `port` answers every request with a redirect to
    https on the public Service's port 443.
    """
    listen = [f"--port={port}"]
    if https_port is not None:
        listen = [
            f"--port={https_port}",
            f"--ssl-key={tls_dir}/tls.key",
            f"--ssl-cert={tls_dir}/tls.crt",
            f"--redirect-port={port}",
            f"--redirect-to={PUBLIC_HTTPS_PORT}",
        ]
    return [
        "configurable-http-proxy",
        f"--ip={ip}",
        *listen,
        f"--api-ip={api_ip}",
        f"--api-port={api_port}",
        f"--default-target={hub}",
        f"--error-target={hub}/hub/error",
    ]


def served_certificate_check(https_port: int = PROXY_HTTPS_PORT, tls_dir: str = TLS_DIR) -> list[str]:
    """A command that fails unless the proxy serves the certificate its Secret holds now.

    configurable-http-proxy reads its certificate once, at start; a renewed one (cert-manager
    renews Let's Encrypt's 90-day certificates a month ahead, and the kubelet updates the mounted
    Secret) would otherwise never be served. As the proxy container's liveness probe, this makes
    the kubelet restart it with the new one; the hub adds its routes back on its next check.
    Node, because the proxy image has it.
    """
    script = (
        "const fs = require('fs'), tls = require('tls'), {X509Certificate} = require('crypto');"
        f"const want = new X509Certificate(fs.readFileSync('{tls_dir}/tls.crt')).raw;"
        f"const socket = tls.connect({{host: '127.0.0.1', port: {https_port}, rejectUnauthorized: false}}, () => {{"
        "  const served = socket.getPeerCertificate().raw; socket.destroy();"
        "  if (!served || !served.equals(want)) { console.error('the proxy serves an older certificate than its Secret holds'); process.exit(1); }"
        "  process.exit(0); });"
        "socket.setTimeout(5000, () => process.exit(1)); socket.on('error', (e) => { console.error(e.message); process.exit(1); });"
    )
    return ["node", "-e", script]


def acme_route_command(api_port: int = PROXY_API_PORT, every_seconds: int = 30) -> list[str]:
    """A command that keeps the proxy's route for ACME challenges to cert-manager's solver (letsencrypt).

    configurable-http-proxy keeps routes in memory, so this runs beside it in the proxy's pod and
    adds the route again every `every_seconds` (after a restart of the proxy container too). The
    hub leaves routes it did not add alone. Node, because the proxy image has it; the API token
    comes from the environment, as the proxy's does.
    """
    target = f"http://{ACME_SOLVER_SERVICE}:{ACME_SOLVER_PORT}"
    script = (
        "const http = require('http');"
        "function ensure() {"
        f"  const request = http.request({{host: '127.0.0.1', port: {api_port}, method: 'POST',"
        f"    path: '/api/routes{ACME_CHALLENGE_PATH.rstrip('/')}',"
        f"    headers: {{'Authorization': 'token ' + process.env.{PROXY_TOKEN_ENV}, 'Content-Type': 'application/json'}}}},"
        "    (response) => { if (response.statusCode >= 300) console.error('route not added: HTTP ' + response.statusCode); response.resume(); });"
        "  request.on('error', (e) => console.error('proxy API: ' + e.message));"
        f"  request.end(JSON.stringify({{target: '{target}'}}));"
        "}"
        f"ensure(); setInterval(ensure, {every_seconds * 1000});"
    )
    return ["node", "-e", script]


# --- profiles -----------------------------------------------------------------------------------


def describe(profile: Profile) -> str:
    """What the spawn form tells users about a profile: the image and the resources they get."""
    facts = [f"Image {profile.image}"]
    for label, guarantee, limit in (
        ("CPU", profile.cpu_guarantee, profile.cpu_limit),
        ("memory", profile.memory_guarantee, profile.memory_limit),
    ):
        if guarantee and limit:
            facts.append(f"{label} {guarantee} guaranteed, limit {limit}")
        elif guarantee:
            facts.append(f"{label} {guarantee} guaranteed")
        elif limit:
            facts.append(f"{label} limit {limit}")
    if profile.gpus:
        counts = sorted(profile.offered_gpus)
        shown = str(counts[0]) if len(counts) == 1 else f"{', '.join(map(str, counts[:-1]))} or {counts[-1]}"
        kind = f" {' or '.join(profile.gpu_types)}" if profile.gpu_types else ""
        facts.append(f"{shown} NVIDIA{kind} GPU{'s' if counts[-1] > 1 else ''}")
    text = "; ".join(facts) + "."
    return f"{profile.description.rstrip('.')}. {text}" if profile.description else text


def placement(scheduling: Scheduling) -> dict[str, Any]:
    """A node pool's Scheduling as KubeSpawner settings (node_selector, tolerations, affinity)."""
    spec = scheduling.pod_spec()
    settings: dict[str, Any] = {}
    if "nodeSelector" in spec:
        settings["node_selector"] = spec["nodeSelector"]
    if "tolerations" in spec:
        settings["tolerations"] = spec["tolerations"]
    affinity = spec.get("affinity")
    if affinity:
        node_affinity = affinity.get("nodeAffinity", {})
        required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {})
        # KubeSpawner takes required node affinity as a list of terms; anything else the cluster
        # may one day ask for has no KubeSpawner setting here yet, and must not be dropped silently.
        if set(affinity) != {"nodeAffinity"} or set(node_affinity) != {"requiredDuringSchedulingIgnoredDuringExecution"}:
            raise ValueError(f"affinity {affinity} has no KubeSpawner equivalent; only required node affinity is supported")
        settings["node_affinity_required"] = required["nodeSelectorTerms"]
    return settings


def spawner_overrides(profile: Profile, scheduling: Scheduling, gpu_resource: str) -> dict[str, Any]:
    """The KubeSpawner settings a profile applies: image, resources and where its pods run.

    A profile that offers GPU types leaves where its pods run to the chosen type (`gpu_options`):
    both would apply, and a pool's selector and another type's affinity would never meet.
    """
    overrides: dict[str, Any] = {"image": profile.image}
    # KubeSpawner takes CPU in cores (a float) and memory in bytes; its own memory parser knows
    # K/M/G/T but not the Ki/Mi/Gi of Kubernetes quantities, so convert here.
    if profile.cpu_guarantee:
        overrides["cpu_guarantee"] = float(parse_quantity(profile.cpu_guarantee))
    if profile.cpu_limit:
        overrides["cpu_limit"] = float(parse_quantity(profile.cpu_limit))
    if profile.memory_guarantee:
        overrides["mem_guarantee"] = int(parse_quantity(profile.memory_guarantee))
    if profile.memory_limit:
        overrides["mem_limit"] = int(parse_quantity(profile.memory_limit))
    if profile.gpus:
        # The GPU resource of the pools the profile lands on (shared GPUs may be renamed), in
        # limits; Kubernetes sets the request equal.
        overrides["extra_resource_limits"] = {gpu_resource: str(profile.gpus)}
    if not profile.gpu_types:
        overrides.update(placement(scheduling))
    return overrides


# The names of the spawn form's options (KubeSpawner `profile_options`), which are also the keys
# of `user_options` in a REST API request: {"profile": "<slug>", "gpus": "2", "gpu-type": "A100"}.
GPUS_OPTION = "gpus"
GPU_TYPE_OPTION = "gpu-type"


def gpu_resource(profile: Profile, scheduling: Scheduling, type_scheduling: Mapping[str, Scheduling]) -> str:
    """The resource a profile's GPUs are asked for by: that of the pools it lands on (the preview
    refuses a profile whose GPU types' pools advertise different names)."""
    if profile.gpu_types:
        return type_scheduling[profile.gpu_types[0]].gpu_resource
    return scheduling.gpu_resource


def gpu_options(profile: Profile, type_scheduling: Mapping[str, Scheduling], gpu_resource: str) -> dict[str, Any]:
    """KubeSpawner `profile_options` for a profile's GPU choices: the count, and the type (its pools)."""
    options: dict[str, Any] = {}
    if profile.gpu_choices:
        options[GPUS_OPTION] = {
            "display_name": "GPUs",
            "choices": {
                str(n): {
                    "display_name": f"{n} GPU{'s' if n > 1 else ''}",
                    "default": n == profile.gpus,
                    # Merged into the profile's own extra_resource_limits: the chosen count wins.
                    "kubespawner_override": {"extra_resource_limits": {gpu_resource: str(n)}},
                }
                for n in profile.gpu_choices
            },
        }
    if profile.gpu_types:
        options[GPU_TYPE_OPTION] = {
            "display_name": "GPU type",
            "choices": {
                gpu_type: {
                    "display_name": gpu_type,
                    "default": i == 0,
                    "kubespawner_override": placement(type_scheduling[gpu_type]),
                }
                for i, gpu_type in enumerate(profile.gpu_types)
            },
        }
    return options


def profile_list(
    profiles: tuple[Profile, ...],
    scheduling: Mapping[str, Scheduling],
    type_scheduling: Mapping[str, Scheduling] | None = None,
) -> list[dict[str, Any]]:
    entries = []
    for profile in profiles:
        resource = gpu_resource(profile, scheduling[profile.name], type_scheduling or {})
        entry: dict[str, Any] = {
            "display_name": profile.name,
            "slug": profile.slug,
            "description": describe(profile),
            "default": profile.default,
            "kubespawner_override": spawner_overrides(profile, scheduling[profile.name], resource),
        }
        options = gpu_options(profile, type_scheduling or {}, resource)
        if options:
            entry["profile_options"] = options
        entries.append(entry)
    return entries


def profile_groups(settings: JupyterHubSettings) -> dict[str, list[str]]:
    """The group-limited profiles: slug -> the groups whose members see and may start it."""
    return {p.slug: list(p.groups) for p in settings.profiles if p.groups}


def groups(settings: JupyterHubSettings) -> dict[str, Any]:
    """Traits for the hub's groups: created from the stack config, or (azuread) set at each sign-in."""
    if settings.groups_from_sign_in:
        # The ID token's claims are the auth state's "user"; Azure AD puts group object ids in
        # "groups" once the app registration's groupMembershipClaims asks for them.
        return {"AzureAdOAuthenticator": {"manage_groups": True, "auth_state_groups_key": "user.groups"}}
    if not settings.groups:
        return {}
    return {"JupyterHub": {"load_groups": {name: {"users": sorted(users)} for name, users in settings.groups.items()}}}


# --- authentication -----------------------------------------------------------------------------


def authentication(auth: Auth) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """Traits and secret environment variables for `auth.type`.

    Who may log in, per type (JupyterHub 5 lets nobody in unless told):
    - dummy: anyone (the config refuses dummy unless the hub is reachable by port-forward only);
    - native: users who signed up and were authorized by an admin (NativeAuthenticator's own gate);
    - azuread: anyone in the tenant, unless allowedUsers narrows it;
    - github: only allowedUsers, members of allowedOrganizations, and admins: a GitHub account
      alone proves nothing about belonging to the team.
    Admin users may always log in.
    """
    cls = AUTHENTICATOR_CLASSES[auth.type]
    section = cls.rsplit(".", 1)[1]
    traits: dict[str, Any] = {
        "JupyterHub": {"authenticator_class": cls},
        "Authenticator": {
            "admin_users": sorted(auth.admin_users),
            "allowed_users": sorted(auth.allowed_users),
            "allow_all": auth.type != "github" and not auth.allowed_users,
        },
    }
    secret_env: dict[str, dict[str, str]] = {}
    if auth.type == "native":
        # New accounts wait for an admin's approval at /hub/authorize.
        traits[section] = {"open_signup": False}
    elif auth.type in ("github", "azuread"):
        oauth: dict[str, Any] = {"client_id": auth.client_id, "oauth_callback_url": auth.callback_url}
        if auth.type == "github":
            oauth["allowed_organizations"] = sorted(auth.allowed_organizations)
        else:
            oauth["tenant_id"] = auth.tenant_id
            # The sign-in name (user@domain) rather than the display name: unique, and what
            # adminUsers lists.
            oauth["username_claim"] = "preferred_username"
        traits[section] = oauth
        secret_env[section] = {"client_secret": OAUTH_CLIENT_SECRET_ENV}
    return traits, secret_env


# --- the document -------------------------------------------------------------------------------


def culling_policies(settings: JupyterHubSettings) -> dict[tuple[int, int], list[str]]:
    """(idle timeout, max age) -> the slugs of the profiles culled so; profiles never culled left out."""
    policies: dict[tuple[int, int], list[str]] = {}
    for profile in settings.profiles:
        policy = profile.culling(settings.cull_idle_seconds)
        if any(policy):
            policies.setdefault(policy, []).append(profile.slug)
    return policies


def culler_service(timeout: int, max_age: int, profiles: list[str] | None) -> dict[str, Any]:
    """jupyterhub-idle-culler for one policy: for every server (`profiles` None), or, through
    cull_by_profile.py, for the servers of `profiles` only.

    The culler stops anything idle for `--timeout` and, with `--max-age`, anything older; a
    policy with only a max age gets it as its timeout too (a server idle that long is that old).
    """
    limit = timeout or max_age
    cull_every, _ = culling_cadence(min(t for t in (timeout, max_age) if t))
    args = [f"--timeout={limit}", f"--cull-every={cull_every}"] + ([f"--max-age={max_age}"] if max_age else [])
    if profiles is None:
        return {"name": CULLER_SERVICE, "module": "jupyterhub_idle_culler", "args": args}
    # Named by its policy, which is what tells one culler from another.
    name = f"{CULLER_SERVICE}-idle-{timeout}s" + (f"-age-{max_age}s" if max_age else "")
    return {
        "name": name,
        "script": CULL_BY_PROFILE_FILE.name,
        "args": [f"--profiles={','.join(profiles)}", "--", *args],
    }


def culling_cadence(timeout: int) -> tuple[int, int]:
    """How often the culler looks (seconds), and how often activity reaches the hub, for `timeout`.

    The culler stops a server whose last activity the hub knows of is older than `timeout`. The
    hub hears of activity only every ACTIVITY_INTERVAL_SECONDS, so with a shorter timeout a server
    in use would be stopped before its activity arrived: activity is reported at least three
    times per timeout. The culler looks twice per timeout (as it does when not told), so an idle
    server goes within 1.5 timeouts; never less often than every CULL_EVERY_SECONDS.
    """
    return min(CULL_EVERY_SECONDS, max(1, timeout // 2)), min(ACTIVITY_INTERVAL_SECONDS, max(1, timeout // 3))




def home_storage(settings: JupyterHubSettings, persistent: bool) -> dict[str, Any]:
    """KubeSpawner settings for users' home directories: a claim per user, created on first start.

    Without persistent storage (a simulated cluster, where nothing provisions volumes and a claim
    would keep the pod from being scheduled) homes are emptyDir volumes that end with the pod.
    """
    mount = [{"name": "home", "mountPath": HOME_DIR}]
    if not persistent:
        return {"storage_pvc_ensure": False, "volumes": [{"name": "home", "emptyDir": {}}], "volume_mounts": mount}
    storage: dict[str, Any] = {
        "storage_pvc_ensure": True,
        "storage_capacity": settings.storage.size,
        "storage_access_modes": ["ReadWriteOnce"],
        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
        "volume_mounts": mount,
    }
    if settings.storage.storage_class:
        storage["storage_class"] = settings.storage.storage_class
    return storage


def render(
    settings: JupyterHubSettings,
    profile_scheduling: Mapping[str, Scheduling],
    persistent_homes: bool = True,
    pull_secrets: tuple[str, ...] = (),
    pull_policy: str | None = None,
    gpu_type_scheduling: Mapping[str, Scheduling] | None = None,
) -> dict[str, Any]:
    """The hub's configuration document for `settings`; `profile_scheduling` maps profile name to pool,
    `gpu_type_scheduling` GPU type to its pools,
    `pull_secrets` are the Secrets user pods pull their images with, `pull_policy` their
    imagePullPolicy (None: KubeSpawner's default)."""
    auth_traits, auth_secret_env = authentication(settings.auth)
    for section, values in groups(settings).items():
        auth_traits.setdefault(section, {}).update(values)
    default = next((p for p in settings.profiles if p.default), settings.profiles[0])
    traits: dict[str, Any] = {
        "JupyterHub": {
            "spawner_class": "kubespawner.KubeSpawner",
            # Every address of the pod. Not hub_ip 0.0.0.0: with hub_connect_url set, JupyterHub 5
            # then binds the connect URL's host (the `hub` Service's address, not the pod's).
            "hub_bind_url": f"http://:{HUB_PORT}",
            "hub_connect_url": hub_url(),
            "db_url": f"sqlite:///{DATA_DIR}/jupyterhub.sqlite",
            # User pods outlive a hub restart; the hub finds them again from its database.
            "cleanup_servers": False,
            **({"public_url": settings.https.public_url} if settings.https and settings.https.public_url else {}),
            **auth_traits.pop("JupyterHub"),
        },
        "ConfigurableHTTPProxy": {
            # The proxy runs in its own pod so that routes survive a hub restart.
            "should_start": False,
            "api_url": f"http://{PROXY_API_SERVICE}:{PROXY_API_PORT}",
        },
        "KubeSpawner": {
            "namespace": settings.namespace,
            "image": default.image,
            "profile_list": profile_list(settings.profiles, profile_scheduling, gpu_type_scheduling),
            "start_timeout": START_TIMEOUT_SECONDS,
            "port": SINGLEUSER_PORT,
            "uid": 1000,
            "fs_gid": 100,
            # The labels the NetworkPolicies select user pods by (with component singleuser-server).
            "common_labels": {
                "app.kubernetes.io/name": APP_NAME,
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/managed-by": "kubespawner",
            },
            "component_label": USER_COMPONENT,
            # User servers never talk to the Kubernetes API: no token in their pods.
            "automount_service_account_token": False,
            **({"image_pull_secrets": list(pull_secrets)} if pull_secrets else {}),
            **({"image_pull_policy": pull_policy} if pull_policy else {}),
            **home_storage(settings, persistent_homes),
        },
        **auth_traits,
    }
    services: list[dict[str, Any]] = []
    policies = culling_policies(settings)
    if policies:
        shortest = min(t for policy in policies for t in policy if t)
        _, activity_interval = culling_cadence(shortest)
        traits["JupyterHub"]["last_activity_interval"] = activity_interval
        traits["KubeSpawner"]["environment"] = {ACTIVITY_INTERVAL_ENV: str(activity_interval)}
        # One culler for every server while all profiles share the hub's policy; otherwise one
        # per policy, each seeing only its profiles' servers (cull_by_profile.py).
        if len(policies) == 1 and len(next(iter(policies.values()))) == len(settings.profiles):
            ((timeout, max_age),) = policies
            services.append(culler_service(timeout, max_age, None))
        else:
            services += [culler_service(t, a, slugs) for (t, a), slugs in policies.items()]
        # Per profile, the culler's view needs each user's groups to know their default profile.
        scopes = CULLER_SCOPES + (("read:users:groups",) if "script" in services[0] else ())
        traits["JupyterHub"]["load_roles"] = [
            {
                "name": CULLER_SERVICE,
                "description": "Stop servers idle for longer than their profile's timeout, or older than its max age",
                "scopes": list(scopes),
                "services": [s["name"] for s in services],
            }
        ]
    return {
        "traits": traits,
        "secretEnv": {
            "ConfigurableHTTPProxy": {"auth_token": PROXY_TOKEN_ENV},
            "JupyterHub": {"cookie_secret": COOKIE_SECRET_ENV},
            **auth_secret_env,
        },
        "managedServices": services,
        "profileGroups": profile_groups(settings),
    }
