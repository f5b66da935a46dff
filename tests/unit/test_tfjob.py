"""TFJobs: the CRD, the typed TFJob, TF_CONFIG by the operator's rules, and DistributedMnist's topology."""

from __future__ import annotations

import copy
import json

import pytest

from components.tfjob import ReplicaSpec, RunPolicy, TFJobError, TFJobSpec
from program import example_stack, run_program
from stacks import parse
from validation import Invalid, validate

TFJOB = "kubernetes:kubeflow.org/v1:TFJob"
GPU_POOLS = {
    "provider": "kwok",
    "nodePools": [
        {"name": "cpu"},
        {"name": "gpu", "count": 3, "gpusPerNode": 2, "taints": ["nvidia.com/gpu=present:NoSchedule"]},
    ],
}

# An upstream-style TFJob, written by hand as the Kubeflow examples write them.
UPSTREAM_TFJOB = {
    "apiVersion": "kubeflow.org/v1",
    "kind": "TFJob",
    "metadata": {"name": "dist-mnist-for-e2e-test", "namespace": "kubeflow"},
    "spec": {
        "runPolicy": {"cleanPodPolicy": "None"},
        "tfReplicaSpecs": {
            "PS": {
                "replicas": 2,
                "restartPolicy": "Never",
                "template": {"spec": {"containers": [{"name": "tensorflow", "image": "kubeflow/tf-dist-mnist-test:1.0"}]}},
            },
            "Worker": {
                "replicas": 4,
                "restartPolicy": "ExitCode",
                "template": {
                    "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "tensorflow",
                                "image": "kubeflow/tf-dist-mnist-test:1.0",
                                "ports": [{"name": "tfjob-port", "containerPort": 2222}],
                                "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}},
                            }
                        ]
                    },
                },
            },
        },
    },
}


def tfjob_of(deployment):
    (job,) = deployment.of_type(TFJOB)
    return job.manifest()


def test_upstream_style_tfjob_is_valid_against_our_crd():
    validate(UPSTREAM_TFJOB)


def broken(path, value):
    job = copy.deepcopy(UPSTREAM_TFJOB)
    node = job
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return job


def renamed(job, names):
    """`job` with its replica types renamed as `names` says (old -> new)."""
    job = copy.deepcopy(job)
    specs = job["spec"]["tfReplicaSpecs"]
    job["spec"]["tfReplicaSpecs"] = {names.get(k, k): v for k, v in specs.items()}
    return job


PS_SPEC = UPSTREAM_TFJOB["spec"]["tfReplicaSpecs"]["PS"]


# TFJobs the upstream operator (v1.9 line) admits (its CRD declares these as free strings and
# integers, its webhook checks names, containers and Chief/Master only, and its defaulting
# renames lowercase replica types): our CRD must admit them too, or clients that write them break.
@pytest.mark.parametrize(
    "job",
    [
        pytest.param(renamed(UPSTREAM_TFJOB, {"PS": "ps", "Worker": "worker"}), id="lowercase-types"),
        pytest.param(renamed(UPSTREAM_TFJOB, {"Worker": "WORKER"}), id="uppercase-type"),
        pytest.param(broken(("spec", "tfReplicaSpecs", "chief"), PS_SPEC), id="lowercase-chief"),
        pytest.param(broken(("spec", "tfReplicaSpecs", "Worker", "restartPolicy"), ""), id="empty-restart-policy-defaulted"),
        pytest.param(broken(("spec", "runPolicy", "cleanPodPolicy"), ""), id="empty-clean-pod-policy"),
        pytest.param(broken(("spec", "successPolicy"), ""), id="empty-success-policy"),
        pytest.param(broken(("spec", "tfReplicaSpecs", "Chief"), {**PS_SPEC, "replicas": 2}), id="two-chiefs-unchecked-upstream"),
        pytest.param(broken(("spec", "runPolicy"), {}), id="empty-run-policy"),
    ],
)
def test_the_crd_admits_what_the_upstream_operator_admits(job):
    validate(job)


# What the upstream CRD or webhook refuses, the CRD refuses too (it stands in for the webhook
# where the API server cannot reach the operator).
@pytest.mark.parametrize(
    ("job", "words"),
    [
        (broken(("spec", "tfReplicaSpecs", "Worker", "replicas"), "two"), "not of type 'integer'"),
        (broken(("spec", "runPolicy", "cleanupPolicy"), "Running"), "Additional properties"),
        (broken(("spec", "runPolicy", "managedBy"), "someone-else"), "is not one of"),
        (broken(("spec", "tfReplicaSpecs", "Worker", "template", "spec", "containers"), [{"name": "tensorflow", "image": "x:1", "imagePullPolicy": 3}]), "not of type 'string'"),
        (broken(("spec", "tfReplicaSpecs", "Worker", "template", "spec", "nodeSelektor"), {"a": "b"}), "Additional properties"),
    ],
)
def test_invalid_tfjobs_are_rejected_by_the_crd(job, words):
    with pytest.raises(Invalid, match=words):
        validate(job)


