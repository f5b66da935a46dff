"""Notebooks and training under one GPU quota with Kueue, on the real nodes.

The session's stack (the dev stack) is updated with its `kueue` section turned on (`enabled:
true`; the dev stack ships it off) and put back as it was afterwards, as test_hub_storm.py does
with its limits: Kueue's manager, CRDs and webhooks, the ClusterQueue `training` (two of the GPU
node's four simulated, time-sliced GPU shares), the LocalQueue `training` in the job's namespace
and the LocalQueue `notebooks` in the hub's (`notebookQueue: training`: the GPU profile's servers
queue there), the stack's TFJob templates labelled as one pod group, the hub running the queued
spawner.

Then, through the hub's REST API and in headless Chromium: a GPU notebook is admitted and holds
one GPU of the queue's two; a TFJob of two GPU workers, queued as one pod group, waits whole (both
its pods gated: no node, no container, no GPU; its Workload holding no quota and saying which
resource is short); a second GPU notebook asking for two GPUs is queued, its spawn page saying so,
in which ClusterQueue, at which position (Kueue's visibility API: first in the LocalQueue
`notebooks`, second in the ClusterQueue behind the job, which was queued first at the same
priority) and Kueue's reason (a screenshot for the docs), and, still queued at its
profile's start timeout (the test stack's 90 s), its spawn fails with that reason and nothing of it
is left (pod, Workload). Stopping the first notebook returns its GPU: the job is admitted, both
workers run on the GPU node, and the job Succeeds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.local_stack import ROOT, LocalStack, condition
from real_cluster import POOL_LABEL, RealCluster, busybox_image_name, wait_for
from realnode_stack import GPU_START_TIMEOUT_SECONDS
import test_notebooks_on_real_nodes
from test_notebooks_on_real_nodes import GPU_PROFILE, HUB_DIR, Hub, pod_gone, pod_name
from test_shared_gpu_notebooks import watch_spawn
from vocab.kueue_api import (
    JOB_UID_LABEL,
    NOTEBOOK_LOCAL_QUEUE,
    POD_GROUP_LABEL,
    POD_GROUP_TOTAL_COUNT,
    QUEUE_LABEL,
    SCHEDULING_GATE,
    TRAINING_LOCAL_QUEUE,
    pod_group,
)
from vocab.names import GPU_RESOURCE
from vocab.tfjob_api import API_VERSION as TFJOB_API_VERSION
from vocab.tfjob_api import CONTAINER_NAME

NAMESPACE = "mnist"
STACK_JOB = "distributed-mnist"
CLUSTER_QUEUE = "training"
GPU_FLAVOR = "pool-gpu"
JOB = "queued-gpu-job"
HUB_NAMESPACE = "jupyterhub"
# The GPU notebook that holds one GPU, and the one that asks for two and waits.
HOLDER, WAITER = "kqholder", "kqwaiter"
# The hub through a port-forward to proxy-public, as the notebook tests reach it (a fixture of this
# module too, by this name).
hub = test_notebooks_on_real_nodes.hub
QUEUED_SCREENSHOT = ROOT / "docs" / "screenshots" / "kueue-queued.png"
QUEUED = f"Queued in ClusterQueue {CLUSTER_QUEUE} (LocalQueue {NOTEBOOK_LOCAL_QUEUE})"
# Kueue orders a ClusterQueue's pending workloads by priority, then by when they were queued (its
# default BestEffortFIFO; the visibility API counts from 0, the page from 1): the waiting notebook
# is the only one in its LocalQueue, and second in the ClusterQueue, behind the job queued earlier.
POSITIONED = f"{QUEUED}, position 1 in the LocalQueue and 2 in the ClusterQueue"
# A job whose one replica fails: its pod group ends with it (test_a_failed_job_gives_its_quota_back_and_keeps_no_pod).
FAILING_JOB = "queued-failing-job"
VISIBILITY_API = "/apis/visibility.kueue.x-k8s.io/v1beta2"
# The stack's own job, on 2 shared cores: as test_mnist_on_real_nodes.py allows it.
STACK_JOB_TIMEOUT_S = 1500
# How long the queued job is watched waiting: long enough for a scheduler that ignored the gate to
# have placed a pod (a pod with its image imported starts in seconds here).
WAITING_S = 30

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def gpu_pod_spec(script: str, container_name: str) -> dict[str, Any]:
    """A pod spec for the GPU node, asking for one GPU share (and little else), restricted."""
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "nodeSelector": {POOL_LABEL: "gpu"},
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
        "containers": [{
            "name": container_name,
            "image": busybox_image_name(),
            "imagePullPolicy": "Never",
            "command": ["/bin/sh", "-c", script],
            "securityContext": RESTRICTED,
            "resources": {
                "requests": {"cpu": "50m", "memory": "32Mi"},
                "limits": {"memory": "64Mi", GPU_RESOURCE: "1"},
            },
        }],
    }


def gpu_usage(real: RealCluster) -> int:
    """The GPU shares the ClusterQueue `training` holds (its reservation in the GPU pool's flavor)."""
    status = real.get("clusterqueue", CLUSTER_QUEUE).get("status", {})
    for flavor in status.get("flavorsReservation", []):
        if flavor["name"] == GPU_FLAVOR:
            for resource in flavor["resources"]:
                if resource["name"] == GPU_RESOURCE:
                    return int(resource["total"])
    return 0


def workloads_of(real: RealCluster, group: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    items = real.get("workloads", "-n", namespace)["items"]
    return [w for w in items if w["metadata"]["name"] == group or w["metadata"].get("labels", {}).get(POD_GROUP_LABEL) == group
            or any(r.get("name") == group for r in w["metadata"].get("ownerReferences", []))]


def workload_condition(workload: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in workload.get("status", {}).get("conditions", []) if c["type"] == kind), None)


def pod_workloads(real: RealCluster, pod: dict[str, Any]) -> list[dict[str, Any]]:
    """The Workloads Kueue made for a plain pod (labelled with its uid)."""
    uid = pod["metadata"]["uid"]
    return real.get("workloads", "-n", pod["metadata"]["namespace"], "-l", f"{JOB_UID_LABEL}={uid}")["items"]


def job_pods(real: RealCluster, job: str) -> list[dict[str, Any]]:
    return real.get("pods", "-n", NAMESPACE, "-l", f"training.kubeflow.org/job-name={job}")["items"]


@pytest.fixture(scope="module")
def kueue_on(stack: LocalStack, real: RealCluster) -> Iterator[None]:
    """The session's stack with `kueue.enabled: true` (once its own job has finished, so that the
    job is not changed under it), then as it was, whatever happened here."""
    wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, STACK_JOB), "Succeeded"), STACK_JOB_TIMEOUT_S,
             f"the stack's TFJob {STACK_JOB} to succeed")
    original = stack.config_file.read_text()
    document = yaml.safe_load(original)
    document["config"]["mlplatform:kueue"]["enabled"] = True
    stack.config_file.write_text(yaml.safe_dump(document, sort_keys=False))
    try:
        print(f"  Kueue deployed in {stack.pulumi('up', '--yes', '--skip-preview', timeout=900).seconds:.0f}s", flush=True)
        yield
    finally:
        # The stack goes back to its own config whatever happened here: the modules after this one
        # assume Kueue off (in CI a failure here once left it on, and they all failed behind it).
        try:
            for job in (JOB, FAILING_JOB):
                delete_queued_job(real, job)
        finally:
            stack.config_file.write_text(original)
            print(f"  the stack's own config back in "
                  f"{stack.pulumi('up', '--yes', '--skip-preview', timeout=900).seconds:.0f}s", flush=True)


