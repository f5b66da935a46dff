"""GPU choices, profiles by group and culling per profile, in the real JupyterHub and proxy.

The hub runs as in test_browser.py (the ConfigMap's files, KubeSpawner up to the pod, a local
process standing in for it), with a stack of its own: GPU pools of two types (T4 with two GPUs a
node, A100 with four), a CPU profile for everyone, a GPU profile for the group gpu-users that offers
1 or 2 GPUs of either type and is culled after a few idle seconds, and a research profile for the
group research that is stopped at a short max age. alice is in gpu-users, carol in both groups,
bob in none. Headless Chromium signs each of them in and reads their spawn form; alice starts the
GPU profile with 2 A100 GPUs (screenshot in test-artifacts/profile-choices.png). The REST API is
then asked, with each user's own token, for what their form does not offer; last, servers of the
three profiles started together are culled by their own profiles' rules.

Needs chromium and the npm packages: run tests/hub/setup.sh once (CI does, before `make test`).
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from program import ROOT, dev_stack_with_upstream_images
from local_hub import HERE, local_hub

DRIVER = HERE / "profile_choices.mjs"
SCREENSHOT = ROOT / "test-artifacts" / "profile-choices.png"
GPU_IDLE_SECONDS = 8  # the GPU profile's cullIdleSeconds
RESEARCH_MAX_AGE = 8  # the research profile's maxAgeSeconds
IMAGE = "quay.io/jupyter/tensorflow-notebook:2025-12-01"
GPU_IMAGE = "quay.io/jupyter/tensorflow-notebook:cuda-2025-12-01"


def stack() -> dict[str, Any]:
    config = dev_stack_with_upstream_images()  # the profiles' images as configured, not the local builds
    config["cluster"]["nodePools"] = [
        {"name": "cpu", "count": 1},
        {"name": "t4", "count": 1, "gpusPerNode": 2, "gpuType": "T4", "taints": ["sku=gpu:NoSchedule"]},
        {"name": "a100", "count": 1, "gpusPerNode": 4, "gpuType": "A100", "taints": ["nvidia.com/gpu=present:NoSchedule"]},
    ]
    config["mnist"]["gpus"] = {}
    # The dev stack's queue is of its own pools; the choices here are the spawner's, not Kueue's.
    config["kueue"] = {"enabled": False}
    config["jupyterhub"].update(
        auth={"type": "dummy"},
        cullIdleSeconds=3600,
        groups={"gpu-users": ["alice", "carol"], "research": ["carol"]},
        profiles=[
            {"name": "CPU", "image": IMAGE, "cpuGuarantee": "100m", "default": True},
            {"name": "GPU", "image": GPU_IMAGE, "cpuGuarantee": "100m", "gpus": 1, "gpuChoices": [1, 2],
             "gpuTypes": ["T4", "A100"], "groups": ["gpu-users"], "cullIdleSeconds": GPU_IDLE_SECONDS},
            {"name": "Research", "image": IMAGE, "cpuGuarantee": "100m", "groups": ["research"],
             "maxAgeSeconds": RESEARCH_MAX_AGE},
        ],
    )
    return config


@dataclass
class Hub:
    api: str  # the hub's REST API, through the proxy
    context: ssl.SSLContext
    admin_token: str
    pods: Path  # the stand-in spawner's pod reports
    log: Path
    seen: dict[str, Any]  # what the browser saw

    def call(self, method: str, path: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"{self.api}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {token or self.admin_token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                text = response.read().decode()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, text

    def token(self, user: str) -> str:
        status, answer = self.call("POST", f"/users/{user}/tokens", body={"note": "test", "expires_in": 600})
        assert status == 201, (status, answer)
        return answer["token"]

    def server(self, user: str) -> dict[str, Any] | None:
        status, model = self.call("GET", f"/users/{user}")
        assert status == 200, (status, model)
        return model["servers"].get("")

    def stopped(self, user: str) -> None:
        """`user`'s server stopped (alice's from the browser may still run)."""
        if self.server(user) is not None:
            self.call("DELETE", f"/users/{user}/server")
        self.wait_until(f"{user}'s server stopped", lambda: self.server(user) is None)

    def wait_until(self, what: str, done, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"not within {timeout} s: {what}\nhub log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    work = tmp_path_factory.mktemp("profiles")
    admin_token = secrets.token_hex(32)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    with local_hub(stack(), work, {"TEST_ADMIN_TOKEN": admin_token}) as running:
        seen = running.drive(DRIVER.name, str(SCREENSHOT), "gpu", "2", "A100", "bob", "carol", "alice",
                             timeout=90)
        yield Hub(f"{running.base_url}/hub/api", running.trusted, admin_token, work / "pods", work / "hub.log", seen)


def slugs(hub: Hub, user: str) -> list[str]:
    return [p["slug"] for p in hub.seen["profiles"][user]]


# --- the form -----------------------------------------------------------------------------------


def test_a_user_sees_the_profiles_of_each_of_their_groups_and_those_for_everyone(hub):
    assert slugs(hub, "bob") == ["cpu"], "bob is in no group"
    assert slugs(hub, "alice") == ["cpu", "gpu"], "alice is in gpu-users"
    assert slugs(hub, "carol") == ["cpu", "gpu", "research"], "carol is in gpu-users and research"


def test_the_form_offers_the_gpu_counts_and_types(hub):
    assert hub.seen["gpuChoices"] == ["1", "2"]
    assert hub.seen["gpuTypes"] == ["T4", "A100"]
    (gpu,) = [p for p in hub.seen["profiles"]["alice"] if p["slug"] == "gpu"]
    assert "1 or 2 NVIDIA T4 or A100 GPUs" in gpu["description"]
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{SCREENSHOT} is not a PNG"


def test_the_chosen_count_and_type_land_in_the_pod(hub):
    assert "/user/alice/" in hub.seen["serverUrl"]
    pod = json.loads((hub.pods / "alice.json").read_text())
    container = pod["spec"]["containers"][0]
    assert container["image"] == GPU_IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "a100"}
    assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["spec"]["tolerations"]


# --- the REST API -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "options", "words"),
    [
        ("bob", {"profile": "gpu"}, "profile 'gpu' is not offered to you; your profiles: 'cpu'"),
        ("bob", {"profile": "research"}, "profile 'research' is not offered to you"),
        ("alice", {"profile": "research"}, "profile 'research' is not offered to you; your profiles: 'cpu', 'gpu'"),
        ("carol", {"profile": "gpu", "gpus": "4"}, "gpus '4' is not offered by profile 'gpu'; its choices: '1', '2'"),
        ("carol", {"profile": "gpu", "gpus": 2}, "gpus 2 is not offered by profile 'gpu'"),
        ("carol", {"profile": "gpu", "gpu-type": "H100"}, "gpu-type 'H100' is not offered by profile 'gpu'; its choices: 'T4', 'A100'"),
        ("carol", {"profile": "gpu", "gpus--unlisted-choice": "8"}, "'gpus--unlisted-choice' is not an option of profile 'gpu'"),
        ("carol", {"gpus": "1"}, "'gpus' is not an option of profile 'cpu'"),
    ],
)
def test_the_api_refuses_what_the_users_form_does_not_offer(hub, user, options, words):
    hub.stopped(user)
    status, answer = hub.call("POST", f"/users/{user}/server", hub.token(user), options)
    assert status == 400, (status, answer)
    assert words in answer["message"], answer
    assert hub.server(user) is None, f"{user}'s server runs after a refused request"


def test_the_api_starts_a_choice_the_form_offers(hub):
    status, answer = hub.call("POST", "/users/carol/server", hub.token("carol"), {"profile": "gpu", "gpus": "2", "gpu-type": "T4"})
    assert status in (201, 202), (status, answer)
    hub.wait_until("carol's server is ready", lambda: (hub.server("carol") or {}).get("ready"))
    pod = json.loads((hub.pods / "carol.json").read_text())
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["nodeSelector"] == {"mlplatform.dev/pool": "t4"}
    status, answer = hub.call("DELETE", "/users/carol/server")
    assert status in (202, 204), (status, answer)
    hub.wait_until("carol's server stopped", lambda: hub.server("carol") is None)


# --- culling per profile ------------------------------------------------------------------------


def test_each_profile_is_culled_by_its_own_rules(hub):
    for user in ("alice", "bob", "carol"):
        hub.stopped(user)
    started = time.monotonic()
    for user, options in (("bob", {"profile": "cpu"}), ("alice", {"profile": "gpu"}), ("carol", {"profile": "research"})):
        status, answer = hub.call("POST", f"/users/{user}/server", hub.token(user), options)
        assert status in (201, 202), (user, status, answer)
    for user in ("bob", "alice", "carol"):
        hub.wait_until(f"{user}'s server is ready", lambda user=user: (hub.server(user) or {}).get("ready"))
    # The GPU server goes at its idle timeout, the research one at its max age (its idle timeout is
    # the hub's hour); the culler looks every half timeout.
    hub.wait_until("alice's idle GPU server is culled", lambda: hub.server("alice") is None, timeout=GPU_IDLE_SECONDS * 4)
    hub.wait_until("carol's research server is stopped at its max age", lambda: hub.server("carol") is None,
                   timeout=RESEARCH_MAX_AGE * 4)
    bob = hub.server("bob")
    assert bob is not None and bob["ready"], "bob's CPU server, as old and as idle, must keep running"
    assert time.monotonic() - started > max(GPU_IDLE_SECONDS, RESEARCH_MAX_AGE)
    log = hub.log.read_text()
    assert "Culling server alice (inactive for" in log, log[-3000:]
    assert "Culling server carol (age:" in log, log[-3000:]
    assert "Culling server bob" not in log
    # The cullers' stops went through their views and were answered (a 204 once failed there).
    views = [line for line in log.splitlines() if " /api/users" in line and " web:" in line]  # the views' access log
    assert any(" 204 DELETE /api/users/alice/server" in line for line in views), views
    assert not [line for line in views if " 500 " in line] and "HTTP 500" not in log, log[-3000:]
