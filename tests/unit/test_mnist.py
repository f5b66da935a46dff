"""DistributedMnist's pods and network: non-root, no token, isolated, TensorBoard from an image."""

from __future__ import annotations

import pytest

from program import aks_stack, example_stack, run_program

TFJOB = "kubernetes:kubeflow.org/v1:TFJob"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def stacks():
    yield pytest.param(example_stack("dev"), (), id="dev")
    config, secrets = aks_stack()
    yield pytest.param(config, secrets, id="aks")


def mnist_pods(deployment):
    """Every pod template of the mnist namespace: each TFJob replica type and TensorBoard."""
    (job,) = deployment.of_type(TFJOB)
    pods = {kind: spec["template"]["spec"] for kind, spec in job.manifest()["spec"]["tfReplicaSpecs"].items()}
    pods["tensorboard"] = deployment.named("mnist-tensorboard").manifest()["spec"]["template"]["spec"]
    return pods


@pytest.mark.parametrize(("config", "secrets"), list(stacks()))
def test_training_pods_run_as_non_root_with_default_seccomp_and_no_token(config, secrets):
    for name, pod in mnist_pods(run_program(config, secrets)).items():
        security = pod.get("securityContext", {})
        assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) > 0, name
        assert security.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"] + pod.get("initContainers", []):
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, f"{name}/{container['name']}"
            assert context.get("readOnlyRootFilesystem") is True, f"{name}/{container['name']}"
            assert context.get("capabilities") == {"drop": ["ALL"]}, f"{name}/{container['name']}"
            assert {"name": "scratch", "mountPath": "/tmp"} in container["volumeMounts"], f"{name}/{container['name']}"


def test_tensorboard_runs_from_an_image_without_installing_anything():
    stock = mnist_pods(run_program({}))["tensorboard"]
    assert "initContainers" not in stock, "nothing is installed from the internet at start"
    assert stock["containers"][0]["image"] == "quay.io/jupyter/tensorflow-notebook:2025-12-01"
    # The dev stack runs local builds: the trainer build stands in for the stock image and carries TensorBoard.
    dev = mnist_pods(run_program(example_stack("dev")))
    assert dev["tensorboard"]["containers"][0]["image"] == dev["Chief"]["containers"][0]["image"]
    config, secrets = aks_stack()  # builds the trainer image, which carries TensorBoard
    deployment = run_program(config, secrets)
    aks = mnist_pods(deployment)["tensorboard"]
    assert aks["containers"][0]["image"] == mnist_pods(deployment)["Chief"]["containers"][0]["image"]
    assert aks["containers"][0]["command"][0] == "tensorboard"


def policies(deployment):
    return {r.inputs["metadata"]["name"]: r.manifest()["spec"] for r in deployment.of_type(NETWORK_POLICY)
            if r.inputs["metadata"]["namespace"] == "mnist"}


def test_mnist_namespace_denies_ingress_unless_a_policy_allows_it():
    found = policies(run_program(example_stack("dev")))
    assert found["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress"]}


def test_replicas_reach_each_other_on_the_job_port_only():
    replicas = policies(run_program(example_stack("dev")))["replicas"]
    job = {"podSelector": {"matchLabels": {"training.kubeflow.org/job-name": "distributed-mnist"}}}
    assert replicas["podSelector"] == job["podSelector"]
    assert replicas["ingress"] == [{"from": [job], "ports": [{"protocol": "TCP", "port": 2222}]}]
    assert {"to": [job], "ports": [{"protocol": "TCP", "port": 2222}]} in replicas["egress"]
    internet = next(rule for rule in replicas["egress"] if "ipBlock" in rule["to"][0])
    assert "169.254.0.0/16" in internet["to"][0]["ipBlock"]["except"], "cloud metadata stays out of reach"


@pytest.mark.parametrize(
    ("tensorboard", "sources"),
    [
        ({"serviceType": "ClusterIP"}, []),
        ({"serviceType": "LoadBalancer", "loadBalancerSourceRanges": ["203.0.113.0/24"]}, [{"ipBlock": {"cidr": "203.0.113.0/24"}}]),
    ],
)
def test_only_chosen_sources_reach_tensorboard(tensorboard, sources):
    deployment = run_program({"mnist": {"tensorboard": tensorboard}})
    policy = policies(deployment)["tensorboard"]
    assert policy["podSelector"] == {"matchLabels": deployment.named("mnist-tensorboard").inputs["spec"]["selector"]["matchLabels"]}
    want = [{"from": sources, "ports": [{"protocol": "TCP", "port": 6006}]}] if sources else []
    assert policy["ingress"] == want
    assert policy["egress"] == [] and "Egress" in policy["policyTypes"], "TensorBoard connects nowhere"
    if sources:
        # The client's address must survive the load balancer for the policy to match it.
        assert deployment.named("mnist-tensorboard-svc").inputs["spec"]["externalTrafficPolicy"] == "Local"
