"""Notebooks and training under one GPU quota with Kueue, on the real nodes.

The session's stack (the dev stack) runs Kueue: its manager, CRDs and webhooks, the ClusterQueue
`training` (the GPU node's four simulated, time-sliced GPU shares), the LocalQueue `training` in
the job's namespace and the LocalQueue `notebooks` in the hub's (`notebookQueue: training`: the GPU
profile's servers queue there), the stack's TFJob labelled with its queue (Kueue's TFJob
integration), the hub running the queued spawner. The first test lowers the queue's GPU quota to
two with a `pulumi up` and puts it back afterwards, as test_hub_storm.py does with its limits.

Then, through the hub's REST API and in headless Chromium: a GPU notebook is admitted and holds
one GPU of the queue's two; a TFJob of two GPU workers waits whole (suspended by Kueue: no pod of
it exists, so none holds a node or a GPU; its Workload holding no quota and saying which resource
is short); a second GPU notebook asking for two GPUs is queued, its spawn page saying so, in which
ClusterQueue, at which position (Kueue's visibility API: first in the LocalQueue `notebooks`,
second in the ClusterQueue behind the job, which was queued first at the same priority) and
Kueue's reason (a screenshot for the docs), and, still queued at its profile's start timeout (the
test stack's 90 s), its spawn fails with that reason and nothing of it is left (pod, Workload).
Stopping the first notebook returns its GPU: the job is admitted, both workers run on the GPU node,
and the job Succeeds.

A queued job that fails gives its quota back. Last, the stack with `kueue.enabled: false` behaves
as it did before Kueue: nothing of Kueue is left in the cluster, the stack's TFJob (replaced: Kueue
will not requeue a job it let run) carries no queue label and runs again, GPU servers start at
once, their pods neither gated nor labelled, and one that finds every GPU share taken is the
scheduler's again (Pending, "Insufficient nvidia.com/gpu"); then Kueue is turned on again.

And a `pulumi up` that gives the running stack job, which Kueue admitted to the CPU pool with one
worker, its two GPU workers again makes a new job, which Kueue admits to the GPU pool and which
Succeeds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from e2e.local_stack import ROOT, LocalStack, condition
from kueue_state import (
    CLUSTER_QUEUE,
    GPU_FLAVOR,
    QUEUED,
    gpu_usage,
    job_workloads,
    pod_workloads,
    positioned,
    workload_condition,
)
from real_cluster import POOL_LABEL, RealCluster, busybox_image_name, wait_for
from realnode_stack import GPU_START_TIMEOUT_SECONDS
import test_notebooks_on_real_nodes
from test_notebooks_on_real_nodes import GPU_PROFILE, HUB_DIR, Hub, pod_gone, pod_name
from test_shared_gpu_notebooks import watch_spawn
from vocab.kueue_api import (
    NAMESPACE as KUEUE_NAMESPACE,
    NOTEBOOK_LOCAL_QUEUE,
    QUEUE_LABEL,
    SCHEDULING_GATE,
    TRAINING_LOCAL_QUEUE,
)
from vocab.names import GPU_RESOURCE
from vocab.tfjob_api import API_VERSION as TFJOB_API_VERSION
from vocab.tfjob_api import CONTAINER_NAME, REPLICA_TYPE_LABEL

NAMESPACE = "mnist"
STACK_JOB = "distributed-mnist"
JOB = "queued-gpu-job"
HUB_NAMESPACE = "jupyterhub"
# The GPU notebook that holds one GPU, and the one that asks for two and waits.
HOLDER, WAITER = "kqholder", "kqwaiter"
# With Kueue off: the GPU server that finds the four shares taken.
THIRD = "kqthird"
# The hub through a port-forward to proxy-public, as the notebook tests reach it (a fixture of this
# module too, by this name).
hub = test_notebooks_on_real_nodes.hub
QUEUED_SCREENSHOT = ROOT / "docs" / "screenshots" / "kueue-queued.png"
# Kueue orders a ClusterQueue's pending workloads by priority, then by when they were queued (its
# default BestEffortFIFO): the waiting notebook is the only one in its LocalQueue, and second in the
# ClusterQueue, behind the job queued earlier.
POSITIONED = positioned(1, 2)
# The quota the first test gives the ClusterQueue's GPU flavor, of the dev stack's four shares.
GPU_QUOTA = 2
# A job whose worker fails (test_a_failed_job_gives_its_quota_back).
FAILING_JOB = "queued-failing-job"
VISIBILITY_API = "/apis/visibility.kueue.x-k8s.io/v1beta2"
# The stack's own job, on 2 shared cores: as test_mnist_on_real_nodes.py allows it.
STACK_JOB_TIMEOUT_S = 1500
# The stack's job moved to the CPU pool with this many steps more than its checkpoint's, so that it
# still trains when the next `pulumi up` gives it GPU workers again.
MORE_STEPS = 300
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


def job_pods(real: RealCluster, job: str) -> list[dict[str, Any]]:
    return real.get("pods", "-n", NAMESPACE, "-l", f"training.kubeflow.org/job-name={job}")["items"]


def with_config(stack: LocalStack, change: Callable[[dict[str, Any]], None], what: str, section: str = "kueue") -> float:
    """The stack's config file changed by CHANGE (on its `mlplatform:SECTION`), and `pulumi up`;
    its seconds."""
    document = yaml.safe_load(stack.config_file.read_text())
    change(document["config"][f"mlplatform:{section}"])
    return deploy(stack, yaml.safe_dump(document, sort_keys=False), what)


def deploy(stack: LocalStack, config: str, what: str) -> float:
    """The stack's config file set to CONFIG, and `pulumi up`; its seconds, printed as WHAT's."""
    stack.config_file.write_text(config)
    seconds = stack.pulumi("up", "--yes", "--skip-preview", timeout=900).seconds
    print(f"  {what} in {seconds:.0f}s", flush=True)
    return seconds


def gpu_quota(kueue: dict[str, Any]) -> dict[str, Any]:
    (queue,) = [q for q in kueue["clusterQueues"] if q["name"] == CLUSTER_QUEUE]
    (quota,) = [q for q in queue["quotas"] if q["pool"] == "gpu"]
    return quota


def stack_job_uid(real: RealCluster) -> str:
    return real.get("tfjob", "-n", NAMESPACE, STACK_JOB)["metadata"]["uid"]


def wait_for_the_stack_job(real: RealCluster, which: str) -> None:
    """Until the stack's TFJob (WHICH: how the wait's message names it) has Succeeded."""
    wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, STACK_JOB), "Succeeded"), STACK_JOB_TIMEOUT_S,
             f"the stack's {which}TFJob {STACK_JOB} to succeed")


@pytest.fixture
def stack_job_done(stack: LocalStack, real: RealCluster) -> None:
    """The stack's own TFJob finished, so that nothing of it holds quota (on the session's stack:
    conftest.py runs the tests that use it after the others)."""
    wait_for_the_stack_job(real, "")


@pytest.fixture
def quota_of_two(stack: LocalStack, real: RealCluster, stack_job_done: None) -> Iterator[None]:
    """The ClusterQueue's GPU quota lowered to GPU_QUOTA, then the stack as it was, whatever
    happened here."""
    original = stack.config_file.read_text()
    try:
        with_config(stack, lambda kueue: gpu_quota(kueue).update(gpus=GPU_QUOTA), f"a GPU quota of {GPU_QUOTA}")
        yield
    finally:
        # The stack goes back to its own config whatever happened here: the modules after this one
        # assume it (in CI a failure here once left it changed, and they all failed behind it).
        try:
            delete_queued_job(real, JOB)
        finally:
            deploy(stack, original, "the stack's own config back")


def delete_queued_job(real: RealCluster, job: str) -> None:
    """JOB, its pods and its Workload (the garbage collector's, owned by the job) gone."""
    real.kubectl("delete", "tfjob", "-n", NAMESPACE, job, "--ignore-not-found", "--timeout=120s", check=False,
                 timeout=180)
    wait_for(lambda: not job_pods(real, job), 120, f"{job}'s pods gone")
    wait_for(lambda: not job_workloads(real, job, NAMESPACE), 120, f"{job}'s Workload gone")


def queued_job(name: str, replicas: dict[str, Any]) -> dict[str, Any]:
    """A TFJob of REPLICAS in the training LocalQueue: Kueue's webhook suspends it at creation."""
    return {"apiVersion": TFJOB_API_VERSION, "kind": "TFJob",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {QUEUE_LABEL: TRAINING_LOCAL_QUEUE}},
            "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, "tfReplicaSpecs": replicas}}


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


def test_notebooks_and_a_tfjob_share_one_gpu_quota(real: RealCluster, quota_of_two: None, hub: Hub) -> None:
    manager = real.get("deployment", "-n", "kueue-system", "kueue-controller-manager")
    assert manager["status"].get("readyReplicas") == 1, f"the Kueue manager is not ready: {manager['status']}"
    # Its visibility API, served by the manager behind the API server (the front proxy's identity
    # trusted through the cluster's own CA): registered and answering.
    wait_for(lambda: condition(real.get("apiservice", "v1beta2.visibility.kueue.x-k8s.io"), "Available"), 120,
             "Kueue's visibility API to be available")
    # The stack's job queued in the training LocalQueue, admitted whole, and its Workload over with it.
    stack_job = real.get("tfjob", "-n", NAMESPACE, STACK_JOB)
    assert stack_job["metadata"]["labels"].get(QUEUE_LABEL) == TRAINING_LOCAL_QUEUE, stack_job["metadata"]["labels"]
    (stack_workload,) = job_workloads(real, STACK_JOB, NAMESPACE)
    assert stack_workload["spec"]["queueName"] == TRAINING_LOCAL_QUEUE
    assert (workload_condition(stack_workload, "Finished") or {}).get("reason") == "Succeeded", stack_workload.get("status")
    wait_for(lambda: real.kubectl("get", "clusterqueue", CLUSTER_QUEUE, check=False).returncode == 0, 60,
             f"ClusterQueue {CLUSTER_QUEUE}")
    assert real.get("localqueue", "-n", HUB_NAMESPACE, NOTEBOOK_LOCAL_QUEUE)["spec"]["clusterQueue"] == CLUSTER_QUEUE
    assert gpu_usage(real) == 0, f"ClusterQueue {CLUSTER_QUEUE} holds GPUs before anything was queued"
    if not (HUB_DIR / "node_modules" / "playwright-core").is_dir() or shutil.which("node") is None:
        pytest.fail("the browser harness is not installed: run tests/hub/setup.sh first (make test does)")

    job = queued_job(JOB, {"Worker": {"replicas": 2, "restartPolicy": "Never",
                                      "template": {"spec": gpu_pod_spec("sleep 5", CONTAINER_NAME)}}})
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

        # 2. A TFJob of two GPU workers waits whole: suspended, no replica's pod exists, so none
        # holds a node or a GPU.
        real.apply(job)
        wait_for(lambda: job_workloads(real, JOB, NAMESPACE), 60, f"Kueue to make {JOB}'s Workload")

        def job_waits_whole() -> None:
            waiting = real.get("tfjob", "-n", NAMESPACE, JOB)
            assert waiting["spec"]["runPolicy"].get("suspend") is True, f"{JOB} is not suspended: {waiting['spec']['runPolicy']}"
            assert not job_pods(real, JOB), f"{JOB} has pods while it waits: {[p['metadata']['name'] for p in job_pods(real, JOB)]}"

        deadline = time.monotonic() + WAITING_S
        while time.monotonic() < deadline:
            # In use, as far as the culler knows: the test stack culls an idle GPU server after a
            # minute, which would return its GPU (seen: the job then admitted mid-test).
            hub.report_activity(HOLDER)
            job_waits_whole()
            assert gpu_usage(real) == 1, "the waiting job holds GPU quota"
            time.sleep(2)
        (workload,) = job_workloads(real, JOB, NAMESPACE)
        # Both workers in one Workload: admitted together or not at all.
        assert [(s["name"], s["count"]) for s in workload["spec"]["podSets"]] == [("worker", 2)], workload["spec"]["podSets"]
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
                            assert listed == [(NAMESPACE, workload["metadata"]["name"], 0, 0),
                                              (HUB_NAMESPACE, waiting["metadata"]["name"], 1, 0)], listed
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
        # (quota_of_two deletes the job and waits for its pods before the quota goes back.)
        real.kubectl("delete", "tfjob", "-n", NAMESPACE, JOB, "--ignore-not-found", "--wait=false", check=False)
        for user in (HOLDER, WAITER):
            forget(hub, user)


def test_a_failed_job_gives_its_quota_back(real: RealCluster, stack_job_done: None) -> None:
    """A queued TFJob whose worker fails (restartPolicy Never): the operator fails the job and stops
    its chief (cleanPodPolicy Running), and its Workload is Finished with it, its GPUs back in the
    quota. (Queued as a pod group instead, the job's pods held their group and its quota once the
    operator had stopped the chief: Kueue waits for a failed pod's replacement, docs/training.md.)"""
    assert gpu_usage(real) == 0, "the quota is not free before the failing job"
    # The chief ends at its SIGTERM, as the trainer does.
    scripts = {"Chief": "trap 'exit 143' TERM; sleep 3600 & wait", "Worker": "sleep 15; exit 1"}
    real.apply(queued_job(FAILING_JOB, {
        kind: {"replicas": 1, "restartPolicy": "Never", "template": {"spec": gpu_pod_spec(script, CONTAINER_NAME)}}
        for kind, script in scripts.items()
    }))
    try:
        wait_for(lambda: gpu_usage(real) == 2, 120, f"{FAILING_JOB} admitted whole")
        wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, FAILING_JOB), "Failed"), 180,
                 f"{FAILING_JOB} failed by its worker")

        def over() -> dict[str, Any] | None:
            (workload,) = job_workloads(real, FAILING_JOB, NAMESPACE)
            finished = workload_condition(workload, "Finished")
            return workload if finished and finished["status"] == "True" else None

        workload = wait_for(over, 120, f"the Workload of {FAILING_JOB} Finished")
        assert workload_condition(workload, "Finished")["reason"] == "Failed", workload.get("status")
        wait_for(lambda: gpu_usage(real) == 0, 60, f"{FAILING_JOB}'s GPUs back in the quota")
        # Kueue leaves the job's pods to the operator: none carries its finalizer.
        held = [p["metadata"]["name"] for p in job_pods(real, FAILING_JOB) if p["metadata"].get("finalizers")]
        assert not held, f"pods of {FAILING_JOB} with finalizers: {held}"
    finally:
        delete_queued_job(real, FAILING_JOB)


