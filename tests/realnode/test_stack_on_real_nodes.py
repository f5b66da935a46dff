"""The dev stack as a `local` stack (cluster.provider local) on the real nodes: `make up` deploys it
with the real engine and its pods run for real (issues 12 and 14).

The stack is the dev stack's config with `cluster.provider: local`, pointed at this session's real
cluster, with its own Pulumi backend and home (tests/e2e/local_stack.py). `make up` finds the
cluster running and its nodes made; the hub, the proxy, the training operator (in the cluster, its
webhook served to the API server over the pod network) and TensorBoard run in containers on the
real nodes. The stack is deployed once per session (conftest.py) for every test that uses it.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request

from e2e.local_stack import LocalStack
from real_cluster import RealCluster, wait_for

DEPLOYMENTS = {"jupyterhub": ("hub", "proxy"), "kubeflow": ("training-operator",), "mnist": ("tensorboard",)}


def test_make_up_runs_the_stack_in_containers_on_the_real_nodes(stack: LocalStack, real: RealCluster) -> None:
    nodes = {n["metadata"]["name"] for n in real.get("nodes")["items"]}
    assert nodes == {s.spec.name for s in real.nodes()}, f"a local stack declares no nodes of its own: {nodes}"
    for namespace, names in DEPLOYMENTS.items():
        for name in names:
            status = real.get("deployment", "-n", namespace, name)["status"]
            assert status.get("availableReplicas") == 1, (namespace, name, status)
        for pod in real.get("pods", "-n", namespace)["items"]:
            if pod["status"].get("phase") == "Running":
                assert pod["spec"]["nodeName"].startswith("real-"), pod["spec"]["nodeName"]
                assert all(c["ready"] for c in pod["status"]["containerStatuses"]), pod["status"]
    assert "bin/training-operator" not in stack.up_run.output, "a local stack's operator runs in the cluster"


def test_the_hub_answers_through_the_proxy_over_https(stack: LocalStack, real: RealCluster) -> None:
    """As the stack's `jupyterhub` output says: a port-forward to proxy-public, https with the stack's CA."""
    command = json.loads(stack.pulumi("stack", "output", "--json").stdout)["jupyterhub"]
    assert "port-forward" in command and "proxy-public" in command, command
    secret = real.get("secret", "-n", "jupyterhub", "proxy-public-tls")
    ca = base64.b64decode(secret["data"]["ca.crt"]).decode()
    with real.port_forward("svc/proxy-public", 443, namespace="jupyterhub") as port:
        context = ssl.create_default_context(cadata=ca)

        def health() -> bool:
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/hub/health", context=context, timeout=10) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(health, 60, "the hub's /hub/health through proxy-public")
        with urllib.request.urlopen(f"https://localhost:{port}/hub/login", context=context, timeout=10) as r:
            assert 'name="username"' in r.read().decode(), "the hub's login form"


def test_the_operators_webhook_refuses_a_bad_tfjob(stack: LocalStack, real: RealCluster) -> None:
    """The API server calls the operator's webhook in its pod (through the egress proxy): a TFJob the
    CRD's own rules let through (no container named tensorflow) is refused by the operator."""
    job = {
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob",
        "metadata": {"name": "no-tensorflow-container", "namespace": "mnist"},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1, "template": {"spec": {
            "containers": [{"name": "trainer", "image": "mlplatform.local/none:1"}]}}}}},
    }
    out = real.kubectl("apply", "-f", "-", input=json.dumps(job), check=False)
    assert out.returncode != 0, out.stdout
    assert "denied the request" in out.stderr and "validator.tfjob" in out.stderr, out.stderr
    # The stack's own job was let through.
    assert real.get("tfjob", "-n", "mnist")["items"], "the stack's TFJob was not admitted"
