"""Training survives the faults a cluster has, and the TFJob's policies do on the cluster what they
say (issue 24, item 6).

Against the session's stack (conftest.py), once its own job has finished (so that nothing here
competes with it for the two shared cores, and so that its TFJob, as the cluster holds it, is the
template). Each fault job is the stack's TFJob under another name, training into a model directory
of its own on the shared volume, with a NetworkPolicy that lets its replicas reach each other as the
stack's `replicas` policy lets the stack's job's:

- the PS pod deleted after the chief's first checkpoint: the pinned operator fails the job (a
  Running pod being deleted counts as a failed replica, whatever the restart policy); the job
  submitted again restores the chief's last checkpoint and ends Succeeded;
- the operator's pod deleted after the chief's first checkpoint: its Deployment starts another, the
  job trains on undisturbed (no replica recreated or restarted) and the new operator marks it
  Succeeded;
- the GPU node's kubelet, containerd, shims and pods SIGKILLed mid-training, and the node brought
  back by `bin/cluster up`: the workers run again on the GPU node (their pods replaced by the operator
  under the same names) and the job goes on to Succeeded.

Each ends Succeeded with the held-out accuracy above the floor and one pod per replica name. The
policies (checked first, they take a minute) run a one-line Python program in the stack's chief
template, rendered by the typed TFJob (components/tfjob.py), not training:
`ExitCode` fails at once on a permanent exit code and recreates the pod on a retryable one;
`OnFailure` fails after `backoffLimit` restarts; `activeDeadlineSeconds` fails the job;
`ttlSecondsAfterFinished` removes it. Every TFJob made here is deleted at the end, its pods gone,
so the GPU node's GPUs are free for the tests after these.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from cluster.localcluster.containerd import Containerd
from cluster.localcluster.process import Daemon
from cluster.localcluster.settings import tools
from components.tfjob import ReplicaSpec, RunPolicy, TFJobSpec
from e2e.local_stack import LocalStack, condition
from kueue_state import copied_replicas, job_workloads, queued_as, workload_condition
from real_cluster import RealCluster, wait_for
from test_mnist_on_real_nodes import ACCURACY_FLOOR, JOB, JOB_LABEL, NAMESPACE, TRAINING_TIMEOUT_S
from vocab.tfjob_api import OPERATOR_NAME, OPERATOR_NAMESPACE

# Checkpoints every 50 steps: a fault lands after the first and leaves most of the training to do.
EVAL_EVERY = 50
# The GPU node case needs only a fault after the first checkpoint and training left after it: the
# coordinator cannot go on while both workers are down, so the job cannot end before they are back.
# 200 steps of the trainer's CNN pass the floor with room (tests/trainer: 0.95 or more at 200 steps).
NODE_CASE_TRAIN_STEPS = 200
# The operator case needs training left after the new operator is Ready: on an idle machine the
# test stack's 400 steps ended 28 s after the job's start, before the new operator was (2026-12-07).
OPERATOR_CASE_TRAIN_STEPS = 1200
REPLICAS = ("chief-0", "worker-0", "worker-1", "ps-0")
FAULT_JOBS = ("faults-ps", "faults-operator", "faults-node")
# Where this session's jobs write on the shared volume (the stack's /data): fresh for every session.
RUN_DIR = f"/data/training-faults-{secrets.token_hex(3)}"
CHIEF_LOG_LINE = re.compile(r"^(Saved|Restored) checkpoint at step (\d+)", re.MULTILINE)


def tfjob(real: RealCluster, name: str) -> dict[str, Any] | None:
    out = real.kubectl("get", "tfjob", "-n", NAMESPACE, name, "-o", "json", check=False)
    if out.returncode != 0:
        assert "NotFound" in out.stderr, out.stderr
        return None
    return json.loads(out.stdout)


def finished(real: RealCluster, name: str) -> dict[str, Any] | None:
    job = tfjob(real, name)
    return job if job and (condition(job, "Succeeded") or condition(job, "Failed")) else None


def pods_of(real: RealCluster, name: str) -> dict[str, dict[str, Any]]:
    """Replica ("chief-0") -> its pod."""
    items = real.get("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={name}")["items"]
    return {p["metadata"]["name"].removeprefix(f"{name}-"): p for p in items}


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod["status"].get("containerStatuses", [])
    return next((c for c in statuses if c["name"] == "tensorflow"), {})


def chief_log(real: RealCluster, name: str, *args: str) -> str:
    return real.kubectl("logs", "-n", NAMESPACE, f"{name}-chief-0", "-c", "tensorflow", *args, check=False).stdout


def delete_jobs(real: RealCluster, *names: str) -> None:
    """Delete TFJobs and wait until none of their pods is left (the GPU node's GPUs free again),
    and, queued, their Workloads (the garbage collector's, owned by the job): a job submitted
    again under the same name must not find its predecessor's."""
    for name in names:
        real.kubectl("delete", "tfjob", "-n", NAMESPACE, name, "--ignore-not-found", "--wait=false", check=False)
    for name in names:
        wait_for(lambda name=name: not pods_of(real, name), 180, f"the pods of TFJob {name} gone")
        wait_for(lambda name=name: not job_workloads(real, name, NAMESPACE), 60, f"the Workload of TFJob {name} gone")


@pytest.fixture(scope="module")
def stack_job(stack: LocalStack, real: RealCluster) -> dict[str, Any]:
    """The stack's TFJob, once it has finished (test_mnist_on_real_nodes.py waited for it already
    in a full run)."""
    return wait_for(lambda: finished(real, JOB), TRAINING_TIMEOUT_S, "the stack's TFJob finished", interval=5)


def training_job(stack_job: dict[str, Any], name: str, train_steps: int | None = None) -> dict[str, Any]:
    """The stack's TFJob as `name`, training into a model and log directory of its own and
    checkpointing every EVAL_EVERY steps (for `train_steps` steps where given)."""
    spec = copy.deepcopy(stack_job["spec"])
    spec["tfReplicaSpecs"] = copied_replicas(spec["tfReplicaSpecs"])
    flags = {"--model-dir": f"{RUN_DIR}/{name}/model", "--log-dir": f"{RUN_DIR}/{name}/logs", "--eval-every": str(EVAL_EVERY)}
    if train_steps:
        flags["--train-steps"] = str(train_steps)
    for replica in spec["tfReplicaSpecs"].values():
        container = replica["template"]["spec"]["containers"][0]
        args = [a for a in container["args"] if a.split("=", 1)[0] not in flags]
        container["args"] = args + [f"{flag}={value}" for flag, value in flags.items()]
    # Queued where the stack's job is: Kueue suspends the copy until it fits, whatever its copied
    # runPolicy says.
    return {"apiVersion": stack_job["apiVersion"], "kind": "TFJob",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": queued_as(stack_job)}, "spec": spec}


def retarget(value: Any, selector: dict[str, Any]) -> Any:
    """`value` with every pod selector of the stack's job replaced by `selector`."""
    ours = {"matchLabels": {JOB_LABEL: JOB}}
    if value == ours:
        return selector
    if isinstance(value, dict):
        return {k: retarget(v, selector) for k, v in value.items()}
    if isinstance(value, list):
        return [retarget(v, selector) for v in value]
    return value


@pytest.fixture(scope="module")
def fault_network_policy(stack_job: dict[str, Any], real: RealCluster) -> Iterator[None]:
    """The stack's `replicas` NetworkPolicy, for the fault jobs' pods: in the namespace's
    default-deny, the replicas of a job the stack did not declare reach nothing."""
    stack_policy = real.get("networkpolicy", "-n", NAMESPACE, "replicas")
    selector = {"matchExpressions": [{"key": JOB_LABEL, "operator": "In", "values": list(FAULT_JOBS)}]}
    spec = retarget(stack_policy["spec"], selector)
    assert spec != stack_policy["spec"], "the stack's replicas policy selects the job by its name label"
    real.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "training-faults", "namespace": NAMESPACE}, "spec": spec})
    try:
        yield
    finally:
        delete_jobs(real, *FAULT_JOBS)
        real.kubectl("delete", "networkpolicy", "-n", NAMESPACE, "training-faults", "--ignore-not-found", check=False)


