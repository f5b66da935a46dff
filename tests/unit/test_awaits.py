"""What `pulumi up` waits for: every Service either waits itself or fronts a Deployment that is
waited for, and a deploy still waits where something depends on it (components/k8s.py,
service_await; docs/benchmarks.md has what the waits cost)."""

from __future__ import annotations

import functools

import pytest

from program import aks_stack, example_stack, run_program

SERVICE = "kubernetes:core/v1:Service"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SKIP_AWAIT = "pulumi.com/skipAwait"
WAIT_FOR = "pulumi.com/waitFor"


def annotations(resource) -> dict[str, str]:
    return resource.inputs["metadata"].get("annotations") or {}


@functools.cache
def built(stack: str):
    """The example stack's program under mocks, built once for the whole module."""
    config, secrets = aks_stack() if stack == "aks" else (example_stack(stack), ())
    return run_program(config, secrets)


@pytest.fixture(params=["dev", "kwok", "aks"])
def deployment(request):
    return built(request.param)


def selects(service, deployment) -> bool:
    """Whether `deployment`'s pods carry every label of `service`'s selector, in its namespace."""
    meta, spec = service.inputs["metadata"], service.inputs["spec"]
    template = deployment.inputs["spec"]["template"]["metadata"]["labels"]
    same_namespace = deployment.inputs["metadata"]["namespace"] == meta["namespace"]
    return same_namespace and all(template.get(k) == v for k, v in (spec.get("selector") or {}).items())


def test_no_deployment_skips_its_wait(deployment):
    """The Deployments' waits (each replica Ready and Available) are what the Services rely on."""
    skipping = [d.name for d in deployment.of_type(DEPLOYMENT) if SKIP_AWAIT in annotations(d) or WAIT_FOR in annotations(d)]
    assert skipping == []


def test_a_service_skips_its_wait_only_in_front_of_a_deployment_that_is_waited_for(deployment):
    deployments = deployment.of_type(DEPLOYMENT)
    for service in deployment.of_type(SERVICE):
        if SKIP_AWAIT in annotations(service) or WAIT_FOR in annotations(service):
            assert any(selects(service, d) for d in deployments), f"{service.name} skips its wait, and no Deployment selects its pods"


def test_a_load_balancer_still_waits_for_its_address():
    config = example_stack("dev")
    config["jupyterhub"] = {**config["jupyterhub"], "serviceType": "LoadBalancer"}
    public = run_program(config).named("jupyterhub-proxy-public")
    assert SKIP_AWAIT not in annotations(public)
    assert annotations(public)[WAIT_FOR] == "jsonpath={.status.loadBalancer.ingress}"


def test_cluster_ip_services_in_front_of_deployments_skip_the_providers_wait():
    deployment = built("dev")
    for name in ("jupyterhub-hub-service", "jupyterhub-proxy-api", "jupyterhub-proxy-public", "mnist-tensorboard-svc"):
        assert annotations(deployment.named(name)).get(SKIP_AWAIT) == "true", f"{name} waits for its endpoints to settle"


def test_the_webhooks_service_keeps_its_wait_where_the_tfjob_needs_the_webhook():
    """The API server calls the operator's webhook to admit the TFJob: on a cluster with the
    webhook (not kwok's), its Service waits for its endpoints before the TFJob is created."""
    for stack in ("dev", "aks"):
        service = built(stack).named("training-operator-svc")
        assert SKIP_AWAIT not in annotations(service) and WAIT_FOR not in annotations(service), stack
    assert annotations(built("kwok").named("training-operator-svc")).get(SKIP_AWAIT) == "true"

