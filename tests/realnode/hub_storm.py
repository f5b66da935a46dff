"""A class presses Start at once: the storm that test_hub_storm.py and `make bench-hub` run.

The admin makes the users and a token for each through the hub's REST API; every user presses
Start (`POST /hub/api/users/NAME/server`, a small test profile) within a few seconds of the others.
Whoever the hub refuses (429: its concurrent spawn limit or its active server limit, with its
message) presses again once every accepted server is ready or failed, as a class would, until a
round accepts nobody. Meanwhile a thread samples /hub/health through a port-forward of its own.
Then every server that started must answer through the proxy, all are stopped, the users deleted
(their home claims with them: KubeSpawner's delete_pvc), and no pod or claim of theirs may be left.

The limits are the stack's, set around the storm by `storm_limits` (a config change and `pulumi
up`, restored afterwards), so that the real-node stack's own limits stay what the other tests need.
"""

from __future__ import annotations

import copy
import json
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from components.hub_config.document import USER_COMPONENT
from e2e.local_stack import NAMESPACE as CONFIG_NAMESPACE
from e2e.local_stack import LocalStack
from hub_client import NAMESPACE, Client
from real_cluster import RealCluster, hub_context, wait_for
from stacks.jupyterhub import Profile

ADMIN = "admin"  # the dev stack's adminUsers; its password is the stack output below
ADMIN_PASSWORD_OUTPUT = "jupyterhubAdminPassword"
# The smallest real single-user server the cluster has: the platform's CPU notebook image (the only
# one with jupyterhub-singleuser; the nodes pull from no registry), asking for next to nothing, so
# that the limits, not the node's 2 cores, decide who runs.
TINY_PROFILE = {
    "name": "Load test (tiny)",
    "description": "A small server for the hub's load test",
    "cpuGuarantee": "10m",
    "cpuLimit": "1",
    "memoryGuarantee": "128Mi",
    "memoryLimit": "512Mi",
    # Never culled: the test stack culls idle servers after two minutes, which would free room
    # under the active server limit in the middle of the storm.
    "cullIdleSeconds": 0,
}
TINY_SLUG = Profile(name=TINY_PROFILE["name"], image="busybox:1").slug
# The hub's answers to a spawn over its limits (JupyterHub 5.5, BaseHandler.spawn_single_user).
TOO_MANY_SPAWNING = "Too many users trying to log in right now"
TOO_MANY_ACTIVE = "Active user limit exceeded"
ACCEPTED = (201, 202)  # started, or still starting after the hub's slow_spawn_timeout
HEALTH_EVERY = 0.25
HEALTH_TIMEOUT = 5.0
# How long a round waits for its accepted servers: the hub's start timeout is 900 s, but on 2
# shared cores a tiny server starts within a minute or two; a spawn past this fails the storm.
READY_TIMEOUT = 600


@dataclass(frozen=True)
class Limits:
    """The hub's limits during the storm (the stack's `jupyterhub.limits`)."""

    concurrent_spawns: int
    active_servers: int
    # Longer than KubeSpawner's 30 s: a crowd of servers starting together on 2 shared cores may take
    # longer to answer its first request, and a failed spawn would be the machine's, not the hub's.
    http_timeout_seconds: int = 180