def test_with_kueue_disabled_the_stack_is_as_it_was_before_kueue(stack: LocalStack, real: RealCluster, hub: Hub) -> None:
    """`kueue.enabled: false`: nothing of Kueue left, the stack's job and a GPU server's pod as
    they were before Kueue; then Kueue on again (the stack's own config)."""
    original = stack.config_file.read_text()
    job_uid = stack_job_uid(real)
    try:
        with_config(stack, lambda kueue: kueue.update(enabled=False), "Kueue turned off")
        wait_for(lambda: real.kubectl("get", "namespace", KUEUE_NAMESPACE, check=False).returncode != 0, 180,
                 f"namespace {KUEUE_NAMESPACE} gone")
        left = [c["metadata"]["name"] for c in real.get("crds")["items"] if c["metadata"]["name"].endswith(".kueue.x-k8s.io")]
        assert left == [], f"Kueue's CRDs left: {left}"
        for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations", "apiservices"):
            names = [o["metadata"]["name"] for o in real.get(kind)["items"]]
            assert not [n for n in names if "kueue" in n], f"{kind} of Kueue left: {names}"
        # The stack's job replaced by one without a queue (Kueue refuses to requeue a job it let
        # run), which runs at once: here it restores its last checkpoint and ends.
        job = real.get("tfjob", "-n", NAMESPACE, STACK_JOB)
        assert job["metadata"]["uid"] != job_uid, "the stack's job was not replaced"
        assert QUEUE_LABEL not in job["metadata"].get("labels", {}), job["metadata"]["labels"]
        wait_for_the_stack_job(real, "unqueued ")
        # GPU servers start without a queue: their pods neither labelled nor gated. Two of two GPUs
        # take the GPU node's four shares...
        for user in (HOLDER, WAITER):
            start_server(hub, user, 2)
        for user in (HOLDER, WAITER):
            wait_for(lambda user=user: (hub.server(user) or {}).get("ready"), 300, f"{user}'s GPU server ready", interval=2)
            pod = real.get("pod", "-n", HUB_NAMESPACE, pod_name(user))
            assert QUEUE_LABEL not in pod["metadata"]["labels"], pod["metadata"]["labels"]
            assert not pod["spec"].get("schedulingGates"), pod["spec"]["schedulingGates"]
            assert pod["spec"]["nodeName"] == real.node("gpu").spec.name
        # ...and a third is the scheduler's again: Pending, with its reason, not Kueue's.
        start_server(hub, THIRD, 1)

        def unschedulable() -> str | None:
            got = real.kubectl("get", "pod", "-n", HUB_NAMESPACE, pod_name(THIRD), "-o", "json", check=False)
            if got.returncode != 0:
                return None
            third = json.loads(got.stdout)
            assert not third["spec"].get("schedulingGates") and not third["spec"].get("nodeName"), third["spec"]
            reason = next((c for c in third["status"].get("conditions", []) if c.get("reason") == "Unschedulable"), {})
            return reason.get("message") if GPU_RESOURCE in reason.get("message", "") else None

        said = wait_for(unschedulable, 120, f"{THIRD}'s pod Unschedulable for want of {GPU_RESOURCE}", interval=2)
        assert f"Insufficient {GPU_RESOURCE}" in said, said
    finally:
        for user in (HOLDER, WAITER, THIRD):
            forget(hub, user)
        deploy(stack, original, "Kueue on again")
        # The stack's job queued again (replaced once more), and over before the next module.
        wait_for_the_stack_job(real, "queued ")


