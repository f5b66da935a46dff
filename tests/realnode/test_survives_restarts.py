"""The hub and the proxy restart under a running user, and nobody notices (issue 24, items 2 and 3).

Against the session's stack (conftest.py), after the notebook exercise (this file sorts after
test_notebooks_on_real_nodes.py). The admin signs in with the password the stack generated. A user with a running server, API tokens and a signed-in browser session
(the hub's cookie, from its login form) live through: the hub pod deleted; a `pulumi up` that
rolls the hub (a hub setting changed: `cullIdleSeconds` back to its default, which is also what
the proxy test needs); the proxy pod deleted, whose routes must be back within the hub's route
check of 60 s. Each time /hub/health answers again, every token and the session are still valid,
and the user's server is the same pod, answering through the proxy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from components.hub_config.document import ROUTE_CHECK_SECONDS
from e2e.local_stack import LocalStack
from real_cluster import RealCluster, hub_context, wait_for
from hub_client import NAMESPACE, Client, component_pod, server_answers, wait_for_new_hub
from realnode_stack import CULL_IDLE_SECONDS
from stacks.jupyterhub import JupyterHubSettings

ADMIN, USER = "admin", "carol"  # the dev stack's adminUsers is [admin]; carol is made by the admin
CPU_PROFILE = "tensorflow-cpu"
DEFAULT_CULL_IDLE_SECONDS = JupyterHubSettings.model_fields["cull_idle_seconds"].default
START_TIMEOUT = 600
# How long a new proxy pod may take to be scheduled, start and answer on 2 shared cores.
PROXY_START = 90
# Where each measured figure goes (docs/benchmarks.md reads them from the test's output).
MEASURED: dict[str, float] = {}


@dataclass
class Seeded:
    """What the test users hold: tokens, and the server's pod."""

    admin_token: str
    user_token: str
    user_pod_uid: str


def pod(real: RealCluster, name: str) -> dict[str, Any]:
    return real.get("pod", "-n", NAMESPACE, name)


@pytest.fixture(scope="module")
def client(stack: LocalStack, real: RealCluster) -> Iterator[Client]:
    hub = Client(real, hub_context(real))
    hub.connect()
    try:
        wait_for(hub.healthy, 120, "the hub's /hub/health through proxy-public", interval=1)
        yield hub
    finally:
        hub.close()


@pytest.fixture(scope="module")
def seeded(client: Client, stack: LocalStack) -> Iterator[Seeded]:
    """The admin signed in (a browser session) with a token; carol with a token of her own, made by
    the admin, and a running server."""
    password = stack.pulumi("stack", "output", "jupyterhubAdminPassword", "--show-secrets").stdout.strip()
    status, _, text = client.open("POST", "/hub/login", form={"username": ADMIN, "password": password,
                                                              "_xsrf": client.xsrf("/hub/login")}, follow=False)
    assert status == 302, f"the admin's sign-in: HTTP {status}: {text[:300]}"
    admin_token = client.api("POST", f"/users/{ADMIN}/tokens", "", {"note": "restarts", "auth": {"username": ADMIN, "password": password}},
                             ok=(200, 201))["token"]
    client.api("POST", f"/users/{USER}", admin_token, ok=(201, 409))
    user_token = client.api("POST", f"/users/{USER}/tokens", admin_token, {"note": "restarts"}, ok=(200, 201))["token"]

    def ready() -> bool:
        server = client.api("GET", f"/users/{USER}", admin_token)["servers"].get("")
        if server is None:
            client.api("POST", f"/users/{USER}/server", admin_token, {"profile": CPU_PROFILE}, ok=(201, 202))
            return False
        return server["ready"]

    wait_for(ready, START_TIMEOUT, f"{USER}'s server ready", interval=2)
    try:
        yield Seeded(admin_token, user_token, pod(client.real, f"jupyter-{USER}")["metadata"]["uid"])
    finally:
        client.api("DELETE", f"/users/{USER}/server", admin_token, ok=(202, 204, 404))


