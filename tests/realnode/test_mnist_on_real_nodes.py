"""The tutorial's distributed MNIST in pods on the real nodes.

The session's stack (conftest.py: the dev stack as a `local` stack) declares the TFJob of 1 chief,
2 workers with a GPU each and 1 parameter server; the training operator in the cluster creates
its pods and headless Services, and the trainer image trains on the sample of real digits it
carries (mnist.dataUrl). Part-way through, a worker's and then the chief's process is killed
with SIGKILL from this machine, as a crash would end it: the kubelet restarts each container
(restartPolicy OnFailure), the chief resumes from its last checkpoint, and the job reaches
Succeeded by itself (no kwok stage marks pods on real nodes). TensorBoard then serves the
job's curves from the shared volume; a screenshot of them goes to docs/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from e2e.local_stack import ROOT, LocalStack, condition, tf_config
from kueue_state import copied_replicas, job_workloads, queued_as, workload_condition
from real_cluster import RealCluster, refuses_privileged_pods, restricted_dry_run, wait_for
from vocab.tfjob_api import OPERATOR_NAMESPACE

NAMESPACE = "mnist"
JOB = "distributed-mnist"
JOB_LABEL = "training.kubeflow.org/job-name"
PORT = 2222  # the operator's default, the TF_CONFIG addresses' port
# What the trainer reaches on these 5000 digits in the dev stack's 1000 steps; its own tests hold a
# 200-step run to 0.88 (tests/trainer).
ACCURACY_FLOOR = 0.9
TRAINING_TIMEOUT_S = 1500
# The job this module follows is the one `make up` starts: conftest.py runs this module first of
# the stack's tests, before the job can finish.
WATCHES_THE_STACKS_JOB = True
SCREENSHOT = ROOT / "docs" / "screenshots" / "tensorboard-scalars.png"


@dataclass
class Run:
    """What the test saw of the job from its start to its end."""

    pods: dict[str, dict[str, Any]]  # name -> the pod while the job trained
    services: dict[str, dict[str, Any]]  # name -> the spec of the job's Service, likewise
    killed: dict[str, str]  # replica ("worker-1", "chief-0") -> the pod UID whose process was killed
    logs: dict[str, str]  # pod name -> its log at the end (current container)
    previous_chief_log: str  # the chief's container that was killed
    job: dict[str, Any]  # the TFJob once finished
    pods_after: dict[str, dict[str, Any]]  # name -> pod, once finished
    # namespace -> what a server-side dry run of enforcing `restricted` there said while the job ran
    pod_security_dry_runs: dict[str, str]


def tfjob(real: RealCluster) -> dict[str, Any]:
    return real.get("tfjob", "-n", NAMESPACE, JOB)


def job_pods(real: RealCluster) -> dict[str, dict[str, Any]]:
    items = real.get("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={JOB}")["items"]
    return {p["metadata"]["name"]: p for p in items}


def log(real: RealCluster, pod: str, *args: str) -> str:
    return real.kubectl("logs", "-n", NAMESPACE, pod, "-c", "tensorflow", *args, check=False).stdout


def previous_log(real: RealCluster, pod: str) -> str:
    """The log of POD's container before its restart. Asked again for up to 30 s while the kubelet
    answers that it cannot retrieve it (seen once, 2026-12-07, right after the chief's restart);
    then what it last said, for the test to show."""
    deadline = time.monotonic() + 30
    while True:
        text = log(real, pod, "--previous")
        if not text.startswith("unable to retrieve container logs") or time.monotonic() > deadline:
            return text
        time.sleep(2)


def trainer_pid(uid: str) -> int:
    """The trainer process of the pod `uid`, found on this machine by its cgroup (kubelet cgroupRoot
    paths end in pod<uid>/<container>) and its command line."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cgroups = Path(f"/proc/{entry}/cgroup").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"pod{uid}/" in cgroups and command[:3] == [b"python", b"-m", b"trainer"]:
            found.append(int(entry))
    assert len(found) == 1, f"not one trainer process in pod {uid}: {found}"
    return found[0]


def kill_when(real: RealCluster, pod: str, pattern: str, what: str) -> str:
    """SIGKILL the trainer of `pod` once its chief's log matches `pattern`; the pod's UID."""
    chief = f"{JOB}-chief-0"
    wait_for(lambda: re.search(pattern, log(real, chief), re.MULTILINE), TRAINING_TIMEOUT_S, what, interval=3)
    uid = real.get("pod", "-n", NAMESPACE, pod)["metadata"]["uid"]
    os.kill(trainer_pid(uid), signal.SIGKILL)
    return uid


def restarted(real: RealCluster, pod: str) -> bool:
    status = real.get("pod", "-n", NAMESPACE, pod)["status"]
    container = next((c for c in status.get("containerStatuses", []) if c["name"] == "tensorflow"), {})
    return container.get("restartCount", 0) >= 1


@pytest.fixture(scope="module")
def run(stack: LocalStack, real: RealCluster) -> Run:
    """The stack's job from its first pod to Succeeded, with a worker and the chief killed on the way."""
    names = {f"{JOB}-chief-0", f"{JOB}-worker-0", f"{JOB}-worker-1", f"{JOB}-ps-0"}

    def running() -> dict[str, dict[str, Any]] | None:
        pods = job_pods(real)
        return pods if set(pods) == names and all(p["status"].get("phase") == "Running" for p in pods.values()) else None

    pods = wait_for(running, 600, "the job's four pods Running", interval=2)
    dry_runs = {}
    for namespace in (NAMESPACE, OPERATOR_NAMESPACE):
        dry_runs[namespace] = restricted_dry_run(real, namespace)
    services = {s["metadata"]["name"]: s["spec"]
                for s in real.get("services", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={JOB}")["items"]}
    killed = {}
    # A worker, once the chief has evaluated once: the coordinator re-runs its steps elsewhere
    # and takes it back when it is up again.
    killed["worker-1"] = kill_when(real, f"{JOB}-worker-1", r"^Accuracy at step \d+", "the chief's first evaluation")
    wait_for(lambda: restarted(real, f"{JOB}-worker-1"), 120, "the killed worker's container restarted")
    # The chief, once it has saved a checkpoint after the worker came back.
    saved = len(re.findall(r"^Saved checkpoint at step", log(real, f"{JOB}-chief-0"), re.MULTILINE))
    killed["chief-0"] = kill_when(real, f"{JOB}-chief-0", rf"^(?:.*\n)*?(?:Saved checkpoint at step.*\n(?:.*\n)*?){{{saved + 1}}}",
                                  "a checkpoint after the worker's restart")
    wait_for(lambda: restarted(real, f"{JOB}-chief-0"), 120, "the killed chief's container restarted")
    # Now, while the new container runs: once it ends, the kubelet keeps only one dead container.
    previous_chief_log = previous_log(real, f"{JOB}-chief-0")
    def finished() -> dict[str, Any] | None:
        job = tfjob(real)
        return job if condition(job, "Succeeded") or condition(job, "Failed") else None

    job = wait_for(finished, TRAINING_TIMEOUT_S, "the TFJob finished", interval=5)

    def settled() -> dict[str, dict[str, Any]] | None:
        # The workers and PS exit at the chief's marker, or the operator removes them, a moment
        # after the job's status says Succeeded.
        pods = job_pods(real)
        return pods if not any(p["status"].get("phase") == "Running" for p in pods.values()) else None

    pods_after = wait_for(settled, 120, "no replica of the finished job Running", interval=2)
    logs = {name: log(real, name) for name in pods_after}
    return Run(pods, services, killed, logs, previous_chief_log, job, pods_after, dry_runs)


def test_the_training_and_operator_namespaces_enforce_restricted_and_their_pods_meet_it(run: Run, real: RealCluster) -> None:
    """While the four replicas, TensorBoard and the operator ran, enforcing `restricted` on their
    namespaces warned of no pod; a privileged pod is refused in both."""
    for namespace, said in run.pod_security_dry_runs.items():
        assert "warning" not in said.lower(), f"{namespace}: {said}"
        labels = real.get("namespace", namespace)["metadata"]["labels"]
        assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", (namespace, labels)
        assert refuses_privileged_pods(real, namespace), f"{namespace} admits a privileged pod"


def test_four_pods_on_the_real_nodes_reach_each_other_by_the_operators_services(run: Run, real: RealCluster) -> None:
    by_role = {name.removeprefix(f"{JOB}-"): pod for name, pod in run.pods.items()}
    for role, pod in by_role.items():
        assert pod["spec"]["nodeName"].startswith("real-"), (role, pod["spec"]["nodeName"])
        assert pod["spec"]["containers"][0]["image"].startswith("docker.io/mlplatform/trainer:") or \
            pod["spec"]["containers"][0]["image"].startswith("mlplatform/trainer:"), pod["spec"]["containers"][0]["image"]
    for role in ("worker-0", "worker-1"):
        assert by_role[role]["spec"]["nodeName"] == "real-gpu-0", "the workers ask for a GPU"
        assert by_role[role]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cluster = tf_config(by_role["chief-0"])["cluster"]
    assert cluster == {
        kind: [f"{JOB}-{kind}-{i}.{NAMESPACE}.svc:{PORT}" for i in range(n)]
        for kind, n in (("chief", 1), ("worker", 2), ("ps", 1))
    }, cluster
    for role, pod in by_role.items():
        kind, index = role.rsplit("-", 1)
        assert tf_config(pod)["task"] == {"type": kind, "index": int(index)}, role
    assert set(run.services) == set(run.pods), "one headless Service per replica"
    assert all(s["clusterIP"] == "None" and s["ports"][0]["port"] == PORT for s in run.services.values()), run.services


def test_the_chief_reports_accuracy_above_the_floor(run: Run) -> None:
    chief = run.logs[f"{JOB}-chief-0"]
    accuracies = [float(a) for a in re.findall(r"^Accuracy at step \d+: ([0-9.]+)$", chief, re.MULTILINE)]
    assert accuracies and accuracies[-1] >= ACCURACY_FLOOR, chief[-3000:]


def test_the_job_succeeds_by_itself_and_leaves_no_replica_running(run: Run) -> None:
    assert condition(run.job, "Succeeded"), run.job.get("status")
    assert run.job["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    chief = run.pods_after[f"{JOB}-chief-0"]
    assert chief["status"]["phase"] == "Succeeded", chief["status"]
    # The workers and the PS exited at the chief's completion marker, or the operator removed them.
    assert [name for name, p in run.pods_after.items() if p["status"].get("phase") == "Running"] == []


def test_clean_pod_policy_running_removes_a_ps_that_still_runs(run: Run, real: RealCluster) -> None:
    """The stack's PS exits by itself at the marker; one that does not is removed by the operator
    once the chief succeeds. The job is the stack's, with its pods' commands replaced."""
    job = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
           "metadata": {"name": "clean-pods", "namespace": NAMESPACE, "labels": queued_as(run.job)},
           "spec": {"runPolicy": {"cleanPodPolicy": "Running"}, "tfReplicaSpecs": {}}}
    # The PS sleeps until its SIGTERM, and then ends as the trainer does (as PID 1 without a handler it
    # would hold its removal for the whole grace period, 30 s).
    commands = {"Chief": "import time; time.sleep(10)",
                "PS": "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)); time.sleep(3600)"}
    for kind, command in commands.items():
        spec = copied_replicas(run.job["spec"]["tfReplicaSpecs"])[kind]
        container = spec["template"]["spec"]["containers"][0]
        container.update(command=["python", "-c", command], args=[])
        job["spec"]["tfReplicaSpecs"][kind] = {**spec, "replicas": 1, "restartPolicy": "Never"}
    real.apply(job)
    try:
        ps = wait_for(lambda: real.get("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}=clean-pods,"
                                       "training.kubeflow.org/replica-type=ps")["items"], 180, "the PS pod created")
        assert ps[0]["spec"]["containers"][0]["command"][-1] == commands["PS"]
        wait_for(lambda: condition(real.get("tfjob", "-n", NAMESPACE, "clean-pods"), "Succeeded"), 300,
                 "the chief done and the job Succeeded")
        wait_for(lambda: not real.get("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}=clean-pods,"
                                      "training.kubeflow.org/replica-type=ps")["items"], 120,
                 "the still-running PS removed by cleanPodPolicy Running")
        chief = real.get("pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}=clean-pods,training.kubeflow.org/replica-type=chief")
        assert [p["status"]["phase"] for p in chief["items"]] == ["Succeeded"], "the chief's pod stays"
        if queued_as(run.job):
            # Queued, the job's Workload ends with it, its quota back: the PS the operator stopped
            # (exit 143) holds nothing (under Kueue's pod groups it held the group, docs/training.md).
            def finished() -> dict[str, Any] | None:
                workloads = job_workloads(real, "clean-pods", NAMESPACE)
                done = workloads and workload_condition(workloads[0], "Finished")
                return workloads[0] if done and done["status"] == "True" else None

            workload = wait_for(finished, 60, "the Workload of clean-pods Finished")
            assert workload_condition(workload, "Finished")["reason"] == "Succeeded", workload["status"]
    finally:
        real.kubectl("delete", "tfjob", "-n", NAMESPACE, "clean-pods", "--wait=false", check=False)


def test_a_killed_worker_is_restarted_and_the_job_goes_on(run: Run) -> None:
    worker = run.pods[f"{JOB}-worker-1"]
    assert worker["metadata"]["uid"] == run.killed["worker-1"], "the kubelet restarted it in its pod"
    # The worker's new process joined the cluster again (its server logs its start).
    assert condition(run.job, "Succeeded")


def test_a_killed_chief_resumes_from_its_checkpoint(run: Run) -> None:
    saved = [int(s) for s in re.findall(r"^Saved checkpoint at step (\d+)$", run.previous_chief_log, re.MULTILINE)]
    assert saved, run.previous_chief_log[-3000:]
    restored = re.search(r"^Restored checkpoint at step (\d+) ", run.logs[f"{JOB}-chief-0"], re.MULTILINE)
    assert restored and int(restored.group(1)) == saved[-1], run.logs[f"{JOB}-chief-0"][:3000]


def scalars(port: int, path: str, **query: str) -> Any:
    url = f"http://127.0.0.1:{port}/data/plugin/scalars/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def tensorboard(run: Run, real: RealCluster) -> Iterator[int]:
    with real.port_forward("svc/tensorboard", 6006, namespace=NAMESPACE) as port:
        yield port


def test_tensorboard_serves_the_jobs_loss_and_accuracy(tensorboard: int) -> None:
    # TensorBoard rescans its log directory every 5 s; the job's last summaries may be newer.
    def tags() -> dict[str, Any] | None:
        found = scalars(tensorboard, "tags")
        names = {tag for run_tags in found.values() for tag in run_tags}
        return found if {"loss", "accuracy"} <= names else None

    found = wait_for(tags, 60, "TensorBoard's runs with loss and accuracy")
    for tag in ("loss", "accuracy"):
        (run_name,) = [r for r, run_tags in found.items() if tag in run_tags]
        series = scalars(tensorboard, "scalars", run=run_name, tag=tag)  # [[wall time, step, value], ...]
        steps = [step for _, step, _ in series]
        # One point per evaluation (every 100 steps of the test stack's 400) at least.
        assert len(series) >= 4 and steps == sorted(steps), (tag, series)
        if tag == "accuracy":
            assert series[-1][2] >= ACCURACY_FLOOR, series
        else:
            assert series[-1][2] < series[0][2], f"the loss went down: {series}"


def test_a_screenshot_of_the_curves(tensorboard: int, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "node is needed for the browser (tests/hub/setup.sh)"
    shot = tmp_path / "tensorboard.png"
    out = subprocess.run([node, str(ROOT / "tests" / "hub" / "screenshot.mjs"),
                          f"http://127.0.0.1:{tensorboard}/?smoothing=0#timeseries", str(shot), "canvas, svg.line-chart, .line-chart",
                          # Tall enough for both cards, and the settings pane put away as a user would.
                          "1200", "1250", '[aria-label="Toggle settings side pane"]'],
                         cwd=ROOT / "tests" / "hub", capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert shot.stat().st_size > 10_000, "a page with curves, not an empty one"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, SCREENSHOT)
