"""GPU notebooks on the real GPU node, its two simulated GPUs time-sliced into four (issue 25's
tests on the real nodes, and issue 26's queued server).

Against the session's stack (conftest.py), after the training and notebook tests, through the hub's
REST API as test_notebooks_on_real_nodes.py reaches it. Four users start the GPU profile (the CUDA
TensorFlow notebook image) at once, and one user the CPU profile: the four GPU servers run side by
side on the GPU node, each container told which share of which GPU the kubelet gave it, and hold
the four GPUs of the dev stack's Kueue quota (the GPU profile's servers queue in the ClusterQueue
`training`). A fifth GPU server waits in that queue, its pod gated: its spawn progress (the event
stream the spawn page shows) says it is queued, where and why (Kueue's reason), and the spawn
fails with that reason within the GPU profile's own start timeout (profiles[].startTimeoutSeconds,
short in the test stack, realnode_stack.py; the hub-wide timeout stays long for the other tests'
spawns). Stopping servers returns their GPUs to the quota. Then one GPU server and the CPU server
are left idle from the same moment: the culler stops the GPU server at its profile's short timeout
while the CPU server runs on, its GPU goes back to the quota, and both home claims stay Bound.
Every server started here is stopped, and the test users' claims and hub users deleted.

The test stack asks only 250m CPU of a GPU server (realnode_stack.py): four of the dev stack's
(1 core each) would not fit the GPU node's two cores, and the shares are what is tested.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.localcluster.gpuplugin import REPLICA_SEPARATOR, advertised, device_ids
from e2e.local_stack import ROOT
from kueue_state import GPU_FLAVOR, QUEUED, gpu_usage, pod_workloads, positioned
from real_cluster import RealCluster, spki_hash, wait_for
from realnode_stack import CULL_IDLE_SECONDS, GPU_CULL_IDLE_SECONDS, GPU_START_TIMEOUT_SECONDS
import test_notebooks_on_real_nodes
from test_notebooks_on_real_nodes import (
    ADMIN,
    CPU_PROFILE,
    GPU_PROFILE,
    HUB_DIR,
    NAMESPACE,
    NOTEBOOK_CONTAINER,
    START_TIMEOUT,
    Hub,
    in_pod,
    pod_gone,
    pod_name,
    profiles,
)
from vocab.kueue_api import SCHEDULING_GATE

# The hub through a port-forward to proxy-public, as the notebook tests reach it (a fixture of this
# module too, by this name).
hub = test_notebooks_on_real_nodes.hub

GPU_USERS = [f"gpuuser{i}" for i in range(1, 5)]
FIFTH = "gpuuser5"
CPU_USER = "cpuuser1"
# How long the stack's job may still hold its GPU shares when this file starts alone (-k).
JOB_TIMEOUT = 900
# Activity reported this often for the servers that must not be culled (the GPU profile's
# timeout is GPU_CULL_IDLE_SECONDS).
KEEP_ALIVE_SECONDS = 10
# The spawn-pending page of the fifth server, in headless Chromium (docs/jupyterhub.md shows it).
SPAWN_PENDING_DRIVER = HUB_DIR / "spawn_pending.mjs"
SPAWN_PENDING_SCREENSHOT = ROOT / "docs" / "screenshots" / "gpu-fifth-queued.png"


def gpu_node(real: RealCluster) -> tuple[str, str, int]:
    """The GPU node's name, the resource its shares are advertised as, and how many."""
    spec = real.node("gpu").spec
    resource, shares = advertised(spec)
    return spec.name, resource, shares


def shares_in_use(real: RealCluster, node: str, resource: str) -> dict[str, int]:
    """Pod -> the shares it holds on NODE (pods not yet finished)."""
    pods = real.get("pods", "-A", "--field-selector", f"spec.nodeName={node}")["items"]
    held = {}
    for pod in pods:
        if pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        count = sum(int(c.get("resources", {}).get("limits", {}).get(resource, "0")) for c in pod["spec"]["containers"])
        if count:
            held[f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"] = count
    return held


def unfinished_jobs(real: RealCluster) -> list[str]:
    """The TFJobs that have neither succeeded nor failed."""
    def finished(job: dict[str, Any]) -> bool:
        return any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                   for c in job.get("status", {}).get("conditions", []))
    return [f"{j['metadata']['namespace']}/{j['metadata']['name']}" for j in real.get("tfjobs", "-A")["items"]
            if not finished(j)]