@dataclass
class FaultRun:
    """What a test saw of one fault job."""

    name: str
    first_pods: dict[str, dict[str, Any]]  # replica -> pod, all four Running, before the fault
    replicas_seen: dict[str, set[str]] = field(default_factory=dict)  # pod name -> every UID it had
    previous_chief_log: str = ""  # the chief's container before a restart ("" when none)
    job: dict[str, Any] = field(default_factory=dict)  # the TFJob once finished
    pods_after: dict[str, dict[str, Any]] = field(default_factory=dict)
    chief_log: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def see(self, pods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for replica, pod in pods.items():
            self.replicas_seen.setdefault(replica, set()).add(pod["metadata"]["uid"])
        return pods


def start(real: RealCluster, manifest: dict[str, Any]) -> FaultRun:
    name = manifest["metadata"]["name"]
    real.apply(manifest)
    run = FaultRun(name, {})

    def running() -> dict[str, dict[str, Any]] | None:
        pods = run.see(pods_of(real, name))
        return pods if set(pods) == set(REPLICAS) and all(p["status"].get("phase") == "Running" for p in pods.values()) else None

    run.first_pods = wait_for(running, 600, f"the four pods of {name} Running", interval=2)
    return run


def first_checkpoint(real: RealCluster, run: FaultRun) -> int:
    def saved() -> int | None:
        run.see(pods_of(real, run.name))
        found = re.search(r"^Saved checkpoint at step (\d+)", chief_log(real, run.name), re.MULTILINE)
        return int(found.group(1)) if found else None

    return wait_for(saved, TRAINING_TIMEOUT_S, f"the first checkpoint of {run.name}", interval=2)


def finish(real: RealCluster, run: FaultRun) -> FaultRun:
    def done() -> dict[str, Any] | None:
        run.see(pods_of(real, run.name))
        return finished(real, run.name)

    run.job = wait_for(done, TRAINING_TIMEOUT_S, f"{run.name} finished", interval=3)
    # The workers and the PS exit at the chief's completion marker, or cleanPodPolicy removes them.
    run.pods_after = wait_for(
        lambda: (pods := run.see(pods_of(real, run.name)))
        and not any(p["status"].get("phase") == "Running" for p in pods.values()) and pods,
        120, f"no replica of {run.name} Running", interval=2)
    run.chief_log = chief_log(real, run.name)
    return run


def restart_count(real: RealCluster, name: str, replica: str) -> int:
    pod = pods_of(real, name).get(replica)
    return container_status(pod).get("restartCount", 0) if pod else 0


@pytest.fixture(scope="module")
def ps_deleted(stack_job: dict[str, Any], fault_network_policy: None, real: RealCluster) -> FaultRun:
    """The PS pod deleted after the chief's first checkpoint. The pinned operator (v1.9 line) fails the job: a
    Running pod with a deletion timestamp counts as a failed replica, and the job fails on a failed
    replica unless the operator itself is restarting it (pkg/core/status.go, UpdateJobStatus;
    kubeflow/trainer#2124, #1560), whatever the restart policy. What is not lost: the checkpoints.
    The job submitted again (as `kubectl delete tfjob` and `pulumi up --refresh` do for the stack's)
    restores the last one and trains on from there.

    The failed job's pods, deleted by cleanPodPolicy Running, stop at their SIGTERM (the trainer's
    handler, trainer/termination.py). Before it, the trainer as PID 1 never saw the signal and the
    chief trained on through its 30 s grace period: in one fresh-clone run (2026-12-06) to the
    stack's last step, which left the job submitted again nothing to train. The test checks that
    the job submitted again did train."""
    run = start(real, training_job(stack_job, "faults-ps"))
    run.notes["checkpoint_before_fault"] = first_checkpoint(real, run)
    deleted = run.first_pods["ps-0"]["metadata"]["uid"]
    # Read before the fault: once the job fails, cleanPodPolicy Running removes the chief's pod.
    run.previous_chief_log = chief_log(real, run.name)
    real.kubectl("delete", "pod", "-n", NAMESPACE, "faults-ps-ps-0", "--wait=false")
    run.notes["deleted_ps"] = deleted
    run.notes["failed_job"] = wait_for(lambda: finished(real, run.name), 300, f"{run.name} ended after its PS pod was deleted",
                                       interval=2)
    # Submitted again: a new job of the same name, its pods new, its model directory the same.
    deleting = time.monotonic()
    delete_jobs(real, run.name)
    run.notes["failed_job_gone_after_s"] = round(time.monotonic() - deleting, 1)
    again = start(real, training_job(stack_job, run.name))
    again.notes, again.previous_chief_log = run.notes, run.previous_chief_log
    return finish(real, again)


@pytest.fixture(scope="module")
def operator_deleted(stack_job: dict[str, Any], fault_network_policy: None, real: RealCluster) -> FaultRun:
    # After the PS case in file order, so that the two jobs do not share the two cores.
    run = start(real, training_job(stack_job, "faults-operator", OPERATOR_CASE_TRAIN_STEPS))
    run.notes["checkpoint_before_fault"] = first_checkpoint(real, run)
    selector = real.get("deployment", "-n", OPERATOR_NAMESPACE, OPERATOR_NAME)["spec"]["selector"]["matchLabels"]
    labels = ",".join(f"{k}={v}" for k, v in selector.items())
    (old,) = real.get("pods", "-n", OPERATOR_NAMESPACE, "-l", labels)["items"]
    real.kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, old["metadata"]["name"], "--wait=false")
    run.notes["deleted_operator"] = old["metadata"]["uid"]

    def new_operator() -> dict[str, Any] | None:
        for pod in real.get("pods", "-n", OPERATOR_NAMESPACE, "-l", labels)["items"]:
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
            if pod["metadata"]["uid"] != old["metadata"]["uid"] and ready:
                return pod
        return None

    run.notes["new_operator"] = wait_for(new_operator, 300, "a new operator pod Ready", interval=2)["metadata"]["uid"]
    run.notes["finished_before_new_operator"] = finished(real, run.name) is not None
    return finish(real, run)


