"""The tutorial's steps in a real browser, against the dev stack's hub run on this machine.

The hub and the proxy run as local_hub.py starts them (the dev stack's ConfigMap files, https with
the stack's own self-signed certificate). Headless Chromium then tries to sign up under the admin's
name (refused: the account exists from the hub's start), logs in as the admin with the password the
stack generated, opens KubeSpawner's spawn form, keeps a screenshot of it in
test-artifacts/spawn-form.png, chooses the GPU profile and starts the server. The proxy and the hub
are stopped before the tests look at what was seen, and must leave no process behind.

Needs chromium and the npm packages: run tests/hub/setup.sh once (CI does, before `make test`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from components.hub_config import document as hub_config
from local_hub import ARTIFACTS, STOP_GRACE, Stopped, local_hub
from program import example_stack
from stacks import parse

USERNAME = "admin"
GPU_PROFILE = "tensorflow-gpu"


class BrowserRun(NamedTuple):
    seen: dict[str, Any]  # what the driver saw (spawn_form.mjs)
    pod: dict[str, Any] | None  # the pod KubeSpawner built
    screenshot: Path
    hub_log: str
    stopped: dict[str, Stopped]  # "proxy", "hub"


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "spawn-form.png"
    screenshot.unlink(missing_ok=True)
    with local_hub(example_stack("dev"), work) as hub:
        password = hub.rendered.environment[hub_config.FIRST_ADMIN_PASSWORD_ENV]
        seen = hub.drive("spawn_form.mjs", str(screenshot), str(work / "chromium-profile"), USERNAME, password, GPU_PROFILE)
        report = work / "pods" / f"{USERNAME}.json"
        pod = json.loads(report.read_text()) if report.exists() else None
    # Stopped (the hub first, while the proxy it deletes the user's route from still runs) before
    # any test looks: the tests need only what was seen and logged.
    yield BrowserRun(seen, pod, screenshot, (work / "hub.log").read_text(), hub.stopped)


def test_the_spawn_form_offers_each_profile_with_its_image_and_limits(browser_run):
    profiles = {p["title"]: p for p in browser_run.seen["profiles"]}
    # As the hub gets them: the dev stack's images are the local builds (images.local).
    configured = [p.model_dump(by_alias=True) for p in parse(example_stack("dev")).jupyterhub.profiles]
    assert list(profiles) == [p["name"] for p in configured], "the form lists the profiles in config order"
    for profile in configured:
        shown = profiles[profile["name"]]["description"]
        for fact in (profile["image"], f"CPU {profile['cpuGuarantee']} guaranteed, limit {profile['cpuLimit']}",
                     f"memory {profile['memoryGuarantee']} guaranteed, limit {profile['memoryLimit']}"):
            assert fact in shown, f"profile {profile['name']!r} shows {shown!r}, without {fact!r}"
    assert "1 or 2 NVIDIA GPUs" in profiles["TensorFlow (GPU)"]["description"]
    assert profiles["TensorFlow (CPU)"]["checked"], "the default profile is preselected"


def test_the_admins_name_cannot_be_claimed_by_signing_up(browser_run):
    # The account exists from the hub's start; NativeAuthenticator alone would have made whoever
    # signed up first under this name the admin.
    signup = browser_run.seen["signup"]
    assert "already in use" in signup, signup


def test_the_admin_signs_in_with_the_generated_password(browser_run):
    assert "/hub/spawn" in browser_run.seen["afterLogin"], browser_run.seen["afterLogin"]


def test_the_spawn_form_screenshot_is_kept(browser_run):
    screenshot = browser_run.screenshot
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{screenshot} is not a PNG"


def test_starting_the_gpu_profile_builds_a_gpu_pod_and_opens_the_server(browser_run):
    seen, pod = browser_run.seen, browser_run.pod
    assert pod is not None, "the spawner never built a pod"
    container = pod["spec"]["containers"][0]
    assert container["image"] == parse(example_stack("dev")).jupyterhub.profiles[1].image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}
    assert seen["serverUrl"].startswith("https://localhost:") and f"/user/{USERNAME}/" in seen["serverUrl"]
    assert f"Stand-in notebook server for admin, image {container['image']}" in seen["serverPage"]


def test_each_idle_culler_runs_and_its_role_lets_it_list_users(browser_run):
    hub_log = browser_run.hub_log
    # Each culler checks once at start (the dev stack's GPU profile has rules of its own, so one
    # per policy, through its per-profile view); a 403 here would mean its role lacks a scope.
    for culler in ("jupyterhub-idle-culler-idle-3600s", "jupyterhub-idle-culler-idle-1200s-age-28800s"):
        calls = [line for line in hub_log.splitlines() if f"({culler}@" in line]
        assert any(" 200 GET /hub/api/users" in line for line in calls), calls or hub_log[-3000:]


def test_the_hub_and_proxy_stop_with_everything_they_started(browser_run):
    # The hub stops its managed services (the idle culler) and the user's server itself on SIGTERM.
    # It used to be killed at a 10 s timeout while it still waited for a culler that ignored SIGINT,
    # and the culler and the stand-in server ran on, parented to init.
    assert set(browser_run.stopped) == {"proxy", "hub"}
    for name, stopped in browser_run.stopped.items():
        left = "\n".join(f"  {p.pid}: {p.command}" for p in stopped.left_behind)
        assert stopped.exited_by_itself, f"the {name} did not exit within {STOP_GRACE} s of SIGTERM and was killed"
        assert not stopped.left_behind, f"the {name} exited leaving these running (ended since):\n{left}"
