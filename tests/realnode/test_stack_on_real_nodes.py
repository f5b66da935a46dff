"""The dev stack as a `local` stack (cluster.provider local) on the real nodes: `make up` deploys it
with the real engine and its pods run for real (issues 12 and 14).

The stack is the dev stack's config with `cluster.provider: local`, pointed at this session's real
cluster, with its own Pulumi backend and home (tests/e2e/local_stack.py). `make up` finds the
cluster running and its nodes made; the hub, the proxy, the training operator (in the cluster, its
webhook served to the API server over the pod network) and TensorBoard run in containers on the
real nodes. The stack is deployed once per session (conftest.py) for every test that uses it.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.request

from e2e.local_stack import LocalStack
from real_cluster import RealCluster, hub_context, hub_login_form, wait_for

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


def hub_health(address: str, port: int, context: ssl.SSLContext) -> int | None:
    """The status of GET /hub/health at `address`, the certificate checked for `localhost` (one of
    its names; the loopback addresses of a LoadBalancer are not); None when nothing answers."""
    try:
        with socket.create_connection((address, port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /hub/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                status_line = tls.makefile("rb").readline().decode()
    except OSError:
        return None
    return int(status_line.split()[1]) if status_line.startswith("HTTP/") else None


def test_the_hub_answers_through_the_proxy_over_https(stack: LocalStack, real: RealCluster) -> None:
    """As the stack's `jupyterhub` output says: a port-forward to proxy-public, https with the stack's CA."""
    command = json.loads(stack.pulumi("stack", "output", "--json").stdout)["jupyterhub"]
    assert "port-forward" in command and "proxy-public" in command, command
    with real.port_forward("svc/proxy-public", 443, namespace="jupyterhub") as port:
        context = hub_context(real)

        def health() -> bool:
            try:
                with urllib.request.urlopen(f"https://localhost:{port}/hub/health", context=context, timeout=10) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(health, 60, "the hub's /hub/health through proxy-public")
        assert hub_login_form(port, context), "the hub's login form at /hub/login"


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


def test_the_hub_answers_while_its_service_flips_to_load_balancer_and_back(stack: LocalStack, real: RealCluster) -> None:
    """`jupyterhub.serviceType` ClusterIP -> LoadBalancer -> ClusterIP with `pulumi up`: the hub
    answers through a port-forward all along (it goes to the proxy's pod, which stays), at the load
    balancer's address on this machine while there is one, and no pod of the hub is replaced."""
    context = hub_context(real)
    def hub_pods() -> set[str]:
        return {p["metadata"]["uid"] for p in real.get("pods", "-n", "jupyterhub")["items"]
                if p["metadata"]["name"].startswith(("hub-", "proxy-"))}

    pods_before = hub_pods()
    saved = stack.config_file.read_text()
    failures: list[str] = []
    with real.port_forward("svc/proxy-public", 443, namespace="jupyterhub") as port:
        wait_for(lambda: hub_health("127.0.0.1", port, context) == 200, 60, "the hub through the port-forward")
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                status = hub_health("127.0.0.1", port, context)
                if status != 200:
                    failures.append(f"{time.strftime('%T')}: {status}")
                done.wait(0.5)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            stack.set_config("jupyterhub.serviceType", "LoadBalancer")
            stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
            service = real.get("service", "-n", "jupyterhub", "proxy-public")
            assert service["spec"]["type"] == "LoadBalancer", service["spec"]
            (ingress,) = service["status"]["loadBalancer"]["ingress"]
            assert ingress["ip"].startswith("127."), ingress
            wait_for(lambda: hub_health(ingress["ip"], 443, context) == 200, 60, f"the hub at {ingress['ip']}:443")

            stack.config_file.write_text(saved)
            stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
            assert real.get("service", "-n", "jupyterhub", "proxy-public")["spec"]["type"] == "ClusterIP"
            wait_for(lambda: hub_health(ingress["ip"], 443, context) is None, 60, f"{ingress['ip']}:443 closed")
        finally:
            done.set()
            poller.join(10)
            stack.config_file.write_text(saved)
    assert failures == [], "the hub stopped answering through the port-forward"
    assert hub_pods() == pods_before, "the hub's or the proxy's pod was replaced by the flips"
    assert stack.pulumi("preview", "--expect-no-changes", check=False).returncode == 0, "the stack is back to its config"