def accuracy(log: str) -> float:
    found = [float(a) for a in re.findall(r"^Accuracy at step \d+: ([0-9.]+)$", log, re.MULTILINE)]
    assert found, log[-3000:]
    return found[-1]


def assert_succeeded_above_the_floor(run: FaultRun) -> None:
    assert condition(run.job, "Succeeded"), run.job.get("status")
    assert accuracy(run.chief_log) >= ACCURACY_FLOOR, run.chief_log[-3000:]
    assert run.pods_after["chief-0"]["status"]["phase"] == "Succeeded", run.pods_after["chief-0"]["status"]
    # One pod per replica name: no replica besides the job's four ever existed.
    assert set(run.replicas_seen) == set(REPLICAS), run.replicas_seen


# --- the policies -------------------------------------------------------------------------------


def policy_job(stack_job: dict[str, Any], name: str, program: str, restart_policy: str,
               **run_policy: Any) -> dict[str, Any]:
    """A one-replica TFJob whose chief runs `program` (Python) in the stack's chief template,
    rendered by the typed TFJob that renders the stack's (components/tfjob.py)."""
    chief = copied_replicas(stack_job["spec"]["tfReplicaSpecs"])["Chief"]["template"]
    container = chief["spec"]["containers"][0]
    container.update(command=["python", "-c", program], args=[],
                     resources={"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    spec = TFJobSpec(name, NAMESPACE, {"Chief": ReplicaSpec(1, chief, restart_policy)}, RunPolicy(**run_policy),
                     labels=queued_as(stack_job))
    spec.validate()
    return spec.manifest()


# 1 tells "after backoffLimit restarts" from "at the first failure" and costs one crash-loop back-off
# (10 s) where 2 cost two (10 s + 20 s).
BACKOFF_LIMIT = 1
DEADLINE_S = 20
TTL_S = 15
# Exits 138 (SIGUSR1's code, which the trainer uses for "restart the job") in its first pod and 0 in
# the next: the shared volume remembers the first run.
RETRY_ONCE = f"""
import os, sys, time
marker = "{RUN_DIR}/policy-exitcode-retryable"
if os.path.exists(marker):
    sys.exit(0)
os.makedirs(os.path.dirname(marker), exist_ok=True)
open(marker, "w").close()
time.sleep(10)
sys.exit(138)
"""
SLEEP_UNTIL_SIGTERM = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); time.sleep(3600)"
RUNNING = {"clean_pod_policy": "Running"}  # the stack's default
POLICY_JOBS = {
    "policy-exitcode-permanent": ("import sys; sys.exit(1)", "ExitCode", RUNNING),
    "policy-exitcode-retryable": (RETRY_ONCE, "ExitCode", RUNNING),
    # cleanPodPolicy None: the failing pod stays, so its restart count when the job failed is read.
    "policy-onfailure-backoff": ("import sys, time; time.sleep(3); sys.exit(1)", "OnFailure",
                                 {"clean_pod_policy": "None", "backoff_limit": BACKOFF_LIMIT}),
    # Ends at SIGTERM as the trainer does: as PID 1 without a handler it would hold its pod's stop for
    # the whole grace period (30 s).
    "policy-deadline": (SLEEP_UNTIL_SIGTERM, "OnFailure", {**RUNNING, "active_deadline_seconds": DEADLINE_S}),
    "policy-ttl": ("print('done')", "OnFailure", {**RUNNING, "ttl_seconds_after_finished": TTL_S}),
}