def delete_queued_job(real: RealCluster, job: str) -> None:
    """JOB and its pods gone. A pod group that was never admitted keeps Kueue's finalizer on its
    deleted pods until its Workload is deleted too (Kueue's documented way out, kueue #5130; seen
    here: the pods of a TFJob deleted while queued stayed Terminating for an hour)."""
    real.kubectl("delete", "tfjob", "-n", NAMESPACE, job, "--ignore-not-found", "--timeout=120s", check=False,
                 timeout=180)
    # A pod group's Workload is named after the group.
    real.kubectl("delete", "workload", "-n", NAMESPACE, job, "--ignore-not-found", "--timeout=120s", check=False,
                 timeout=180)
    wait_for(lambda: not job_pods(real, job), 120, f"{job}'s pods gone")


def busy(hub: Hub) -> bool:
    """HOLDER's server in use, as far as the culler knows (True, to be used inside a wait)."""
    hub.report_activity(HOLDER)
    return True


def start_server(hub: Hub, user: str, gpus: int) -> None:
    hub.api("POST", f"/users/{user}", ok=(201, 409))
    hub.api("POST", f"/users/{user}/server", body={"profile": GPU_PROFILE, "gpus": str(gpus)}, ok=(201, 202))


def forget(hub: Hub, user: str) -> None:
    """USER's server stopped, its pod and home claim gone, the hub user deleted."""
    hub.api("DELETE", f"/users/{user}/server", ok=(202, 204, 400, 404))
    wait_for(lambda: pod_gone(hub.real, user), 180, f"{user}'s pod gone", interval=2)
    hub.real.kubectl("delete", "pvc", "-n", HUB_NAMESPACE, f"claim-{user}", "--ignore-not-found", "--wait=false",
                     check=False)
    wait_for(lambda: hub.server(user) is None, 120, f"{user}'s server stopped", interval=2)
    hub.api("DELETE", f"/users/{user}", ok=(204, 404))


