"""The dev stack as a `local` stack (cluster.provider local) on the real nodes: `make up` deploys it
with the real engine and its pods run for real.

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
import urllib.parse
import urllib.request

from components.mnist import TENSORBOARD_LABELS, TENSORBOARD_PORT
from e2e.local_stack import LocalStack, steps_changed
from polling import polled_throughout
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


def http_status(address: str, port: int, path: str, context: ssl.SSLContext | None = None,
                source: str = "127.0.0.1") -> int | None:
    """The status of GET `path` at `address` from the local address `source`, over TLS when given a
    `context` (the certificate checked for `localhost`: one of the hub's names, which the loopback
    addresses of a load balancer are not); None when nothing answers."""
    try:
        with socket.create_connection((address, port), timeout=10, source_address=(source, 0)) as raw:
            conn = context.wrap_socket(raw, server_hostname="localhost") if context else raw
            conn.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            status_line = conn.makefile("rb").readline().decode()
    except OSError:
        return None
    return int(status_line.split()[1]) if status_line.startswith("HTTP/") else None


def hub_health(address: str, port: int, context: ssl.SSLContext) -> int | None:
    return http_status(address, port, "/hub/health", context)


def not_ok(status: int | None) -> str | None:
    """For polled_throughout: what is wrong with an answer's status."""
    return None if status == 200 else f"status {status}"


def output(stack: LocalStack, name: str) -> str:
    return json.loads(stack.pulumi("stack", "output", "--json").stdout)[name]