@dataclass
class PolicyRun:
    job: dict[str, Any] | None = None  # the TFJob once finished (the ttl job: as last seen)
    chief_uids: list[str] = field(default_factory=list)  # the chief pod's UIDs, in the order seen
    chief: dict[str, Any] | None = None  # the chief pod as last seen
    max_restarts: int = 0
    restarts_before_end: int = 0  # the most restarts seen while the job had not finished
    restarts_at_end: int | None = None  # the restarts of the chief seen first once the job had finished
    removed: bool = False  # the TFJob gone from the API by itself


@pytest.fixture(scope="module")
def policies(stack_job: dict[str, Any], real: RealCluster) -> Iterator[dict[str, PolicyRun]]:
    """The five policy jobs, run together to their end (first in this file: the fault jobs, one at
    a time after them, need the cores)."""
    runs = {name: PolicyRun() for name in POLICY_JOBS}
    for name, (program, restart_policy, run_policy) in POLICY_JOBS.items():
        real.apply(policy_job(stack_job, name, program, restart_policy, **run_policy))
    try:
        def observe() -> bool:
            # Two requests a round, so that a pod that lives a few seconds is seen.
            jobs = {j["metadata"]["name"]: j for j in real.get("tfjobs", "-n", NAMESPACE)["items"]}
            selector = f"{JOB_LABEL} in ({','.join(POLICY_JOBS)})"
            chiefs = {p["metadata"]["labels"][JOB_LABEL]: p for p in real.get("pods", "-n", NAMESPACE, "-l", selector)["items"]}
            for name, run in runs.items():
                job = jobs.get(name)
                if job is None:
                    run.removed = run.job is not None  # gone after it was seen finished
                elif condition(job, "Succeeded") or condition(job, "Failed"):
                    run.job = job
                chief = chiefs.get(name)
                if chief:  # read after the job: once it has finished, its pod's state is final
                    run.chief = chief
                    if chief["metadata"]["uid"] not in run.chief_uids:
                        run.chief_uids.append(chief["metadata"]["uid"])
                    restarts = container_status(chief).get("restartCount", 0)
                    run.max_restarts = max(run.max_restarts, restarts)
                    if run.job is None:
                        run.restarts_before_end = max(run.restarts_before_end, restarts)
                    elif run.restarts_at_end is None:
                        run.restarts_at_end = restarts
            return all(run.job for run in runs.values()) and runs["policy-ttl"].removed

        wait_for(observe, 600, "every policy job finished and the ttl job removed", interval=1)
        yield runs
    finally:
        delete_jobs(real, *POLICY_JOBS)