def test_notebooks_and_a_tfjob_share_one_gpu_quota(real: RealCluster, kueue_on: None, hub: Hub) -> None:
    manager = real.get("deployment", "-n", "kueue-system", "kueue-controller-manager")
    assert manager["status"].get("readyReplicas") == 1, f"the Kueue manager is not ready: {manager['status']}"
    # Its visibility API, served by the manager behind the API server (the front proxy's identity
    # trusted through the cluster's own CA): registered and answering.
    wait_for(lambda: condition(real.get("apiservice", "v1beta2.visibility.kueue.x-k8s.io"), "Available"), 120,
             "Kueue's visibility API to be available")
    # The stack's job is declared as one pod group in the queue.
    for kind, spec in real.get("tfjob", "-n", NAMESPACE, STACK_JOB)["spec"]["tfReplicaSpecs"].items():
        labels = spec["template"]["metadata"]["labels"]
        assert (labels.get(QUEUE_LABEL), labels.get(POD_GROUP_LABEL)) == (TRAINING_LOCAL_QUEUE, STACK_JOB), kind
    wait_for(lambda: real.kubectl("get", "clusterqueue", CLUSTER_QUEUE, check=False).returncode == 0, 60,
             f"ClusterQueue {CLUSTER_QUEUE}")
    assert real.get("localqueue", "-n", HUB_NAMESPACE, NOTEBOOK_LOCAL_QUEUE)["spec"]["clusterQueue"] == CLUSTER_QUEUE
    assert gpu_usage(real) == 0, f"ClusterQueue {CLUSTER_QUEUE} holds GPUs before anything was queued"
    if not (HUB_DIR / "node_modules" / "playwright-core").is_dir() or shutil.which("node") is None:
        pytest.fail("the browser harness is not installed: run tests/hub/setup.sh first (make test does)")

    workers = {
        "replicas": 2,
        "restartPolicy": "Never",
        "template": {
            "metadata": {
                "labels": {QUEUE_LABEL: TRAINING_LOCAL_QUEUE, POD_GROUP_LABEL: JOB},
                "annotations": {POD_GROUP_TOTAL_COUNT: "2"},
            },
            "spec": gpu_pod_spec("sleep 5", CONTAINER_NAME),
        },
    }
    job = {
        "apiVersion": TFJOB_API_VERSION,
        "kind": "TFJob",
        "metadata": {"name": JOB, "namespace": NAMESPACE},
        "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "tfReplicaSpecs": {"Worker": workers}},
    }
    page = None
    try:
        # 1. A GPU notebook, admitted at once, holds one of the queue's two GPUs.
        start_server(hub, HOLDER, 1)
        wait_for(lambda: (hub.server(HOLDER) or {}).get("ready"), 300, f"{HOLDER}'s GPU server ready", interval=2)
        holder = real.get("pod", "-n", HUB_NAMESPACE, pod_name(HOLDER))
        assert holder["metadata"]["labels"].get(QUEUE_LABEL) == NOTEBOOK_LOCAL_QUEUE, holder["metadata"]["labels"]
        assert holder["spec"]["nodeName"] == real.node("gpu").spec.name
        (admitted,) = pod_workloads(real, holder)
        assert (workload_condition(admitted, "Admitted") or {}).get("status") == "True", admitted.get("status")
        assert gpu_usage(real) == 1

        # 2. A TFJob of two GPU workers waits whole: neither replica runs or holds a GPU.
        real.apply(job)
        wait_for(lambda: len(job_pods(real, JOB)) == 2, 120, f"the operator to create {JOB}'s two worker pods")

        def job_waits_whole() -> None:
            for pod in job_pods(real, JOB):
                name = pod["metadata"]["name"]
                gates = [g["name"] for g in pod["spec"].get("schedulingGates", [])]
                assert SCHEDULING_GATE in gates, f"{name} is not gated while its group waits: {gates}"
                assert not pod["spec"].get("nodeName"), f"{name} was placed on {pod['spec']['nodeName']} while waiting"
                assert not pod["status"].get("containerStatuses"), f"{name} started a container while waiting"

        deadline = time.monotonic() + WAITING_S
        while time.monotonic() < deadline:
            # In use, as far as the culler knows: the test stack culls an idle GPU server after a
            # minute, which would return its GPU (seen: the job then admitted mid-test).
            hub.report_activity(HOLDER)
            job_waits_whole()
            assert gpu_usage(real) == 1, "the waiting job holds GPU quota"
            time.sleep(2)
        (workload,) = workloads_of(real, JOB)
        reserved = workload_condition(workload, "QuotaReserved")
        assert reserved is not None and reserved["status"] == "False", workload.get("status")
        assert GPU_RESOURCE in reserved["message"], f"the Workload does not say what is short: {reserved['message']}"

        # 3. A second GPU notebook asking for two GPUs is queued: its spawn page says so and why,
        # and at its start timeout the spawn fails with that reason.
        QUEUED_SCREENSHOT.unlink(missing_ok=True)
        started = time.monotonic()
        start_server(hub, WAITER, 2)
        reader, events, page = watch_spawn(real, hub, WAITER, QUEUED_SCREENSHOT, f"{POSITIONED}: couldn't assign flavors")
        waiter_pod = None
        # The ClusterQueue's pending workloads as Kueue's visibility API lists them to the admin:
        # (namespace, Workload, position in the ClusterQueue, in its LocalQueue).
        listed: list[tuple[str, str, int, int]] = []
        while reader.is_alive() and time.monotonic() - started < GPU_START_TIMEOUT_SECONDS + 120:
            got = real.kubectl("get", "pod", "-n", HUB_NAMESPACE, pod_name(WAITER), "-o", "json", check=False)
            if got.returncode == 0:
                waiter_pod = json.loads(got.stdout)
                assert SCHEDULING_GATE in [g["name"] for g in waiter_pod["spec"].get("schedulingGates", [])], (
                    f"{WAITER}'s pod is not gated while it waits: {waiter_pod['spec'].get('schedulingGates')}")
                assert not waiter_pod["spec"].get("nodeName"), f"{WAITER}'s pod was placed while queued"
                if len(listed) < 2:
                    pending = real.kubectl("get", "--raw", f"{VISIBILITY_API}/clusterqueues/{CLUSTER_QUEUE}/pendingworkloads",
                                           check=False)
                    if pending.returncode == 0:
                        listed = [(w["metadata"]["namespace"], w["metadata"]["name"], w.get("positionInClusterQueue", 0),
                                   w.get("positionInLocalQueue", 0)) for w in json.loads(pending.stdout)["items"]]
                        if len(listed) == 2:
                            (waiting,) = pod_workloads(real, waiter_pod)
                            assert listed == [(NAMESPACE, JOB, 0, 0), (HUB_NAMESPACE, waiting["metadata"]["name"], 1, 0)], listed
            hub.report_activity(HOLDER)
            job_waits_whole()
            assert gpu_usage(real) == 1, "a queued workload holds GPU quota"
            reader.join(3)
        failed_after = time.monotonic() - started
        shown, said = page.communicate(timeout=120)
        assert not reader.is_alive(), f"no end to {WAITER}'s spawn progress after {failed_after:.0f}s: {events}"
        assert waiter_pod is not None, f"{WAITER}'s pod was never seen"
        messages = [e.get("message", "") for e in events]
        queued = [m for m in messages if m.startswith(QUEUED)]
        assert queued, f"the spawn progress never said queued: {messages}"
        assert GPU_RESOURCE in queued[-1] and GPU_FLAVOR in queued[-1], f"Kueue's reason not shown: {queued[-1]}"
        # Its position, from Kueue's visibility API through the hub's own read of its LocalQueue.
        assert len(listed) == 2, f"the visibility API never listed the job and the notebook as pending: {listed}"
        assert queued[-1].startswith(f"{POSITIONED}: "), f"the position is not shown: {queued}"
        final = events[-1]
        assert final.get("failed"), f"{WAITER}'s spawn did not fail: {final}"
        assert final["message"].startswith(f"Spawn failed: {POSITIONED}: "), final
        assert GPU_RESOURCE in final["message"] and f"its start timeout, {GPU_START_TIMEOUT_SECONDS}s" in final["message"], final
        # Given up before KubeSpawner's own wait could end it (at 0.9 of the timeout at the earliest).
        assert GPU_START_TIMEOUT_SECONDS * 0.9 - 15 <= failed_after < GPU_START_TIMEOUT_SECONDS + 60, f"failed after {failed_after:.0f}s"
        # What the admin saw on the spawn page meanwhile.
        assert page.returncode == 0, f"the spawn page's driver failed ({page.returncode}):\n{said[-3000:]}"
        shown = json.loads(shown.strip().splitlines()[-1])
        assert "error" not in shown, shown
        assert any(line.find(POSITIONED) >= 0 and GPU_RESOURCE in line for line in shown["log"]), shown["log"]
        assert QUEUED_SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # The failed spawn leaves nothing: no pod, no Workload, no quota. (The holder stays in use
        # meanwhile: culled, its GPU would go back too.)
        wait_for(lambda: busy(hub) and hub.server(WAITER) is None and pod_gone(real, WAITER), 120,
                 f"{WAITER}'s pod removed")
        wait_for(lambda: busy(hub) and not pod_workloads(real, waiter_pod), 60, f"{WAITER}'s Workload removed")
        assert gpu_usage(real) == 1

        # 4. Stopping the first notebook returns its GPU: the job is admitted whole and succeeds.
        hub.api("DELETE", f"/users/{HOLDER}/server", ok=(202, 204))
        wait_for(lambda: hub.server(HOLDER) is None and pod_gone(real, HOLDER), 180, f"{HOLDER}'s server stopped")
        wait_for(lambda: not pod_workloads(real, holder), 60, f"{HOLDER}'s Workload removed with its pod")
        wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, JOB), "Succeeded"), 300,
                 f"{JOB} admitted once the notebook's GPU is back, and succeeded")
        nodes = {p["spec"].get("nodeName") for p in job_pods(real, JOB)}
        assert nodes == {real.node("gpu").spec.name}, f"{JOB}'s workers ran on {nodes}"
    finally:
        if page is not None and page.poll() is None:
            page.kill()
            page.communicate()
        # (kueue_on deletes the job and waits for its pods before Kueue goes.)
        real.kubectl("delete", "tfjob", "-n", NAMESPACE, JOB, "--ignore-not-found", "--wait=false", check=False)
        for user in (HOLDER, WAITER):
            forget(hub, user)