def test_chief_and_master_together_are_rejected_by_the_crd():
    job = broken(("spec", "tfReplicaSpecs", "Chief"), {"replicas": 1})
    validate(job)  # a Chief beside PS and Workers is fine
    job["spec"]["tfReplicaSpecs"]["Master"] = {"replicas": 1}
    with pytest.raises(Invalid, match="more than 1 Chief or Master"):
        validate(job)


def spec_with(**replicas) -> TFJobSpec:
    template = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:1"}]}}
    return TFJobSpec(
        name="mnist", namespace="ml", replica_specs={k: ReplicaSpec(n, template) for k, n in replicas.items()}
    )


def test_tf_config_follows_the_operators_rules():
    spec = spec_with(Master=1, Worker=2, PS=1)
    config = json.loads(spec.tf_configs()["mnist-worker-1"])
    assert config == {
        "cluster": {
            "master": ["mnist-master-0.ml.svc:2222"],
            "worker": ["mnist-worker-0.ml.svc:2222", "mnist-worker-1.ml.svc:2222"],
            "ps": ["mnist-ps-0.ml.svc:2222"],
        },
        "task": {"type": "worker", "index": 1},
        "environment": "cloud",
    }


def test_a_single_process_job_gets_no_tf_config():
    assert spec_with(Worker=1).tf_configs() == {}


def test_a_named_tfjob_port_is_used_in_the_cluster_spec():
    template = {"spec": {"containers": [{"name": "tensorflow", "image": "tf:1", "ports": [{"name": "tfjob-port", "containerPort": 3333}]}]}}
    spec = TFJobSpec(name="j", namespace="n", replica_specs={"Worker": ReplicaSpec(2, template)})
    assert spec.cluster_spec() == {"worker": ["j-worker-0.n.svc:3333", "j-worker-1.n.svc:3333"]}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (spec_with(Chief=1, Master=1), "more than 1 Chief or Master"),
        (spec_with(Chief=2), "a TFJob has one Chief"),
        (spec_with(Launcher=1), "unknown replica type"),
        (TFJobSpec("Bad_Name", "ml", {"Worker": ReplicaSpec(1, {"spec": {"containers": [{"name": "tensorflow", "image": "x:1"}]}})}), "DNS-1035"),
        (TFJobSpec("mnist", "ml", {"Worker": ReplicaSpec(1, {"spec": {"containers": [{"name": "trainer", "image": "x:1"}]}})}), "named 'tensorflow'"),
        (TFJobSpec("mnist", "ml", {"Worker": ReplicaSpec(1, {"spec": {"containers": [{"name": "tensorflow"}]}})}), r"image: required"),
        (TFJobSpec("mnist", "ml", {"Worker": ReplicaSpec(1, {"spec": {"containers": [{"name": "tensorflow", "image": "x:1"}]}}, "Sometimes")}), "restartPolicy"),
        # Stricter than the CRD: the stack's own job spells what it means.
        (spec_with(worker=2), r"tfReplicaSpecs\[worker\]: write the replica type as 'Worker'"),
        (spec_with(Worker=-1), r"replicas: -1 must be >= 0"),
        (TFJobSpec("mnist", "ml", spec_with(Worker=1).replica_specs, RunPolicy(clean_pod_policy="Succeeded")), "cleanPodPolicy: 'Succeeded'"),
        (TFJobSpec("mnist", "ml", spec_with(Worker=1).replica_specs, RunPolicy(backoff_limit=-2)), r"backoffLimit: -2 must be >= 0"),
        (TFJobSpec("mnist", "ml", spec_with(Worker=1).replica_specs, RunPolicy(active_deadline_seconds=0)), r"activeDeadlineSeconds: 0 must be >= 1"),
    ],
)
def test_typed_tfjob_refuses_what_the_webhook_would(spec, words):
    with pytest.raises(TFJobError, match=words):
        spec.validate()