def failed_because(run: PolicyRun) -> str:
    assert run.job and condition(run.job, "Failed"), run.job and run.job.get("status")
    return next(c["message"] for c in run.job["status"]["conditions"] if c["type"] == "Failed")


def test_exit_code_policy_fails_on_a_permanent_exit_code_without_a_restart(policies: dict[str, PolicyRun]) -> None:
    run = policies["policy-exitcode-permanent"]
    failed_because(run)
    assert len(run.chief_uids) == 1 and run.max_restarts == 0, (run.chief_uids, run.max_restarts)
    # The operator runs ExitCode replicas with the pod's restartPolicy Never and decides itself.
    assert run.chief["spec"]["restartPolicy"] == "Never"
    assert container_status(run.chief)["state"]["terminated"]["exitCode"] == 1


def test_exit_code_policy_recreates_the_pod_on_a_retryable_exit_code(policies: dict[str, PolicyRun], stack_job: dict[str, Any],
                                                                     real: RealCluster) -> None:
    """The contrast to the permanent code: 138 gets a new pod, which then succeeds. Queued (the dev
    stack's job is), the job is Kueue's and its pods the operator's: the replaced pod waits for
    nothing (queued as a pod group it waited for good, docs/training.md)."""
    run = policies["policy-exitcode-retryable"]
    assert condition(run.job, "Succeeded"), run.job.get("status")
    assert len(run.chief_uids) == 2 and run.max_restarts == 0, (run.chief_uids, run.max_restarts)
    if queued_as(stack_job):
        (workload,) = job_workloads(real, "policy-exitcode-retryable", NAMESPACE)
        assert (workload_condition(workload, "Finished") or {}).get("reason") == "Succeeded", workload.get("status")