def assert_nobody_noticed(client: Client, seeded: Seeded, what: str) -> None:
    status, where, page = client.open("GET", "/hub/home")
    assert (status, where) == (200, "/hub/home") and ADMIN in page, \
        f"after {what}, the admin's session is gone: {status} at {where}{client.proxy_errors(status)}"
    assert client.api("GET", "/user", seeded.admin_token)["name"] == ADMIN, f"after {what}"
    assert client.api("GET", "/user", seeded.user_token)["name"] == USER, f"after {what}"
    server = client.api("GET", f"/users/{USER}", seeded.admin_token)["servers"].get("")
    assert server and server["ready"], f"after {what}, the hub no longer knows {USER}'s server: {server}"
    assert pod(client.real, f"jupyter-{USER}")["metadata"]["uid"] == seeded.user_pod_uid, f"{USER}'s server is a new pod after {what}"
    wait_for(lambda: server_answers(client, USER, seeded.user_token), 30, f"{USER}'s server through the proxy after {what}", interval=1)
    hub = component_pod(client.real, "hub")
    restarts = [c["restartCount"] for c in (hub or {}).get("status", {}).get("containerStatuses", [])]
    assert restarts == [0], f"after {what}, the hub's container restarted: {restarts}"


def test_hub_pod_deleted(client: Client, seeded: Seeded) -> None:
    old = component_pod(client.real, "hub")
    assert old, "not one hub pod"
    started = time.monotonic()
    client.real.kubectl("delete", "pod", "-n", NAMESPACE, old["metadata"]["name"], "--wait=false")
    wait_for_new_hub(client, old, 300)
    MEASURED["hub back after its pod was deleted (s)"] = round(time.monotonic() - started, 1)
    assert_nobody_noticed(client, seeded, "the hub pod's deletion")


def culling(stack: LocalStack) -> int:
    return int(stack.pulumi("config", "get", "--path", "jupyterhub.cullIdleSeconds").stdout.strip())


def set_culling(stack: LocalStack, seconds: int) -> None:
    stack.set_config("jupyterhub.cullIdleSeconds", str(seconds))
    stack.pulumi("up", "--yes", "--skip-preview", timeout=900)


@pytest.fixture(scope="module")
def culling_restored(stack: LocalStack) -> Iterator[None]:
    """The test stack's own short culling timeout, back for the tests after this module."""
    yield
    if culling(stack) != CULL_IDLE_SECONDS:
        set_culling(stack, CULL_IDLE_SECONDS)


def test_pulumi_up_that_rolls_the_hub(client: Client, seeded: Seeded, stack: LocalStack, culling_restored: None) -> None:
    """A hub setting changed (the culling timeout, to its default): the config checksum in the
    hub's pod template rolls its pod."""
    old = component_pod(client.real, "hub")
    assert old, "not one hub pod"
    assert culling(stack) != DEFAULT_CULL_IDLE_SECONDS, "no hub setting to change: the stack culls at the default already"
    set_culling(stack, DEFAULT_CULL_IDLE_SECONDS)
    wait_for_new_hub(client, old, 300)
    assert_nobody_noticed(client, seeded, "a `pulumi up` that rolled the hub")


def test_proxy_pod_deleted_routes_back_within_a_minute(client: Client, seeded: Seeded, stack: LocalStack,
                                                       culling_restored: None) -> None:
    """With the default culling settings, a new proxy starts with no routes, and the hub's route
    check adds the user's within ROUTE_CHECK_SECONDS (with JupyterHub's default, 300 s)."""
    if culling(stack) != DEFAULT_CULL_IDLE_SECONDS:
        set_culling(stack, DEFAULT_CULL_IDLE_SECONDS)
        wait_for(client.healthy, 300, "/hub/health after the update", interval=1)
    old = component_pod(client.real, "proxy")
    assert old, "not one proxy pod"
    client.real.kubectl("delete", "pod", "-n", NAMESPACE, old["metadata"]["name"], "--wait=false")

    def new_proxy_ready() -> bool:
        new = component_pod(client.real, "proxy")
        statuses = (new or {}).get("status", {}).get("containerStatuses") or []
        return bool(new) and new["metadata"]["uid"] != old["metadata"]["uid"] and bool(statuses) and all(c.get("ready") for c in statuses)

    wait_for(new_proxy_ready, PROXY_START, "a new proxy pod ready")
    ready_at = time.monotonic()
    client.connect()
    wait_for(client.healthy, ROUTE_CHECK_SECONDS + 15, "/hub/health through the new proxy", interval=0.5)
    # The user's route is missing until the hub's next check.
    wait_for(lambda: server_answers(client, USER, seeded.user_token), ROUTE_CHECK_SECONDS + 15,
             f"{USER}'s route back in the new proxy", interval=1)
    MEASURED["route back after the new proxy was ready (s)"] = round(time.monotonic() - ready_at, 1)
    assert_nobody_noticed(client, seeded, "the proxy pod's deletion")
    print(f"measured: {json.dumps(MEASURED)}")