def storm_config(jupyterhub: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """The stack's `jupyterhub` config with the tiny profile (the default profile's image) and the
    storm's limits."""
    changed = copy.deepcopy(jupyterhub)
    profiles = changed.get("profiles") or []
    image = next((p["image"] for p in profiles if p.get("default")), profiles[0]["image"] if profiles else None)
    assert image, "the stack's config has no profiles to take the notebook image from"
    changed["profiles"] = [*profiles, {**TINY_PROFILE, "image": image}]
    changed["limits"] = {
        **changed.get("limits", {}),
        "concurrentSpawnLimit": limits.concurrent_spawns,
        "activeServerLimit": limits.active_servers,
        "httpTimeoutSeconds": limits.http_timeout_seconds,
    }
    return changed


@contextmanager
def storm_limits(stack: LocalStack, limits: Limits) -> Iterator[None]:
    """The stack deployed with the tiny profile and `limits` (the hub rolls), then as it was."""
    original = stack.config_file.read_text()
    document = yaml.safe_load(original)
    key = f"{CONFIG_NAMESPACE}:jupyterhub"
    document["config"][key] = storm_config(document["config"][key], limits)
    stack.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        print(f"  the storm's limits deployed in {stack.pulumi('up', '--yes', '--skip-preview', timeout=900).seconds:.0f}s", flush=True)
        yield
    finally:
        stack.config_file.write_text(original)
        print(f"  the stack's own config back in {stack.pulumi('up', '--yes', '--skip-preview', timeout=900).seconds:.0f}s", flush=True)


@dataclass
class Press:
    user: str
    round: int
    at: float  # seconds from the storm's start
    status: int  # 0: no answer
    message: str


@dataclass
class Storm:
    """What happened, for the test's assertions and the benchmark's figures."""

    users: list[str]
    limits: Limits
    presses: list[Press] = field(default_factory=list)
    accepted_at: dict[str, float] = field(default_factory=dict)
    ready_at: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    health: list[tuple[float, int, float]] = field(default_factory=list)  # (at, status or 0, seconds)
    hub_restarts: int = 0
    hub_replaced: bool = False
    silent: list[str] = field(default_factory=list)  # started, yet no answer through the proxy
    left: list[str] = field(default_factory=list)  # pods and claims of the storm's users after it
    seconds: float = 0.0

    def refusals(self) -> Counter[str]:
        return Counter(p.message for p in self.presses if p.status == 429)

    def first_round(self) -> Counter[int]:
        return Counter(p.status for p in self.presses if p.round == 1)

    def unexpected(self) -> list[Press]:
        return [p for p in self.presses if p.status not in (*ACCEPTED, 429)]

    def spawn_seconds(self) -> list[float]:
        """From the press the hub accepted to the server ready, per user (1 s resolution)."""
        return sorted(self.ready_at[u] - self.accepted_at[u] for u in self.ready_at)

    def health_p95(self) -> float:
        return percentile([s for _, _, s in self.health], 95)

    def health_failures(self) -> list[tuple[float, int, float]]:
        return [h for h in self.health if h[1] != 200]

    def summary(self) -> dict[str, Any]:
        spawn = self.spawn_seconds()
        return {
            "users": len(self.users),
            "concurrentSpawnLimit": self.limits.concurrent_spawns,
            "activeServerLimit": self.limits.active_servers,
            "rounds": max((p.round for p in self.presses), default=0),
            "first round answers": dict(sorted(self.first_round().items())),
            "servers ready": len(self.ready_at),
            "spawns failed": len(self.failed),
            "spawn median (s)": round(statistics.median(spawn), 1) if spawn else None,
            "spawn p95 (s)": round(percentile(spawn, 95), 1) if spawn else None,
            "refusals": dict(self.refusals()),
            "health samples": len(self.health),
            "health failures": len(self.health_failures()),
            "health p95 (s)": round(self.health_p95(), 3) if self.health else None,
            "health max (s)": round(max(s for _, _, s in self.health), 3) if self.health else None,
            "hub restarts": self.hub_restarts,
            "hub pod replaced": self.hub_replaced,
            "servers silent through the proxy": self.silent,
            "left after stop": self.left,
            "storm (s)": round(self.seconds, 1),
        }


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile (the value below which pct% of the samples lie)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


class HealthSampler:
    """GET /hub/health every HEALTH_EVERY seconds through a port-forward of its own (so the storm's
    requests do not queue behind it, nor it behind them), each answer's status and latency kept."""

    def __init__(self, real: RealCluster, start: float) -> None:
        self.client = Client(real, hub_context(real))
        self.start = start
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def __enter__(self) -> HealthSampler:
        self.client.connect()
        wait_for(self.client.healthy, 60, "/hub/health through the sampler's port-forward", interval=0.5)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(HEALTH_TIMEOUT + 5)
        self.client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                status = self.client.open("GET", "/hub/health", timeout=HEALTH_TIMEOUT, browser=False)[0]
            except OSError:  # a timeout or a refused connection: the hub did not answer
                status = 0
            took = time.monotonic() - began
            self.samples.append((round(began - self.start, 2), status, took))
            self._stop.wait(max(0.0, HEALTH_EVERY - took))


def admin_token(client: Client, password: str, note: str) -> str:
    """A token for the admin, asked for with the admin's password (no browser session needed)."""
    body = {"note": note, "auth": {"username": ADMIN, "password": password}}
    return client.api("POST", f"/users/{ADMIN}/tokens", "", body, ok=(200, 201))["token"]


def make_users(client: Client, token: str, users: list[str]) -> dict[str, str]:
    """The users, made by the admin, each with a token of its own: name -> token."""
    client.api("POST", "/users", token, {"usernames": users}, ok=(201, 409))
    return {u: client.api("POST", f"/users/{u}/tokens", token, {"note": "storm"}, ok=(200, 201))["token"] for u in users}


def hub_pod(real: RealCluster) -> dict[str, Any]:
    pods = [p for p in real.get("pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=hub")["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, f"not one hub pod: {[p['metadata']['name'] for p in pods]}"
    return pods[0]


def restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod.get("status", {}).get("containerStatuses") or [])


def servers(client: Client, token: str, users: list[str]) -> dict[str, dict[str, Any] | None]:
    """Each user's default server as the hub reports it (None: none, or a spawn that failed)."""
    models = {m["name"]: m for m in client.api("GET", "/users?state=active", token)}
    return {u: (models.get(u) or {}).get("servers", {}).get("") for u in users}


def left_behind(real: RealCluster, users: list[str]) -> list[str]:
    """The storm's users' pods and home claims still in the cluster."""
    names = {f"jupyter-{u}" for u in users} | {f"claim-{u}" for u in users}
    pods = real.get("pods", "-n", NAMESPACE, "-l", f"component={USER_COMPONENT}")["items"]
    claims = real.get("pvc", "-n", NAMESPACE)["items"]
    return sorted(f"{o['kind'].lower()}/{o['metadata']['name']}" for o in [*pods, *claims] if o["metadata"]["name"] in names)


def run_storm(real: RealCluster, client: Client, admin: str, users: list[str], limits: Limits,
              spread: float = 3.0, log: Any = print) -> Storm:
    """The storm against the hub as deployed now (its limits must be `limits`), cleaned up after."""
    tokens = make_users(client, admin, users)
    storm = Storm(users, limits)
    hub_before = hub_pod(real)
    start = time.monotonic()

    def now() -> float:
        return round(time.monotonic() - start, 2)

    def press(user: str, round_: int, delay: float) -> Press:
        time.sleep(delay)
        at = now()
        try:
            status, _, text = client.open("POST", f"/hub/api/users/{user}/server", tokens[user], {"profile": TINY_SLUG},
                                          browser=False, timeout=120)
        except OSError as error:
            return Press(user, round_, at, 0, str(error))
        try:
            message = json.loads(text).get("message", "") if text else ""
        except ValueError:
            message = text[:200]
        return Press(user, round_, at, status, message)

    try:
        with HealthSampler(real, start) as health, ThreadPoolExecutor(len(users)) as pool:
            waiting = list(users)
            round_ = 0
            while waiting:
                round_ += 1
                # The first round presses within `spread` seconds, in no order; later ones at once.
                delays = [random.uniform(0, spread) if round_ == 1 else 0.0 for _ in waiting]
                presses = list(pool.map(press, waiting, [round_] * len(waiting), delays))
                storm.presses += presses
                accepted = [p.user for p in presses if p.status in ACCEPTED]
                for p in presses:
                    if p.status in ACCEPTED:
                        storm.accepted_at[p.user] = p.at
                answers = Counter(f"{p.status} {p.message}".strip() for p in presses)
                log(f"  round {round_} at {now()}s: {len(presses)} pressed Start: {dict(answers)}")
                if not accepted:
                    break
                wait_ready(client, admin, accepted, storm, now)
                waiting = [u for u in waiting if u not in accepted]
            storm.health = list(health.samples)
        storm.seconds = now()
        for user in storm.ready_at:
            if not answers_through_proxy(client, user, tokens[user]):
                storm.silent.append(user)
    finally:
        stop_all(client, admin, users)
        try:  # a claim is deleted once its pod is gone; each takes a moment
            wait_for(lambda: not left_behind(real, users), 120, "the storm's pods and claims gone", interval=2)
        except AssertionError:
            pass  # recorded below, for the test to name
        storm.left = left_behind(real, users)
        hub_after = hub_pod(real)
        storm.hub_restarts = restarts(hub_after) - restarts(hub_before)
        storm.hub_replaced = hub_after["metadata"]["uid"] != hub_before["metadata"]["uid"]
    return storm


def wait_ready(client: Client, admin: str, accepted: list[str], storm: Storm, now: Any) -> None:
    """Polls the hub until each accepted server is ready or its spawn failed (the server gone)."""
    pending = set(accepted)
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        assert time.monotonic() < deadline, f"not ready within {READY_TIMEOUT}s: {sorted(pending)}"
        for user, server in servers(client, admin, sorted(pending)).items():
            if server is None:
                storm.failed[user] = f"the hub dropped the server at {now()}s"
                pending.discard(user)
            elif server.get("ready"):
                storm.ready_at[user] = now()
                pending.discard(user)
        time.sleep(1)


def answers_through_proxy(client: Client, user: str, token: str) -> bool:
    """The user's server answers its REST API through the proxy (the hub answers a missing route
    with a redirect, not a 200 with the server's status)."""

    def answers() -> bool:
        try:
            status, _, text = client.open("GET", f"/user/{user}/api/status", token, follow=False, timeout=10, browser=False)
            return status == 200 and "started" in json.loads(text)
        except (OSError, ValueError):
            return False

    try:
        wait_for(answers, 30, f"{user}'s server through the proxy", interval=1)
    except AssertionError:
        return False
    return True


def stop_all(client: Client, admin: str, users: list[str]) -> None:
    """Every server of `users` stopped and gone, then the users deleted (KubeSpawner deletes their
    home claims with them)."""
    for user in users:
        client.api("DELETE", f"/users/{user}/server", admin, ok=(202, 204, 400, 404))
    wait_for(lambda: not any(servers(client, admin, users).values()), 300, "every storm server stopped", interval=2)
    for user in users:
        client.api("DELETE", f"/users/{user}", admin, ok=(204, 404))