def test_dev_stack_tfjob_is_the_tutorial_topology_with_cleanup_of_running_pods():
    deployment = run_program(example_stack("dev"))
    job = tfjob_of(deployment)
    replicas = {k: v["replicas"] for k, v in job["spec"]["tfReplicaSpecs"].items()}
    assert replicas == {"Chief": 1, "Worker": 2, "PS": 1}
    assert job["spec"]["runPolicy"]["cleanPodPolicy"] == "Running"
    assert set(deployment.outputs["tfConfig"]) == {
        "distributed-mnist-chief-0",
        "distributed-mnist-worker-0",
        "distributed-mnist-worker-1",
        "distributed-mnist-ps-0",
    }


def pods(job):
    return {kind: spec["template"]["spec"] for kind, spec in job["spec"]["tfReplicaSpecs"].items()}


TOPOLOGIES = [
    # (replicas, gpus, expected replica counts)
    ({"Chief": 1, "Worker": 2, "PS": 1}, {}, {"Chief": 1, "Worker": 2, "PS": 1}),
    ({"Master": 1, "Worker": 2, "PS": 1}, {}, {"Master": 1, "Worker": 2, "PS": 1}),
    ({"Chief": 0, "PS": 0, "Worker": 4}, {}, {"Worker": 4}),
    ({"Chief": 1, "Worker": 3, "PS": 0}, {"Worker": 1}, {"Chief": 1, "Worker": 3}),
    ({"Chief": 1, "Worker": 2, "PS": 1}, {"Chief": 2, "Worker": 2}, {"Chief": 1, "Worker": 2, "PS": 1}),
]


@pytest.mark.parametrize(("replicas", "gpus", "expected"), TOPOLOGIES)
def test_topology_table(replicas, gpus, expected):
    config = {"cluster": GPU_POOLS, "mnist": {"replicas": replicas, "gpus": gpus, "batchSize": 96}}
    job = tfjob_of(run_program(config))
    assert {k: v["replicas"] for k, v in job["spec"]["tfReplicaSpecs"].items()} == expected
    for kind, pod in pods(job).items():
        container = pod["containers"][0]
        want = gpus.get(kind, 0)
        limits = container["resources"]["limits"]
        if want:
            assert limits["nvidia.com/gpu"] == str(want), kind
            assert pod["nodeSelector"] == {"mlplatform.dev/pool": "gpu"}, kind
            assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in pod["tolerations"]
            assert container["image"].endswith("-gpu"), kind
        else:
            assert "nvidia.com/gpu" not in limits, kind
            assert pod["nodeSelector"] == {"mlplatform.dev/pool": "cpu"}, f"{kind} must stay off GPU nodes"
            assert "tolerations" not in pod, kind
        assert container["name"] == "tensorflow"
        assert {"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"} in container["ports"]


