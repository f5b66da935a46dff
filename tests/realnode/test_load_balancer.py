"""Services reachable from this machine (cluster/localcluster/servicelb.py): a LoadBalancer Service
answers at its ingress address, a NodePort at its node's loopback address, both on this machine's
loopback; a Service's listeners go when it is deleted or changes type, and loadBalancerSourceRanges
is enforced."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator

import pytest

from cluster.localcluster.servicelb import MANAGER, NODE_ANNOTATION
from real_cluster import RealCluster, pod, wait_for

BODY = "hello-from-lb-web"


def http_get(address: str, port: int) -> str:
    """The whole answer to a plain HTTP/1.0 GET, from this test process."""
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.settimeout(10)
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        chunks = []
        while data := conn.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def answers(address: str, port: int) -> bool:
    try:
        return BODY in http_get(address, port)
    except OSError:
        return False


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def service(name: str, kind: str, port: int, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": kind, "selector": {"app": "lb-web"}, "ports": [{"port": port, "targetPort": 8080}],
                     **spec}}


def ingress(real: RealCluster, name: str) -> list[dict]:
    return real.get("service", name).get("status", {}).get("loadBalancer", {}).get("ingress", [])


@pytest.fixture(scope="module")
def web(real: RealCluster) -> Iterator[None]:
    server = pod("lb-web", f"mkdir -p /www && echo {BODY} > /www/index.html && httpd -f -p 8080 -h /www")
    server["metadata"]["labels"] = {"app": "lb-web"}
    server["spec"]["restartPolicy"] = "Always"
    real.apply(server)
    wait_for(lambda: real.get("pod", "lb-web")["status"].get("phase") == "Running", 90, "pod lb-web Running")
    yield
    real.kubectl("delete", "pod", "lb-web", "--wait=false")


def test_load_balancer_answers_at_its_ingress_address(real: RealCluster, web: None) -> None:
    real.apply(service("lb-web", "LoadBalancer", 8081))
    (address,) = wait_for(lambda: [i["ip"] for i in ingress(real, "lb-web")], 30, "lb-web's ingress address")
    prefix = real.loopback_prefix()
    assert address.startswith(prefix + "."), f"{address} is not in the cluster's block {prefix}.0/24"
    assert ingress(real, "lb-web") == [{"ip": address, "ipMode": "Proxy"}]
    wait_for(lambda: answers(address, 8081), 60, f"lb-web answering at {address}:8081")
    # Only the load balancer wrote the status: kwok's simulated one is not loaded on a real cluster.
    fields = json.loads(real.kubectl("get", "service", "lb-web", "-o", "json", "--show-managed-fields").stdout)
    writers = {m["manager"] for m in fields["metadata"]["managedFields"] if m.get("subresource") == "status"}
    assert writers == {MANAGER}, writers
    events = real.get("events", "--field-selector", "involvedObject.name=lb-web")["items"]
    assert any(f"{address}:8081" in e["message"] for e in events), [e["message"] for e in events]


def test_node_port_answers_at_the_nodes_loopback_address(real: RealCluster, web: None) -> None:
    """Every node's address answers, the gpu node's too (kube-proxy there leads to the cpu node's pod)."""
    real.apply(service("np-web", "NodePort", 80))
    node_port = real.get("service", "np-web")["spec"]["ports"][0]["nodePort"]
    addresses = {real.get("node", n.spec.name)["metadata"]["annotations"][NODE_ANNOTATION] for n in real.nodes()}
    assert len(addresses) == 2, addresses
    for address in addresses:
        assert address.startswith(real.loopback_prefix() + "."), address
        wait_for(lambda address=address: answers(address, node_port), 60, f"np-web answering at {address}:{node_port}")


def test_killed_load_balancer_is_restarted_by_up(real: RealCluster, web: None) -> None:
    """`bin/cluster up` starts a dead load balancer again, and each Service keeps its address."""
    (address,) = [i["ip"] for i in ingress(real, "lb-web")]
    pid = int((real.state_dir / "servicelb" / "servicelb.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: refused(address, 8081), 10, f"{address}:8081 closed with the load balancer killed")
    assert real.cluster("status", check=False).stdout.strip() == "stopped"
    out = real.cluster("up")
    assert "servicelb running (started)" in out.stderr, out.stderr
    wait_for(lambda: answers(address, 8081), 30, f"lb-web answering at {address}:8081 again")
    assert ingress(real, "lb-web") == [{"ip": address, "ipMode": "Proxy"}]


def test_listeners_go_with_their_service(real: RealCluster, web: None) -> None:
    (address,) = [i["ip"] for i in ingress(real, "lb-web")]
    real.kubectl("delete", "service", "lb-web")
    wait_for(lambda: refused(address, 8081), 20, f"{address}:8081 closed after lb-web was deleted")

    settings = real.node("cpu")
    node_address = real.get("node", settings.spec.name)["metadata"]["annotations"][NODE_ANNOTATION]
    node_port = real.get("service", "np-web")["spec"]["ports"][0]["nodePort"]
    assert answers(node_address, node_port)
    real.kubectl("patch", "service", "np-web", "--type=json", "-p",
                 '[{"op": "replace", "path": "/spec/type", "value": "ClusterIP"},'
                 ' {"op": "remove", "path": "/spec/ports/0/nodePort"}]')
    wait_for(lambda: refused(node_address, node_port), 20, f"{node_address}:{node_port} closed after np-web "
                                                           "became ClusterIP")
    real.kubectl("delete", "service", "np-web")


def test_source_ranges_are_enforced(real: RealCluster, web: None) -> None:
    """A LoadBalancer open to 10.0.0.0/8 only turns this machine's 127.0.0.1 away; opened to
    127.0.0.0/8 too, it answers."""
    real.apply(service("lb-ranges", "LoadBalancer", 8082, loadBalancerSourceRanges=["10.0.0.0/8"]))
    (address,) = wait_for(lambda: [i["ip"] for i in ingress(real, "lb-ranges")], 30, "lb-ranges' address")
    wait_for(lambda: not refused(address, 8082), 20, f"{address}:8082 listening")
    assert not answers(address, 8082)
    real.apply(service("lb-ranges", "LoadBalancer", 8082, loadBalancerSourceRanges=["10.0.0.0/8", "127.0.0.0/8"]))
    wait_for(lambda: answers(address, 8082), 30, f"lb-ranges answering at {address}:8082 once 127.0.0.0/8 may")
    real.kubectl("delete", "service", "lb-ranges")