def start(hub: Hub, user: str, profile: str) -> None:
    hub.api("POST", f"/users/{user}", ok=(201, 409))
    hub.api("POST", f"/users/{user}/server", body={"profile": profile}, ok=(201, 202))


def stop_all(hub: Hub, users: list[str]) -> None:
    """Stops USERS' servers at once and waits until every pod is gone."""
    for user in users:
        hub.api("DELETE", f"/users/{user}/server", ok=(202, 204, 404))
    wait_for(lambda: all(hub.server(u) is None and pod_gone(hub.real, u) for u in users), 180,
             f"the servers of {', '.join(users)} stopped", interval=2)


@pytest.fixture(scope="module")
def servers(hub: Hub) -> Iterator[dict[str, dict[str, Any]]]:
    """The four GPU servers and the CPU server, started at once and ready: user -> pod. The fifth
    user's home is made on the way."""
    real = hub.real
    node, resource, shares = gpu_node(real)
    assert shares == len(GPU_USERS), f"the dev stack's GPU node advertises {shares} shares of {resource}"
    # The stack's job (test_mnist_on_real_nodes.py) gives its workers' shares back when it ends;
    # until then (this file run alone) its workers may not even have asked for them yet.
    wait_for(lambda: not unfinished_jobs(real) and not shares_in_use(real, node, resource), JOB_TIMEOUT,
             f"every TFJob finished and every share of {resource} on {node} free", interval=5)
    users = [*GPU_USERS, CPU_USER]
    # The fifth user has worked on the CPU profile before, so their home claim is Bound when they
    # ask for a GPU: a new user's first scheduling attempt fails on the claim not yet provisioned
    # ("pod has unbound immediate PersistentVolumeClaims"), and in a run on 2026-12-06 the later
    # reason ("Insufficient nvidia.com/gpu", in the pod's condition) never came as a new event
    # within 90 s, so the spawn page showed only the claim's.
    first = {**{u: GPU_PROFILE for u in GPU_USERS}, CPU_USER: CPU_PROFILE, FIFTH: CPU_PROFILE}
    try:
        for user, profile in first.items():
            start(hub, user, profile)

        def all_ready() -> bool:
            ready = {}
            for user in first:
                server = hub.server(user)
                if server is None:  # a spawn that failed (on a loaded machine, past the GPU profile's timeout)
                    start(hub, user, first[user])
                ready[user] = server is not None and server["ready"]
                if ready[user]:
                    hub.report_activity(user)  # the GPU profile's culler must not take the first ones
            return all(ready.values())

        wait_for(all_ready, START_TIMEOUT, "four GPU servers and two CPU servers ready", interval=3)
        stop_all(hub, [FIFTH])
        yield {u: real.get("pod", "-n", NAMESPACE, pod_name(u)) for u in users}
    finally:
        stop_all(hub, [*users, FIFTH])
        for user in [*users, FIFTH]:
            real.kubectl("delete", "pvc", "-n", NAMESPACE, f"claim-{user}", "--ignore-not-found", "--wait=false", check=False)
            hub.api("DELETE", f"/users/{user}", ok=(204, 404))


def test_four_gpu_notebooks_run_at_once_on_the_gpu_node_each_on_its_own_share(servers: dict[str, dict[str, Any]],
                                                                              hub: Hub) -> None:
    real = hub.real
    node, resource, shares = gpu_node(real)
    profile = profiles()[GPU_PROFILE]
    seen = {}
    for user in GPU_USERS:
        pod = servers[user]
        assert pod["spec"]["nodeName"] == node, f"{user}'s GPU server runs on {pod['spec']['nodeName']}, not {node}"
        (container,) = [c for c in pod["spec"]["containers"] if c["name"] == NOTEBOOK_CONTAINER]
        assert container["image"] == profile.image
        assert container["resources"]["limits"].get(resource) == "1", container["resources"]
        assert pod["status"]["phase"] == "Running", pod["status"]
        # What the kubelet's allocation put into the container: the GPU and the share it runs on.
        seen[user] = in_pod(real, pod_name(user), "sh", "-c",
                            'echo "$MLPLATFORM_SIMULATED_GPUS $MLPLATFORM_SIMULATED_GPU_REPLICAS"').split()
    assert servers[CPU_USER]["spec"]["nodeName"] != node, "the CPU server landed on the GPU node"
    sharing = real.node("gpu").spec.gpu_sharing
    assert sorted(share for _, share in seen.values()) == device_ids(real.node("gpu").spec.gpus, sharing.replicas), seen
    for user, (gpu, share) in seen.items():
        assert gpu.startswith("simulated-gpu-") and share.split(REPLICA_SEPARATOR)[0] == gpu, (user, gpu, share)
    assert shares_in_use(real, node, resource) == {f"{NAMESPACE}/{pod_name(u)}": 1 for u in GPU_USERS}
    assert shares == len(seen)


