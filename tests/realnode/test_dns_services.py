"""Services on the real nodes: CoreDNS answers for cluster.local, kube-proxy routes cluster IPs
to pods on the other node, and the API server reaches the kubelets (logs, exec, port-forward)."""

from __future__ import annotations

import urllib.request

from real_cluster import RealCluster, pod, wait_for


def test_coredns_is_the_cluster_dns(real: RealCluster) -> None:
    svc = real.get("service", "-n", "kube-system", "kube-dns")
    assert svc["metadata"]["labels"]["k8s-app"] == "kube-dns"
    deploy = real.get("deployment", "-n", "kube-system", "coredns")
    assert deploy["status"].get("availableReplicas") == 1, deploy["status"]


def test_pod_reaches_a_service_by_name(real: RealCluster) -> None:
    """A client pod on the cpu node resolves Services through CoreDNS (itself behind the kube-dns
    cluster IP) and fetches from `web`, on the gpu node, through its cluster IP (kube-proxy's rules,
    then the route between the nodes)."""
    web = pod("web", "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 8080 -h /www",
              pool="gpu")
    web["metadata"]["labels"] = {"app": "web"}
    web["spec"]["restartPolicy"] = "Always"
    real.apply(web)
    real.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    wait_for(lambda: real.get("pod", "web")["status"].get("phase") == "Running", 90, "pod web Running")
    web_ip = real.get("service", "web")["spec"]["clusterIP"]
    wait_for(lambda: any(e.get("conditions", {}).get("ready") for slice_ in real.get(
        "endpointslices", "-l", "kubernetes.io/service-name=web")["items"] for e in slice_.get("endpoints") or []),
        60, "a ready endpoint in web's EndpointSlice")
    # The image has /bin only: outputs stay in variables. Debian's static busybox resolves names
    # with its own nslookup only, and its wget crashes (segfault, on this machine too), so the name
    # is looked up, and the cluster IP fetched from with nc, separately. The fetch is tried for up to
    # 30 s, as any client would: the cpu node's kube-proxy writes the Service's rules on its next
    # sync after the endpoint is ready (seen once: the first try's "No route to host").
    script = ('ns=$(nslookup kubernetes.default.svc.cluster.local 2>&1; nslookup web.default.svc.cluster.local 2>&1); '
              'tries=0; while [ $tries -lt 30 ]; do tries=$((tries + 1)); '
              f'body=$(printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 5 {web_ip} 80 2>&1); '
              'case "$body" in *hello-from-web*) break;; esac; sleep 1; done; '
              'echo "$ns $body (try $tries)" > /dev/termination-log')
    real.apply(pod("client", script))
    p = wait_for(lambda: (q := real.get("pod", "client"))["status"].get("phase")
                 in ("Succeeded", "Failed") and q, 240, "pod client finished")
    message = p["status"]["containerStatuses"][0]["state"]["terminated"].get("message", "")
    kubernetes_ip = real.get("service", "kubernetes")["spec"]["clusterIP"]
    assert f"Address: {kubernetes_ip}" in message, message
    assert f"Address: {web_ip}" in message, message
    assert "hello-from-web" in message, message
    assert real.get("pod", "web")["spec"]["nodeName"] != p["spec"]["nodeName"]
    # Through the egress proxy, the API server reaches the gpu node's kubelet and the pod itself.
    assert "hello-from-web" in real.kubectl("exec", "web", "--", "cat", "/www/index.html").stdout
    with real.port_forward("pod/web", 8080) as port:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert response.read().decode().strip() == "hello-from-web"
    for name in ("client", "web"):
        real.kubectl("delete", "pod", name, "--wait=false")
    real.kubectl("delete", "service", "web")


def test_kubectl_logs_of_a_real_pod(real: RealCluster) -> None:
    real.apply(pod("talker", "echo said-by-talker; sleep 1"))
    wait_for(lambda: real.get("pod", "talker")["status"].get("phase") == "Succeeded", 90, "pod talker Succeeded")
    assert real.kubectl("logs", "talker").stdout.strip() == "said-by-talker"
    real.kubectl("delete", "pod", "talker", "--wait=false")
