"""Seven users press Start at once against low limits (issue 27, item 6; hub_storm.py).

Against the session's stack (conftest.py): the stack is updated with a tiny test profile and
limits of 2 concurrent spawns and 3 active servers (beyond any that other users run; the hub
rolls), and restored afterwards, so the stack's own limits stay what the other tests need.
Behaviour, not timings: what fits runs and answers through the proxy, the rest are refused with
the hub's message, the hub neither restarts nor stops answering /hub/health, and nothing of the
users is left after all stop. `make bench-hub` runs the same storm with 20 users and measures
it (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from e2e.local_stack import LocalStack
from hub_client import Client
from hub_storm import ADMIN_PASSWORD_OUTPUT, TOO_MANY_ACTIVE, TOO_MANY_SPAWNING, Limits, Storm, admin_token, run_storm, \
    storm_limits
from real_cluster import RealCluster, hub_context, wait_for

USERS = [f"storm-{i}" for i in range(1, 8)]
CONCURRENT_SPAWNS = 2
# Servers the active server limit leaves the storm: the limit is set to the servers other users
# run already (another test may have left some) plus these.
ROOM = 3


@pytest.fixture(scope="module")
def storm(stack: LocalStack, real: RealCluster) -> Iterator[Storm]:
    password = stack.pulumi("stack", "output", ADMIN_PASSWORD_OUTPUT, "--show-secrets").stdout.strip()
    client = Client(real, hub_context(real))
    client.connect()
    try:
        wait_for(client.healthy, 300, "/hub/health", interval=1)
        token = admin_token(client, password, "storm")
        others = [m["name"] for m in client.api("GET", "/users?state=active", token) if m["name"] not in USERS]
        limits = Limits(concurrent_spawns=CONCURRENT_SPAWNS, active_servers=len(others) + ROOM)
        with storm_limits(stack, limits):
            # The token outlives the hub's roll (the hub's database keeps it).
            wait_for(client.healthy, 300, "/hub/health with the storm's limits", interval=1)
            result = run_storm(real, client, token, USERS, limits, spread=1.0)
            print(f"  storm: {json.dumps(result.summary())}", flush=True)
            yield result
    finally:
        client.close()


def test_what_fits_runs_and_answers_through_the_proxy(storm: Storm) -> None:
    result = storm
    assert not result.failed, f"spawns failed: {result.failed}"
    assert len(result.ready_at) == ROOM, f"{len(result.ready_at)} servers ran, the active server limit leaves room for {ROOM}: {result.summary()}"
    assert not result.silent, f"started, but no answer through the proxy: {result.silent}"


def test_the_rest_are_refused_with_the_hubs_message(storm: Storm) -> None:
    result = storm
    assert not result.unexpected(), f"answers other than started or 429: {result.unexpected()}"
    first = result.first_round()
    assert 1 <= sum(first[s] for s in (201, 202)) <= CONCURRENT_SPAWNS, f"first round: {first}"
    refusals = result.refusals()
    assert any(m.startswith(TOO_MANY_SPAWNING) for m in refusals), f"no refusal by the concurrent spawn limit: {refusals}"
    assert any(m.startswith(TOO_MANY_ACTIVE) for m in refusals), f"no refusal by the active server limit: {refusals}"
    assert all(m.startswith((TOO_MANY_SPAWNING, TOO_MANY_ACTIVE)) for m in refusals), f"a 429 without the hub's message: {refusals}"
    # Whoever never ran was told so by the active server limit at the last press.
    last = {p.user: p for p in result.presses}
    for user in set(USERS) - set(result.ready_at):
        assert last[user].status == 429 and last[user].message.startswith(TOO_MANY_ACTIVE), f"{user}: {last[user]}"


def test_the_hub_holds(storm: Storm) -> None:
    result = storm
    assert result.hub_restarts == 0 and not result.hub_replaced, f"the hub restarted: {result.summary()}"
    assert result.health, "no /hub/health sample taken"
    assert not result.health_failures(), f"/hub/health unanswered or not 200 during the storm: {result.health_failures()}"


def test_nothing_left_after_all_stop(storm: Storm) -> None:
    result = storm
    assert not result.left, f"left after every server stopped and the users were deleted: {result.left}"
