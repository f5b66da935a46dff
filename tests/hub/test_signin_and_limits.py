"""Sign-in that resists abuse and a hub that protects itself, against the real hub and proxy.

The dev stack's hub with `jupyterhub.auth` and `jupyterhub.limits` set as a team would, run by
local_hub.py (the ConfigMap's files, the stand-in spawner, https through the proxy). Headless
Chromium (signin_limits.mjs) does what people do: claim the admin's name, sign in as the admin
with the stack's generated password, sign up with a short and a common password, guess a user's
password until the account is locked, and press Start while another server is starting and
once it runs. A second hub shows spawns failing at the start and HTTP timeouts and the
consecutive failure limit: the hub exits, for Kubernetes to start a fresh one.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

import pytest

from components.hub_config import document as hub_config
from local_hub import local_hub
from program import example_stack

ADMIN, USER = "admin", "ana"
USER_PASSWORD = "a decent passphrase for ana"
WRONG_LOGINS = 3
LOCKOUT_SECONDS = 5
MINIMUM_PASSWORD_LENGTH = 10
SLOW_START_SECONDS = 12  # the admin's server: long enough for the user to press Start meanwhile


def guarded_stack(**limits: Any) -> dict[str, Any]:
    config = copy.deepcopy(example_stack("dev"))
    config["jupyterhub"]["auth"].update(
        allowedFailedLogins=WRONG_LOGINS, lockoutSeconds=LOCKOUT_SECONDS, minimumPasswordLength=MINIMUM_PASSWORD_LENGTH,
        checkCommonPassword=True,
    )
    config["jupyterhub"]["limits"] = limits
    # Every profile under the hub's timeouts here (a profile's own start timeout may not exceed the hub's).
    for profile in config["jupyterhub"]["profiles"]:
        profile.pop("startTimeoutSeconds", None)
    return config


@pytest.fixture(scope="module")
def seen(tmp_path_factory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("signin")
    config = guarded_stack(concurrentSpawnLimit=1, activeServerLimit=1)
    slow = {"STANDIN_SLOW_USERS": ADMIN, "STANDIN_SLOW_SECONDS": str(SLOW_START_SECONDS)}
    with local_hub(config, work, slow) as hub:
        admin_password = hub.rendered.environment[hub_config.FIRST_ADMIN_PASSWORD_ENV]
        return hub.drive(
            "signin_limits.mjs", ADMIN, admin_password, USER, USER_PASSWORD, str(WRONG_LOGINS), str(LOCKOUT_SECONDS),
            timeout=150,
        )


def test_the_admins_name_cannot_be_claimed_by_signing_up(seen):
    assert "already in use" in seen["adminSignup"], seen["adminSignup"]


def test_the_admin_signs_in_with_the_generated_password(seen):
    assert "/hub/spawn" in seen["adminLogin"]["url"], seen["adminLogin"]


def test_a_short_password_is_refused_at_sign_up(seen):
    assert f"at least {MINIMUM_PASSWORD_LENGTH} characters" in seen["shortPassword"], seen["shortPassword"]


def test_a_common_password_is_refused_at_sign_up(seen):
    # Ten characters: long enough, refused only as one of the common passwords.
    assert "Something went wrong" in seen["commonPassword"] and "not too common" in seen["commonPassword"], seen["commonPassword"]
    # Neither refused attempt took the name.
    assert "sent to the admin" in seen["userSignup"], seen["userSignup"]


def test_a_sign_up_waits_for_the_admins_approval(seen):
    assert f"User {USER} has not been authorized" in seen["beforeAuthorization"]["message"], seen["beforeAuthorization"]


def test_wrong_passwords_lock_the_account_and_the_right_one_is_refused_while_locked(seen):
    assert [attempt["message"] for attempt in seen["wrong"]] == ["Invalid username or password."] * WRONG_LOGINS
    locked = seen["rightWhileLocked"]
    assert "/hub/login" in locked["url"] and locked["message"] == "Invalid username or password.", locked
    assert seen["rightWhileLockedAfterSeconds"] < LOCKOUT_SECONDS, "the attempt came after the lockout ended"


def test_the_right_password_signs_in_once_the_lockout_has_passed(seen):
    assert "/hub/spawn" in seen["rightAfterLockout"]["url"], seen["rightAfterLockout"]


def test_a_spawn_over_the_concurrent_limit_gets_429_and_the_hubs_message(seen):
    answer = seen["whileAnotherStarts"]
    assert answer["status"] == 429, answer
    assert "Too many users trying to log in right now. Try again in" in answer["text"], answer


def test_a_spawn_over_the_active_server_limit_gets_429_and_the_hubs_message(seen):
    assert f"Stand-in notebook server for {ADMIN}" in seen["adminServer"], "the admin's server should run by now"
    answer = seen["whileAnotherRuns"]
    assert answer["status"] == 429, answer
    assert "Active user limit exceeded. Try again in a few minutes." in answer["text"], answer


def test_spawns_fail_at_their_timeouts_and_consecutive_failures_stop_the_hub(tmp_path):
    # Three spawns fail in a row: one whose pod fails, one that outlasts startTimeoutSeconds and one
    # whose server never answers within httpTimeoutSeconds. Then, as JupyterHub does it, the hub
    # exits, and Kubernetes (the Deployment) starts a fresh one.
    config = guarded_stack(consecutiveFailureLimit=3, startTimeoutSeconds=3, httpTimeoutSeconds=3)
    # No hub-managed service (a culler) to outlive the hub's exit here: JupyterHub starts each in a
    # session of its own, so one left by a hub that exited by itself is out of the harness's reach.
    config["jupyterhub"]["cullIdleSeconds"] = 0
    for profile in config["jupyterhub"]["profiles"]:
        profile.pop("cullIdleSeconds", None)
        profile.pop("maxAgeSeconds", None)
    token = secrets.token_hex(16)
    env = {
        "TEST_ADMIN_TOKEN": token,
        "STANDIN_FAILING_USERS": ADMIN,
        "STANDIN_SLOW_USERS": "slow", "STANDIN_SLOW_SECONDS": "30",
        "STANDIN_SILENT_USERS": "silent",
    }
    with local_hub(config, tmp_path, env) as hub:
        answers, seconds = [], []
        for user in (ADMIN, "slow", "silent"):
            assert hub.api("POST", f"/users/{user}", token)[0] in (201, 409)
            started = time.monotonic()
            answers.append(hub.api("POST", f"/users/{user}/server", token))
            seconds.append(time.monotonic() - started)
        deadline = time.monotonic() + 20
        while hub.hub.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        exit_code = hub.hub.poll()
        log = hub.hub_log
    assert [status for status, _ in answers] == [500] * 3, answers
    assert "slow's server failed to start in 3 seconds, giving up." in log, log[-3000:]
    assert "silent's server never showed up at http://127.0.0.1:" in log and "after 3 seconds. Giving up." in log, log[-3000:]
    assert max(seconds[1:]) < 10, f"the timed-out spawns took {seconds} s, not about their 3 s timeouts"
    assert exit_code == 1, f"the hub still runs (or exited {exit_code}) after 3 failed spawns:\n{log[-3000:]}"
    assert "Aborting due to 3 consecutive spawn failures" in log, log[-3000:]