def test_on_failure_policy_fails_after_the_backoff_limit(policies: dict[str, PolicyRun]) -> None:
    run = policies["policy-onfailure-backoff"]
    assert "backoff limit" in failed_because(run)
    # The kubelet restarted the container in its pod; the operator failed the job once it counted
    # backoffLimit restarts, not before (the pod, kept by cleanPodPolicy None, restarts on after).
    assert len(run.chief_uids) == 1, run.chief_uids
    assert run.restarts_before_end <= BACKOFF_LIMIT <= (run.restarts_at_end or 0), (run.restarts_before_end, run.restarts_at_end)


def test_active_deadline_fails_the_job_and_stops_its_pod(policies: dict[str, PolicyRun], real: RealCluster) -> None:
    run = policies["policy-deadline"]
    assert "deadline" in failed_because(run)
    status = run.job["status"]
    began, ended = (datetime.fromisoformat(status[k].replace("Z", "+00:00")) for k in ("startTime", "completionTime"))
    assert (ended - began).total_seconds() >= DEADLINE_S, status
    # Its pod's own deadline (components/tfjob.py) stopped the sleeping chief and woke the operator.
    wait_for(lambda: not [p for p in pods_of(real, "policy-deadline").values() if p["status"].get("phase") == "Running"],
             120, "no pod of the deadline job running")


def test_ttl_after_finished_removes_the_job_and_its_pods(policies: dict[str, PolicyRun], real: RealCluster) -> None:
    run = policies["policy-ttl"]
    assert condition(run.job, "Succeeded"), run.job.get("status")
    assert run.removed
    wait_for(lambda: not pods_of(real, "policy-ttl"), 120, "the ttl job's pods removed with it")


# --- the faults (after the policies, which take a minute: the cheap checks first) ----------------