def stack_job_workers(real: RealCluster) -> list[dict[str, Any]]:
    return [p for p in job_pods(real, STACK_JOB) if p["metadata"]["labels"].get(REPLICA_TYPE_LABEL) == "worker"]


def worker_flavor(real: RealCluster, job_uid: str) -> str | None:
    """The flavor Kueue admitted the workers of the stack's job (by uid) to, once it has."""
    for workload in job_workloads(real, STACK_JOB, NAMESPACE):
        if workload["metadata"]["ownerReferences"][0]["uid"] != job_uid:
            continue
        assignments = workload.get("status", {}).get("admission", {}).get("podSetAssignments", [])
        for assignment in assignments:
            if assignment["name"] == "worker":
                return assignment["flavors"].get("cpu")
    return None


def test_a_running_queued_job_given_gpu_workers_is_a_new_job_admitted_to_the_gpu_pool(
        stack: LocalStack, real: RealCluster, stack_job_done: None) -> None:
    """A `pulumi up` that changes a running queued job's pod sets (its workers' count and GPUs)
    replaces the job, and Kueue admits the new one as it is. (Updated in place, a job that Kueue
    had admitted to the CPU pool kept that pool's node selector with its new GPU workers, and
    waited for ever: "untolerated taint".)"""
    original = stack.config_file.read_text()
    first_uid = stack_job_uid(real)
    cpu_node, gpu_node = real.node("cpu").spec.name, real.node("gpu").spec.name
    try:
        def on_cpu(mnist: dict[str, Any]) -> None:
            # One worker: the CPU node's two cores hold the platform's pods too, and a second
            # worker, admitted by the queue's CPU quota, found no room on the node.
            mnist["replicas"]["Worker"] = 1
            mnist["gpus"]["Worker"] = 0
            mnist["trainSteps"] += MORE_STEPS

        with_config(stack, on_cpu, f"the job on the CPU pool with one worker, {MORE_STEPS} steps more", section="mnist")
        cpu_uid = stack_job_uid(real)
        assert cpu_uid != first_uid, "the queued job was updated in place"
        assert wait_for(lambda: worker_flavor(real, cpu_uid), 180, "the CPU job admitted") != GPU_FLAVOR

        def training_on_cpu() -> bool:
            workers = stack_job_workers(real)
            return len(workers) == 1 and all(p["status"].get("phase") == "Running" and p["spec"].get("nodeName") == cpu_node
                                             for p in workers)

        wait_for(training_on_cpu, 300, "the CPU job's worker running on the CPU node", interval=2)
        # Two GPU workers again (the stack's own config), while it trains.
        assert not condition(real.get("tfjob", "-n", NAMESPACE, STACK_JOB), "Succeeded"), "the CPU job ended before the change"
        deploy(stack, original, "the stack's own config back")
        gpu_uid = stack_job_uid(real)
        assert gpu_uid != cpu_uid, "the running queued job was updated in place"
        assert wait_for(lambda: worker_flavor(real, gpu_uid), 180, "the GPU job admitted") == GPU_FLAVOR
        wait_for_the_stack_job(real, "GPU ")
        placed = {p["spec"].get("nodeName") for p in stack_job_workers(real)}
        assert placed == {gpu_node}, f"the GPU job's workers ran on {placed}"
    finally:
        if stack.config_file.read_text() != original:
            deploy(stack, original, "the stack's own config back")
            wait_for_the_stack_job(real, "")
