"""DistributedMnist's pods and network: non-root, no token, isolated, TensorBoard from an image."""

from __future__ import annotations

import re

import pytest

from program import aks_stack, dev_stack_with_upstream_images, example_stack, run_program
from stacks import ConfigError, parse
from trainer.flags import SAMPLE_DATA_URL

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


def test_mnist_namespace_denies_ingress_and_egress_unless_a_policy_allows_it():
    found = policies(run_program(example_stack("dev")))
    assert found["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("stack", ["dev", "kwok", "aks"])
def test_the_training_namespace_enforces_the_restricted_pod_security_standard(stack):
    config, secrets = aks_stack() if stack == "aks" else (example_stack(stack), ())
    (namespace,) = [r.manifest() for r in run_program(config, secrets).of_type("kubernetes:core/v1:Namespace")
                    if r.inputs["metadata"]["name"] == "mnist"]
    labels = namespace["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == {"restricted"}
    assert re.fullmatch(r"v1\.\d+", labels["pod-security.kubernetes.io/enforce-version"]), labels


def test_replicas_reach_each_other_on_the_job_port_only():
    replicas = policies(run_program(example_stack("dev")))["replicas"]
    job = {"podSelector": {"matchLabels": {"training.kubeflow.org/job-name": "distributed-mnist"}}}
    assert replicas["podSelector"] == job["podSelector"]
    assert replicas["ingress"] == [{"from": [job], "ports": [{"protocol": "TCP", "port": 2222}]}]
    assert {"to": [job], "ports": [{"protocol": "TCP", "port": 2222}]} in replicas["egress"]
    assert not [rule for rule in replicas["egress"] if "ipBlock" in rule["to"][0]], "the dev stack's data is in its image"


def test_replicas_that_download_their_data_reach_the_internet_but_not_the_metadata_service():
    replicas = policies(run_program(dev_stack_with_upstream_images()))["replicas"]
    (internet,) = [rule for rule in replicas["egress"] if "ipBlock" in rule["to"][0]]
    assert internet["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "169.254.0.0/16" in internet["to"][0]["ipBlock"]["except"], "cloud metadata stays out of reach"


def test_the_trainer_takes_its_data_url_from_the_stack():
    for kind, pod in mnist_pods(run_program(example_stack("dev"))).items():
        if kind != "tensorboard":
            assert f"--data-url={SAMPLE_DATA_URL}" in pod["containers"][0]["args"], kind


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"mnist": {"dataUrl": "ftp://mirror.example.com/mnist.npz"}}, "must be an http(s):// URL or a file:///absolute/path"),
        ({"mnist": {"dataUrl": "file://host/mnist.npz"}}, "must be an http(s):// URL or a file:///absolute/path"),
        ({"mnist": {"dataUrl": SAMPLE_DATA_URL}, "images": {}}, "mnist.dataUrl: file:///app/sample/mnist.npz is a file in the trainer image"),
    ],
)
def test_a_data_url_the_pods_cannot_read_is_refused(changes, words):
    config = dev_stack_with_upstream_images()
    for key, value in changes.items():
        config[key] = {**config[key], **value} if value else value
    with pytest.raises(ConfigError, match=re.escape(words)):
        parse(config)


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
