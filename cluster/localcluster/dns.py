"""The cluster's DNS: CoreDNS as a Deployment and the `kube-dns` Service in kube-system (the
`k8s-app: kube-dns` label, as kubeadm, AKS, EKS and GKE have it), on the real nodes.

CoreDNS answers for cluster.local only: no `forward`, so no query ever leaves the cluster. It
reaches the API server at its advertised address (the `kubernetes` EndpointSlice, which each
node's namespace carries on its loopback and the API forwarder serves) with its service account
token, through a kubeconfig, because the API server's certificate does not name the Service IP.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# .10 of the Service range (network.SERVICE_CIDR), as kubeadm does.
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
NAMESPACE = "kube-system"
LABELS = {"k8s-app": "kube-dns"}
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

COREFILE = f"""\
.:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig /etc/coredns/kubeconfig in-cluster
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loop
}}
"""


def kubeconfig(api_address: str, api_port: int) -> str:
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {"server": f"https://{api_address}:{api_port}",
                                                         "certificate-authority": f"{SA_DIR}/ca.crt"}}],
        "users": [{"name": "coredns", "user": {"tokenFile": f"{SA_DIR}/token"}}],
        "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "coredns"}}],
        "current-context": "in-cluster",
    })


def manifests(image: str, api_address: str, api_port: int, node_selector: dict, tolerations: list) -> list[dict]:
    meta = {"name": "coredns", "namespace": NAMESPACE, "labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "mlplatform:coredns"},
            "rules": [
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                 "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "mlplatform:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "mlplatform:coredns"},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
         "data": {"Corefile": COREFILE, "kubeconfig": kubeconfig(api_address, api_port)}},
        {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "nodeSelector": node_selector,
                        "tolerations": tolerations,
                        "containers": [{
                            "name": "coredns",
                            "image": image,
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                      {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"}],
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                            "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "50m", "memory": "70Mi"}},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": LABELS},
            "spec": {
                "selector": LABELS,
                "clusterIP": DNS_SERVICE_IP,
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                          {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}],
            },
        },
    ]


def apply(kubectl: Path, kubeconfig_path: Path, objects: list[dict]) -> None:
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig_path), "apply", "--server-side",
                    "--field-manager=mlplatform-localcluster", "-f", "-"], input=doc, check=True,
                   capture_output=True, text=True)


def ready(kubectl: Path, kubeconfig_path: Path) -> bool:
    out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig_path), "-n", NAMESPACE, "get", "deploy",
                          "coredns", "-o", "jsonpath={.status.availableReplicas}"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "1"