def address_of(url: str) -> tuple[str, int]:
    """The host and port of a URL as a stack output prints it."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname and parsed.port, f"not a URL with a host and port: {url!r}"
    return parsed.hostname, parsed.port


def test_the_hub_answers_through_the_proxy_over_https(stack: LocalStack, real: RealCluster) -> None:
    """As the stack's `jupyterhub` output says: a port-forward to proxy-public, https with the stack's CA."""
    command = output(stack, "jupyterhub")
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
    with real.port_forward("svc/proxy-public", 443, namespace="jupyterhub") as port:
        wait_for(lambda: hub_health("127.0.0.1", port, context) == 200, 60, "the hub through the port-forward")
        with polled_throughout(lambda: not_ok(hub_health("127.0.0.1", port, context))) as failures:
            try:
                stack.set_config("jupyterhub.serviceType", "LoadBalancer")
                stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
                service = real.get("service", "-n", "jupyterhub", "proxy-public")
                assert service["spec"]["type"] == "LoadBalancer", service["spec"]
                (ingress,) = service["status"]["loadBalancer"]["ingress"]
                assert ingress["ip"].startswith("127."), ingress
                # The stack's output is the URL to open, and it works as printed.
                url = output(stack, "jupyterhub")
                assert url == f"https://{ingress['ip']}:443", url
                address, public_port = address_of(url)
                wait_for(lambda: hub_health(address, public_port, context) == 200, 60, f"the hub at {url}")

                stack.config_file.write_text(saved)
                stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
                assert real.get("service", "-n", "jupyterhub", "proxy-public")["spec"]["type"] == "ClusterIP"
                wait_for(lambda: hub_health(address, public_port, context) is None, 60, f"{url} closed")
            finally:
                stack.config_file.write_text(saved)
    assert failures == [], "the hub stopped answering through the port-forward"
    assert hub_pods() == pods_before, "the hub's or the proxy's pod was replaced by the flips"
    assert stack.pulumi("preview", "--expect-no-changes", check=False).returncode == 0, "the stack is back to its config"


def planned(stack: LocalStack) -> dict[str, set[str]]:
    """What the next `pulumi up` changes (`pulumi preview --json`): resource name -> operations."""
    return {urn.rsplit("::", 1)[1]: ops for urn, ops in steps_changed(stack.pulumi("preview", "--json").stdout).items()}


def test_tensorboard_answers_while_its_service_flips_to_load_balancer_and_back(stack: LocalStack, real: RealCluster) -> None:
    """`mnist.tensorboard.serviceType` ClusterIP -> LoadBalancer (open to 127.0.0.1 only) -> ClusterIP
    with `pulumi up`: TensorBoard answers through a port-forward all along; while it is a
    LoadBalancer it answers at the load balancer's address from 127.0.0.1, through its NetworkPolicy
    (the load balancer enters at its pod's node: externalTrafficPolicy Local), and turns 127.0.0.2
    away (loadBalancerSourceRanges); each `pulumi up` replaces its Service, updates its NetworkPolicy
    and nothing else."""
    def board() -> tuple[str, str]:
        selector = ",".join(f"{k}={v}" for k, v in TENSORBOARD_LABELS.items())
        (pod,) = real.get("pods", "-n", "mnist", "-l", selector)["items"]
        return pod["metadata"]["uid"], real.get("service", "-n", "mnist", "tensorboard")["metadata"]["uid"]

    def check_plan(plan: dict[str, set[str]]) -> None:
        # The Service is replaced (the API refuses some type changes in place); the NetworkPolicy in
        # front of it follows the source ranges in place.
        assert set(plan) == {"mnist-tensorboard-svc", "mnist-netpol-tensorboard"}, plan
        assert "replace" in plan["mnist-tensorboard-svc"] and plan["mnist-netpol-tensorboard"] == {"update"}, plan

    pod_before, service_before = board()
    saved = stack.config_file.read_text()
    with real.port_forward("svc/tensorboard", TENSORBOARD_PORT, namespace="mnist") as port:
        wait_for(lambda: http_status("127.0.0.1", port, "/") == 200, 60, "TensorBoard through the port-forward")
        with polled_throughout(lambda: not_ok(http_status("127.0.0.1", port, "/"))) as failures:
            try:
                stack.set_config("mnist.tensorboard.serviceType", "LoadBalancer")
                stack.set_config("mnist.tensorboard.loadBalancerSourceRanges[0]", "127.0.0.1/32")
                check_plan(planned(stack))
                stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
                service = real.get("service", "-n", "mnist", "tensorboard")
                assert service["spec"]["externalTrafficPolicy"] == "Local", service["spec"]
                (ingress,) = service["status"]["loadBalancer"]["ingress"]
                url = output(stack, "tensorboard")
                assert url == f"http://{ingress['ip']}:{TENSORBOARD_PORT}", url
                address, public_port = address_of(url)
                wait_for(lambda: http_status(address, public_port, "/") == 200, 60, f"TensorBoard at {url}")
                # Each connection goes to the node that has the pod at once: the load balancer logs
                # none refused by the other node, whose relayed connection the NetworkPolicy refuses.
                log = real.state_dir / "servicelb" / "logs" / "servicelb.log"
                logged = log.stat().st_size
                statuses = [http_status(address, public_port, "/") for _ in range(10)]
                assert statuses == [200] * 10, statuses
                refused = [line for line in log.read_bytes()[logged:].decode().splitlines()
                           if f"{address}:{public_port} ->" in line]
                assert refused == [], refused
                assert http_status(address, public_port, "/", source="127.0.0.2") is None, \
                    "TensorBoard answered a source outside loadBalancerSourceRanges"

                stack.config_file.write_text(saved)
                check_plan(planned(stack))
                stack.pulumi("up", "--yes", "--skip-preview", timeout=600)
                assert real.get("service", "-n", "mnist", "tensorboard")["spec"]["type"] == "ClusterIP"
                wait_for(lambda: http_status(address, public_port, "/") is None, 60, f"{url} closed")
            finally:
                stack.config_file.write_text(saved)
    assert failures == [], "TensorBoard stopped answering through the port-forward"
    pod_after, service_after = board()
    assert pod_after == pod_before, "TensorBoard's pod was replaced by the flips"
    assert service_after != service_before, "TensorBoard's Service was not replaced"
    assert stack.pulumi("preview", "--expect-no-changes", check=False).returncode == 0, "the stack is back to its config"