def progress_events(hub: Hub, user: str, events: list[dict[str, Any]]) -> None:
    """Reads USER's spawn progress (the server-sent events the spawn page shows) into EVENTS until
    the spawn is ready or has failed."""
    request = urllib.request.Request(f"{hub.url}/hub/api/users/{user}/server/progress",
                                     headers={"Authorization": f"token {hub.token(ADMIN)}"})
    try:
        # The hub writes a keepalive every 8 s between events.
        with urllib.request.urlopen(request, context=hub.context, timeout=60) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue  # blank separators and keepalives
                event = json.loads(line.removeprefix("data:"))
                events.append(event)
                if event.get("failed") or event.get("ready"):
                    return
    except OSError as error:  # shown by the test's assertions, which look at the last event
        events.append({"reader_error": repr(error)})


def watch_spawn(real: RealCluster, hub: Hub, user: str, screenshot: Path,
                expected: str) -> tuple[threading.Thread, list[dict[str, Any]], subprocess.Popen]:
    """USER's spawn, once started, watched two ways until it ends: its progress events read in a
    thread into the list returned, and the admin's headless browser on its spawn page waiting for
    EXPECTED there (tests/hub/spawn_pending.mjs, which saves SCREENSHOT)."""
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=progress_events, args=(hub, user, events), daemon=True)
    reader.start()
    page = subprocess.Popen(
        ["node", str(SPAWN_PENDING_DRIVER), hub.url, str(screenshot), ADMIN, hub.admin_password, user, expected],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HUB_DIR,
        env={**real.env, "TRUSTED_SPKI": spki_hash(hub.certificate), "WAIT_MS": str(GPU_START_TIMEOUT_SECONDS * 1000)})
    return reader, events, page


