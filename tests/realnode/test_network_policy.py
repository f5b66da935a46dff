"""NetworkPolicy on the real node, enforced by kube-router's controller (cluster/localcluster/netpol.py).

A server pod and client pods in a namespace of their own; each client makes one connection and
reports it in its termination message, succeeding only when the server's page came back (`kubectl
exec` and `logs` do not reach a kubelet inside its namespace yet). Before each client the test
waits until the engine has (or no longer has) the policy in the node's iptables, so a client that
gets through a deny is a failure of the engine, never of timing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from real_cluster import RealCluster, host_rules_naming, ipset_names, iptables_rules, pod, wait_for
from cluster.localcluster.netpol import CHAIN_PREFIXES, IPSET_PREFIXES

NAMESPACE = "netpol-test"
PAGE = "hello-from-np-server"
PORT = 8080
ALLOWED = {"role": "np-client"}

DENY = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "default-deny-ingress", "namespace": NAMESPACE},
    "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
}
ALLOW = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "NetworkPolicy",
    "metadata": {"name": "allow-np-client", "namespace": NAMESPACE},
    "spec": {
        "podSelector": {"matchLabels": {"app": "np-server"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": ALLOWED}}], "ports": [{"protocol": "TCP", "port": PORT}]}],
    },
}


@pytest.fixture(scope="module")
def server(real: RealCluster) -> Iterator[str]:
    """The server pod's IP; its namespace (and every policy in it) goes at the end."""
    real.kubectl("create", "namespace", NAMESPACE)
    # Pods are admitted only once the namespace's default service account exists.
    wait_for(lambda: real.kubectl("get", "serviceaccount", "default", "-n", NAMESPACE, check=False).returncode == 0,
             30, f"service account {NAMESPACE}/default")
    web = in_namespace(pod("np-server", f"mkdir -p /www && echo {PAGE} > /www/index.html && httpd -f -p {PORT} -h /www"))
    web["metadata"]["labels"] = {"app": "np-server"}
    web["spec"]["restartPolicy"] = "Always"
    real.apply(web)
    p = wait_for(lambda: (q := real.get("pod", "np-server", "-n", NAMESPACE))["status"].get("phase") == "Running"
                 and q, 90, "pod np-server Running")
    yield p["status"]["podIP"]
    real.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def in_namespace(manifest: dict) -> dict:
    manifest["metadata"]["namespace"] = NAMESPACE
    return manifest


def connect(real: RealCluster, server_ip: str, name: str, labels: dict[str, str] | None = None) -> dict:
    """Runs a client pod that fetches the server's page once; returns its terminated state."""
    script = (f'out=$(printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {server_ip} {PORT} 2>&1); '
              'echo "$out" > /dev/termination-log; '
              f'case "$out" in *{PAGE}*) exit 0;; *) exit 1;; esac')
    client = in_namespace(pod(name, script))
    client["metadata"]["labels"] = labels or {}
    real.apply(client)
    p = wait_for(lambda: (q := real.get("pod", name, "-n", NAMESPACE))["status"].get("phase")
                 in ("Succeeded", "Failed") and q, 90, f"pod {name} finished")
    real.kubectl("delete", "pod", name, "-n", NAMESPACE, "--wait=false")
    terminated = p["status"]["containerStatuses"][0]["state"]["terminated"]
    return {"phase": p["status"]["phase"], "exitCode": terminated["exitCode"],
            "message": terminated.get("message", "").strip()}


def wait_enforced(real: RealCluster, policy: dict, present: bool = True) -> None:
    """Until the engine has hooked POLICY into the node's pod chains (or, present=False, unhooked it)."""
    settings = real.node("cpu")  # where the server runs, and its policies are enforced
    mark = f"run through nw policy {policy['metadata']['name']}"
    wait_for(lambda: any(mark in line for line in iptables_rules(settings.netns)) == present, 60,
             f"kube-router {'applying' if present else 'dropping'} policy {policy['metadata']['name']}")


def test_default_deny_ingress_refuses_a_client(real: RealCluster, server: str) -> None:
    before = connect(real, server, "client-before-deny", ALLOWED)
    assert before["phase"] == "Succeeded" and PAGE in before["message"], f"no policy yet, yet: {before}"
    real.apply(DENY)
    wait_enforced(real, DENY)
    denied = connect(real, server, "client-under-deny", ALLOWED)
    assert denied["phase"] == "Failed", f"a default-deny policy let the client through: {denied}"
    assert PAGE not in denied["message"], denied
    assert any(word in denied["message"] for word in ("refused", "timed out")), denied


def test_a_policy_allowing_the_client_by_label_lets_it_through(real: RealCluster, server: str) -> None:
    real.apply(DENY)
    real.apply(ALLOW)
    wait_enforced(real, DENY)
    wait_enforced(real, ALLOW)
    allowed = connect(real, server, "client-allowed", ALLOWED)
    assert allowed["phase"] == "Succeeded" and PAGE in allowed["message"], f"the allowed client was refused: {allowed}"
    # The label is what lets it in: the same client without it stays out.
    stranger = connect(real, server, "client-stranger")
    assert stranger["phase"] == "Failed" and PAGE not in stranger["message"], f"an unlabelled client got through: {stranger}"


def test_the_engine_keeps_its_state_in_the_node_namespace(real: RealCluster, server: str) -> None:
    """The policies' ipsets and chains exist in the node's namespace and nowhere on the machine itself."""
    real.apply(ALLOW)
    wait_enforced(real, ALLOW)
    settings = real.node("cpu")  # where the server runs, and its policies are enforced
    assert [n for n in ipset_names(settings.netns) if n.startswith(IPSET_PREFIXES)], \
        f"no kube-router ipset in namespace {settings.netns}: {ipset_names(settings.netns)}"
    assert [n for n in ipset_names() if n.startswith(IPSET_PREFIXES)] == []
    assert host_rules_naming(CHAIN_PREFIXES) == []


def test_removing_the_deny_restores_access(real: RealCluster, server: str) -> None:
    real.apply(DENY)
    wait_enforced(real, DENY)
    for policy in (DENY, ALLOW):
        real.kubectl("delete", "networkpolicy", policy["metadata"]["name"], "-n", NAMESPACE, "--ignore-not-found")
    wait_enforced(real, DENY, present=False)
    wait_enforced(real, ALLOW, present=False)
    after = connect(real, server, "client-after-deny", {})
    assert after["phase"] == "Succeeded" and PAGE in after["message"], f"access not restored: {after}"