def test_a_failed_job_gives_its_quota_back_and_keeps_no_pod(real: RealCluster, kueue_on: None) -> None:
    """A queued TFJob whose worker fails (restartPolicy Never): the operator fails the job and stops
    its chief (cleanPodPolicy Running). Its pod group is then over (`retriable-in-group: false`, as
    the stack's job carries it): the Workload Finished, Kueue's finalizer off every pod, the GPUs
    back in the quota. Without that annotation Kueue waited for the failed pods' replacements,
    holding both (seen on the real nodes, 2026-12-07)."""
    assert gpu_usage(real) == 0, "the quota is not free before the failing job"
    labels, annotations = pod_group(TRAINING_LOCAL_QUEUE, FAILING_JOB, 2)
    # The chief ends at its SIGTERM, as the trainer does.
    scripts = {"Chief": "trap 'exit 143' TERM; sleep 3600 & wait", "Worker": "sleep 15; exit 1"}
    replicas = {
        kind: {"replicas": 1, "restartPolicy": "Never",
               "template": {"metadata": {"labels": labels, "annotations": annotations},
                            "spec": gpu_pod_spec(script, CONTAINER_NAME)}}
        for kind, script in scripts.items()
    }
    real.apply({"apiVersion": TFJOB_API_VERSION, "kind": "TFJob", "metadata": {"name": FAILING_JOB, "namespace": NAMESPACE},
                "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, "tfReplicaSpecs": replicas}})
    try:
        wait_for(lambda: gpu_usage(real) == 2, 120, f"{FAILING_JOB} admitted whole")
        wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, FAILING_JOB), "Failed"), 180,
                 f"{FAILING_JOB} failed by its worker")

        def over() -> dict[str, Any] | None:
            (workload,) = workloads_of(real, FAILING_JOB)
            finished = workload_condition(workload, "Finished")
            return workload if finished and finished["status"] == "True" else None

        workload = wait_for(over, 120, f"the Workload of {FAILING_JOB} Finished")
        wait_for(lambda: gpu_usage(real) == 0, 60, f"{FAILING_JOB}'s GPUs back in the quota")
        wait_for(lambda: not [p for p in job_pods(real, FAILING_JOB) if "kueue.x-k8s.io/managed" in p["metadata"].get("finalizers", [])],
                 60, f"Kueue's finalizer off the pods of {FAILING_JOB}")
        assert "Pods succeeded: 0/2" in workload_condition(workload, "Finished").get("message", ""), workload.get("status")
    finally:
        delete_queued_job(real, FAILING_JOB)