def test_a_fifth_gpu_server_waits_in_kueues_queue_and_fails_with_its_reason_within_its_start_timeout(
        servers: dict[str, dict[str, Any]], hub: Hub) -> None:
    real = hub.real
    _, resource, _ = gpu_node(real)
    assert gpu_usage(real) == len(GPU_USERS), "the four GPU servers do not hold the queue's four GPUs"
    started = time.monotonic()
    if not (HUB_DIR / "node_modules" / "playwright-core").is_dir() or shutil.which("node") is None:
        pytest.fail("the browser harness is not installed: run tests/hub/setup.sh first (make test does)")
    SPAWN_PENDING_SCREENSHOT.unlink(missing_ok=True)
    start(hub, FIFTH, GPU_PROFILE)
    # Alone in the queue: first in its LocalQueue and in the ClusterQueue.
    first_in_line = positioned(1, 1)
    reader, events, page = watch_spawn(real, hub, FIFTH, SPAWN_PENDING_SCREENSHOT, f"{first_in_line}: couldn't assign flavors")
    waiting = None
    try:
        while reader.is_alive() and time.monotonic() - started < GPU_START_TIMEOUT_SECONDS + 120:
            for user in servers:
                hub.report_activity(user)  # four shares stay taken
            pod = real.kubectl("get", "pod", "-n", NAMESPACE, pod_name(FIFTH), "-o", "json", check=False)
            if pod.returncode == 0:
                waiting = json.loads(pod.stdout)
                gates = [g["name"] for g in waiting["spec"].get("schedulingGates", [])]
                assert SCHEDULING_GATE in gates, f"the fifth GPU server's pod is not gated while it waits: {gates}"
                assert not waiting["spec"].get("nodeName"), "the fifth GPU server's pod was placed while queued"
            assert gpu_usage(real) == len(GPU_USERS), "the queued server holds GPU quota"
            reader.join(KEEP_ALIVE_SECONDS)
        failed_after = time.monotonic() - started
        shown, said = page.communicate(timeout=120)
    finally:
        if page.poll() is None:
            page.kill()
            page.communicate()
    assert not reader.is_alive(), f"no end to the fifth server's spawn progress after {failed_after:.0f}s: {events}"
    assert waiting is not None, "the fifth GPU server's pod was never seen"
    messages = [e.get("message", "") for e in events]
    queued = [m for m in messages if m.startswith(QUEUED)]
    assert queued, f"the spawn progress never said queued: {messages}"
    # Kueue's reason: the quota of the GPU pool's flavor is taken.
    assert resource in queued[-1] and GPU_FLAVOR in queued[-1], f"Kueue's reason not shown: {queued[-1]}"
    final = events[-1]
    assert final.get("failed"), f"the fifth spawn did not fail: {final}"
    assert final["message"].startswith(f"Spawn failed: {QUEUED}"), final
    assert resource in final["message"] and f"its start timeout, {GPU_START_TIMEOUT_SECONDS}s" in final["message"], final
    # At the profile's timeout, long before the hub-wide one: the queued spawner gives up a little
    # before KubeSpawner's own wait could end it (at a random point within 10 % either side of the
    # timeout: JupyterHub's exponential_backoff).
    assert GPU_START_TIMEOUT_SECONDS * 0.9 - 15 <= failed_after < GPU_START_TIMEOUT_SECONDS * 1.1 + 60, (
        f"failed after {failed_after:.0f}s")
    # Nothing of it is left, and the four servers run on.
    wait_for(lambda: hub.server(FIFTH) is None and pod_gone(real, FIFTH), 60, "the failed server's pod removed")
    wait_for(lambda: not pod_workloads(real, waiting), 60, "the failed server's Workload removed")
    for user in servers:
        assert hub.server(user)["ready"], f"{user}'s server is no longer ready"
    # What the admin saw on the fifth server's spawn page meanwhile.
    assert page.returncode == 0, f"the spawn page's driver failed ({page.returncode}):\n{said[-3000:]}"
    shown = json.loads(shown.strip().splitlines()[-1])
    assert "error" not in shown, shown
    assert shown["url"].endswith(f"/hub/spawn-pending/{FIFTH}"), shown
    assert any(line.find(first_in_line) >= 0 and resource in line for line in shown["log"]), \
        f"the spawn page's log: {shown['log']}"
    assert SPAWN_PENDING_SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_idle_gpu_server_is_culled_at_its_profiles_timeout_while_a_cpu_server_of_the_same_age_runs(
        servers: dict[str, dict[str, Any]], hub: Hub) -> None:
    """One GPU server and the CPU server idle from the same moment: the GPU profile's culler (a
    minute in the test stack) stops the GPU server; the hub's culler (two minutes) has not yet
    stopped the CPU server. Both homes stay Bound."""
    real = hub.real
    gpu_user = GPU_USERS[0]
    stop_all(hub, GPU_USERS[1:])
    # Stopped servers give their GPUs back to the queue's quota.
    wait_for(lambda: gpu_usage(real) == 1, 60, "the stopped servers' GPUs back in the quota")
    for user in (gpu_user, CPU_USER):
        hub.report_activity(user)
    idle_since = time.monotonic()
    wait_for(lambda: hub.server(gpu_user) is None and pod_gone(real, gpu_user), GPU_CULL_IDLE_SECONDS * 2 + 60,
             f"the GPU profile's culler to stop {gpu_user}'s idle server", interval=2)
    idle = time.monotonic() - idle_since
    # ...and so does the culled one.
    wait_for(lambda: gpu_usage(real) == 0, 60, "the culled server's GPU back in the quota")
    assert idle >= GPU_CULL_IDLE_SECONDS - 5, f"culled after {idle:.0f}s, before the profile's {GPU_CULL_IDLE_SECONDS}s"
    assert idle < CULL_IDLE_SECONDS, f"culled after {idle:.0f}s: the CPU server's timeout would have stopped it as well"
    cpu = hub.server(CPU_USER)
    assert cpu and cpu["ready"], f"the CPU server of the same age was stopped too: {cpu}"
    pod = real.get("pod", "-n", NAMESPACE, pod_name(CPU_USER))
    assert pod["status"]["phase"] == "Running" and not pod["metadata"].get("deletionTimestamp"), pod["status"]
    log = real.kubectl("logs", "-n", NAMESPACE, "deploy/hub").stdout
    assert f"Culling server {gpu_user}" in log, f"no culler entry for {gpu_user} in the hub's log:\n{log[-3000:]}"
    assert f"Culling server {CPU_USER}" not in log
    for user in (gpu_user, CPU_USER):
        claim = real.get("pvc", "-n", NAMESPACE, f"claim-{user}")
        assert claim["status"]["phase"] == "Bound", f"claim-{user}: {claim['status']}"