def test_ps_never_lands_on_gpu_nodes_even_without_a_cpu_pool():
    config = {"cluster": {"nodePools": [{"name": "gpu", "count": 2, "gpusPerNode": 1}]}, "mnist": {"gpus": {"Worker": 1}}}
    ps = pods(tfjob_of(run_program(config)))["PS"]
    term = ps["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0] == {"key": "mlplatform.dev/pool", "operator": "NotIn", "values": ["gpu"]}


def test_a_change_of_worker_count_updates_the_same_tfjob():
    before = run_program({"mnist": {"replicas": {"Worker": 2}}})
    after = run_program({"mnist": {"replicas": {"Worker": 3}}})
    (old,), (new,) = before.of_type(TFJOB), after.of_type(TFJOB)
    # Same resource and object name: the engine updates it in place (proven for real in the e2e tests).
    assert (old.name, old.inputs["metadata"]["name"]) == (new.name, new.inputs["metadata"]["name"])
    assert new.inputs["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 3


def test_run_policy_from_config():
    config = {"mnist": {"runPolicy": {"backoffLimit": 5, "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 600}}}
    policy = tfjob_of(run_program(config))["spec"]["runPolicy"]
    assert policy == {"cleanPodPolicy": "Running", "backoffLimit": 5, "activeDeadlineSeconds": 7200, "ttlSecondsAfterFinished": 600}


@pytest.mark.parametrize("restart_policy", ["Always", "OnFailure", "Never", "ExitCode"])
def test_restart_policy_from_config_on_every_replica(restart_policy):
    replicas = tfjob_of(run_program({"mnist": {"restartPolicy": restart_policy}}))["spec"]["tfReplicaSpecs"]
    assert {kind: spec["restartPolicy"] for kind, spec in replicas.items()} == dict.fromkeys(replicas, restart_policy)
    assert set(replicas) == {"Chief", "Worker", "PS"}


def test_the_default_run_policy_reaches_the_tfjob():
    assert tfjob_of(run_program({}))["spec"]["runPolicy"] == {"cleanPodPolicy": "Running", "backoffLimit": 3}


def test_backoff_limit_with_never_is_allowed_when_left_at_its_default():
    # Only a backoffLimit the user wrote is refused with Never (test_config.py): the default is not theirs.
    assert parse({"mnist": {"restartPolicy": "Never"}}).mnist.run_policy.backoff_limit == 3


def test_active_deadline_is_every_pods_deadline_too():
    """The operator re-checks the job's deadline only when woken (kubeflow/trainer#3358): each pod's
    own deadline, which the kubelet enforces, wakes it."""
    replicas = tfjob_of(run_program({"mnist": {"runPolicy": {"activeDeadlineSeconds": 600}}}))["spec"]["tfReplicaSpecs"]
    assert {kind: r["template"]["spec"].get("activeDeadlineSeconds") for kind, r in replicas.items()} == dict.fromkeys(replicas, 600)
    without = tfjob_of(run_program({}))["spec"]["tfReplicaSpecs"]
    assert [kind for kind, r in without.items() if "activeDeadlineSeconds" in r["template"]["spec"]] == []


def test_stock_image_runs_the_trainer_from_a_config_map():
    deployment = run_program(example_stack("dev"))
    code = deployment.named("mnist-trainer-code")
    assert "__main__.py" in code.inputs["data"]
    chief = pods(tfjob_of(deployment))["Chief"]
    container = chief["containers"][0]
    # The dev stack runs the local build that stands in for the stock TensorFlow image (images.local).
    assert container["image"] == parse(example_stack("dev")).images.tensorflow
    assert container["command"] == ["python", "-m", "trainer"]
    assert {"name": "PYTHONPATH", "value": "/opt/mlplatform"} in container["env"]
    assert {"name": "trainer-code", "configMap": {"name": "distributed-mnist-trainer"}} in chief["volumes"]


def test_a_given_image_is_used_and_no_code_is_mounted():
    deployment = run_program({"mnist": {"image": {"reference": "registry.example.com/mnist:1.2"}}})
    assert not [r for r in deployment.resources if r.name == "mnist-trainer-code"]
    chief = pods(tfjob_of(deployment))["Chief"]
    assert chief["containers"][0]["image"] == "registry.example.com/mnist:1.2"


def test_built_images_are_pushed_and_run_by_digest():
    deployment = run_program({"mnist": {"image": {"build": True, "repository": "registry.example.com/mnist", "tag": "v1"}}})
    builds = {r.name: r.inputs for r in deployment.of_type("docker-build:index:Image")}
    assert builds["trainer-image-cpu"]["tags"] == ["registry.example.com/mnist:v1"]
    assert builds["trainer-image-gpu"]["tags"] == ["registry.example.com/mnist:v1-gpu"]
    assert builds["trainer-image-gpu"]["dockerfile"]["location"].endswith("trainer/Dockerfile.gpu")
    assert builds["trainer-image-cpu"]["push"] is True
    assert builds["trainer-image-cpu"]["context"]["location"].endswith("/trainer")
    chief = pods(tfjob_of(deployment))["Chief"]
    assert chief["containers"][0]["image"].startswith("registry.example.com/mnist@sha256:")


def test_tensorboard_reads_the_shared_logs_and_exports_a_port_forward():
    deployment = run_program(example_stack("dev"))
    board = deployment.named("mnist-tensorboard").inputs
    pod = board["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command == ["tensorboard", "--logdir", "/data/logs", "--port", "6006", "--bind_all"]
    assert pod["volumes"][0] == {"name": "data", "persistentVolumeClaim": {"claimName": "distributed-mnist-data", "readOnly": True}}
    service = deployment.named("mnist-tensorboard-svc").inputs
    assert service["spec"]["type"] == "ClusterIP"
    assert deployment.outputs["tensorboard"].startswith("kubectl port-forward -n mnist svc/tensorboard 6006:6006")
    assert deployment.outputs["watchTraining"] == "kubectl get pods -n mnist -l training.kubeflow.org/job-name=distributed-mnist -w"


def test_shared_volume_is_pre_bound_on_the_simulated_cluster():
    deployment = run_program(example_stack("kwok"))
    volume = deployment.named("mlplatform-pv-mnist-distributed-mnist-data")
    assert volume.inputs["spec"]["claimRef"] == {"namespace": "mnist", "name": "distributed-mnist-data"}
    claim = deployment.named("mnist-data").inputs
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