def test_a_deleted_ps_pod_fails_the_job_and_the_job_submitted_again_resumes_from_its_checkpoint(
        ps_deleted: FaultRun) -> None:
    run = ps_deleted
    failed = run.notes["failed_job"]
    assert condition(failed, "Failed"), failed.get("status")
    assert "PS replica(s) failed" in next(c["message"] for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert_succeeded_above_the_floor(run)
    # The chief may save another checkpoint between the log read and its end: at least the last seen.
    saved = [int(step) for kind, step in CHIEF_LOG_LINE.findall(run.previous_chief_log) if kind == "Saved"]
    assert saved and saved[0] >= run.notes["checkpoint_before_fault"], run.previous_chief_log[-3000:]
    restored = re.search(r"^Restored checkpoint at step (\d+) ", run.chief_log, re.MULTILINE)
    assert restored and int(restored.group(1)) >= saved[-1], (saved, run.chief_log[:3000])
    # ...and trained on from there: the failed job's chief stopped when its pod was deleted.
    ended = re.search(r"^Training finished at step (\d+)", run.chief_log, re.MULTILINE)
    assert ended and int(restored.group(1)) < int(ended.group(1)), run.chief_log[-3000:]
    print(f"\nfaults-ps: the failed job's pods gone {run.notes['failed_job_gone_after_s']} s after its delete; "
          f"the job submitted again restored step {restored.group(1)} of {ended.group(1)}")


def test_the_operator_restarted_mid_job_takes_the_job_over_without_disturbing_it(operator_deleted: FaultRun) -> None:
    run = operator_deleted
    assert run.notes["new_operator"] != run.notes["deleted_operator"]
    assert not run.notes["finished_before_new_operator"], "the job finished before the new operator was up: no proof"
    assert_succeeded_above_the_floor(run)
    for replica in REPLICAS:
        assert run.replicas_seen[replica] == {run.first_pods[replica]["metadata"]["uid"]}, (replica, run.replicas_seen)
    assert container_status(run.pods_after["chief-0"]).get("restartCount") == 0
    assert not re.search(r"^Restored checkpoint", run.chief_log, re.MULTILINE), "the chief never restarted"


def pids_in_cgroup(path: str) -> list[int]:
    """Processes on this machine in cgroup `path` or below it (in any hierarchy)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cgroups = open(f"/proc/{entry}/cgroup").read()
            except OSError:
                continue
            if f"{path}/" in cgroups:
                found.append(int(entry))
    return found


def kill_node(real: RealCluster, pool: str) -> list[int]:
    """SIGKILL a real node's kubelet, containerd, containerd's shims and its pods' processes, as a
    crash of the machine would end them (its network, kube-proxy, policy engine and device plugin
    stay); the PIDs killed."""
    settings = real.node(pool)
    daemons = [int(Daemon(name, [""], settings.state_dir).pid_file.read_text()) for name in ("kubelet", "containerd")]
    assert all(os.path.exists(f"/proc/{pid}") for pid in daemons), f"node {settings.spec.name}: kubelet, containerd {daemons}"
    shims = Containerd(settings, tools()).shim_pids()
    assert shims, f"node {settings.spec.name}: no containerd shim"
    killed = [*daemons, *shims]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    pods = pids_in_cgroup(f"{settings.cgroup_root.strip('/')}/kubepods")
    assert pods, f"node {settings.spec.name}: no pod process under {settings.cgroup_root}/kubepods"
    for pid in pods:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed + pods


@pytest.fixture(scope="module")
def gpu_node_killed(operator_deleted: FaultRun, stack_job: dict[str, Any], real: RealCluster) -> FaultRun:
    """After the operator case: the workers (on the GPU node) lose their node mid-training."""
    run = start(real, training_job(stack_job, "faults-node", train_steps=NODE_CASE_TRAIN_STEPS))
    run.notes["checkpoint_before_fault"] = first_checkpoint(real, run)
    gpu_node = run.notes["gpu_node"] = real.node("gpu").spec.name
    assert {run.first_pods[w]["spec"]["nodeName"] for w in ("worker-0", "worker-1")} == {gpu_node}
    pods = pods_of(real, run.name)
    run.notes["restarts_before"] = {r: container_status(p).get("restartCount", 0) for r, p in pods.items()}
    run.notes["started_before"] = {r: container_status(p)["state"].get("running", {}).get("startedAt") for r, p in pods.items()}
    run.notes["killed"] = kill_node(real, "gpu")
    killed_at = time.monotonic()
    wait_for(lambda: all(not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
                         for pid in run.notes["killed"]), 30, "the GPU node's kubelet, containerd, shims and pods gone")
    run.notes["status_while_down"] = real.cluster("status", check=False).stdout.strip()
    run.notes["up"] = real.cluster("up", timeout=900).stderr
    run.notes["node_back_after_s"] = round(time.monotonic() - killed_at, 1)

    def workers_back() -> bool:
        pods = run.see(pods_of(real, run.name))
        started = {w: container_status(pods[w]).get("state", {}).get("running", {}).get("startedAt") if w in pods else None
                   for w in ("worker-0", "worker-1")}
        back = all(started[w] and started[w] != run.notes["started_before"][w] for w in started)
        if back:  # where they run again (cleanPodPolicy removes them once the job is done)
            run.notes["workers_back_on"] = {w: pods[w]["spec"].get("nodeName") for w in ("worker-0", "worker-1")}
        return back

    wait_for(workers_back, 300, "both workers' containers started again on the GPU node", interval=2)
    if restart_count(real, run.name, "chief-0") > run.notes["restarts_before"]["chief-0"]:
        run.previous_chief_log = chief_log(real, run.name, "--previous")
    return finish(real, run)


def test_the_gpu_nodes_kubelet_containerd_and_shims_killed_and_brought_back_by_up(gpu_node_killed: FaultRun) -> None:
    run = gpu_node_killed
    assert run.notes["status_while_down"] == "stopped", run.notes["status_while_down"]
    # `bin/cluster up` says which of the node's parts it started again ("... Ready (started: containerd, kubelet)").
    started = re.search(rf"node {run.notes['gpu_node']} Ready \(started: ([^)]*)\)", run.notes["up"])
    assert started and {"containerd", "kubelet"} <= set(started.group(1).split(", ")), run.notes["up"][-2000:]
    assert_succeeded_above_the_floor(run)
    # The CPU node's replicas were not disturbed. The workers' containers died with the node: seen
    # on the real nodes (2026-12-06), the operator then replaced their pods by new ones of the same
    # names, which ran on the GPU node again once it was back (one pod per name at any time).
    for replica in ("chief-0", "ps-0"):
        assert run.replicas_seen[replica] == {run.first_pods[replica]["metadata"]["uid"]}, (replica, run.replicas_seen)
    assert set(run.notes["workers_back_on"].values()) == {run.notes["gpu_node"]}, run.notes["workers_back_on"]
    if run.previous_chief_log:  # the chief restarted too: from its last checkpoint
        saved = [int(step) for kind, step in CHIEF_LOG_LINE.findall(run.previous_chief_log) if kind == "Saved"]
        restored = re.search(r"^Restored checkpoint at step (\d+) ", run.chief_log, re.MULTILINE)
        assert saved and restored and int(restored.group(1)) == saved[-1], (saved, run.chief_log[:3000])
    replaced = sorted(w for w in ("worker-0", "worker-1") if len(run.replicas_seen[w]) > 1)
    print(f"\nfaults-node: the GPU node back (bin/cluster up done) {run.notes['node_back_after_s']} s after the kill; "
          f"workers whose pods were replaced: {replaced or 'none'}")


def test_no_job_of_these_tests_holds_a_gpu_afterwards(policies: dict[str, PolicyRun], real: RealCluster) -> None:
    """Last in this file: the fault jobs' workers asked for the GPU node's GPUs; the tests after
    these (GPU notebooks) need every one of them."""
    delete_jobs(real, *FAULT_JOBS, *POLICY_JOBS)
    holding = [p["metadata"]["name"] for p in real.get("pods", "-A")["items"]
               if p["status"].get("phase") in ("Pending", "Running")
               and p["metadata"]["labels"].get(JOB_LABEL) in (*FAULT_JOBS, *POLICY_JOBS)]
    assert holding == []
