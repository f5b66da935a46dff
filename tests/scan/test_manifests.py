"""A third-party scan of what the stacks deploy: kube-score over every object of both example
stacks (and the pods the operator makes of each TFJob replica type), held to the anchors' standard.

Budget: no finding that the anchor of its part does not share. The hub's anchor is Zero to
JupyterHub at the version versions.env pins, whose chart defaults (values.yaml, templates/hub and
proxy) give the findings listed in Z2JH_SHARED; rendering the chart needs helm, so they are
written down here. The operator's anchor is the upstream manifests of the pinned operator release,
scanned here from its Go module, and Kueue's the manager Deployment and webhook Service of the
pinned Kueue release, from its module likewise. The mnist objects are held to what the hub's and
the operator's anchors share.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from program import aks_stack, example_stack, run_program

# kube-score check IDs that Zero to JupyterHub's hub and proxy Deployments fail with their chart
# defaults, and why (facts read from the chart's values.yaml and templates).
Z2JH_SHARED = {
    "container-image-pull-policy": "hub.image.pullPolicy and proxy.chp.image.pullPolicy are unset",
    "container-resources": "hub.resources and proxy.chp.resources are {}",
    "container-ephemeral-storage-request-and-limit": "no ephemeral-storage requests or limits",
    "container-security-context-user-group-id": "the hub runs as uid/gid 1000",
    "container-security-context-readonlyrootfilesystem": "no readOnlyRootFilesystem on hub or proxy",
    "pod-probes-identical": "the hub's liveness and readiness probes are the same GET /hub/health",
    "deployment-replicas": "one hub and one proxy replica",
    "deployment-strategy": "hub and proxy use the Recreate strategy",
    "networkpolicy-targets-pod": "the singleuser NetworkPolicy selects user pods, which the chart does not create",
}
# Differences from the anchors that are known and accepted, with the reason; the budget is
# otherwise zero.
ACCEPTED = {
    ("hub", "pod-networkpolicy"): (
        "the hub's egress is open by design (it reaches the Kubernetes API and OAuth providers at "
        "addresses unknown ahead of time); z2jh's hub egress policy allows nearly everything too"
    ),
    # Keyed by object: cert-manager's own pod, which it builds without probes and whose containers
    # an Issuer's podTemplate cannot change; it lives for one challenge.
    ("jupyterhub/cm-acme-http-solver-0", "pod-probes"): "cert-manager's HTTP-01 solver pod (letsencrypt), as upstream makes it",
    # kube-score wants Always. The dev stack runs the local builds, which no registry serves and
    # the real nodes import: Never (ImagesSettings.pull_policy); the aks stack keeps Always
    # (tests/unit/test_training_operator.py checks both).
    ("mnist", "container-image-pull-policy"): "images.local (the dev stack): Never, nothing is pulled",
    ("operator", "container-image-pull-policy"): "images.local (the dev stack): Never, nothing is pulled",
    ("kueue", "container-image-pull-policy"): "images.local (the dev stack): Never, nothing is pulled",
}


def findings(binary: Path, documents: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(kind, namespace/name, check ID) of every failed check (warnings included)."""
    run = subprocess.run(
        [str(binary), "score", "--output-format", "json", "-"],
        input=yaml.safe_dump_all(documents), capture_output=True, text=True, check=False,
    )
    assert run.stdout, f"kube-score failed ({run.returncode}): {run.stderr}"
    found = set()
    for scored in json.loads(run.stdout):
        meta = scored["object_meta"]
        for check in scored["checks"]:
            if not check["skipped"] and check["grade"] < 10:
                found.add((scored["type_meta"]["kind"], f"{meta.get('namespace', '')}/{meta['name']}", check["check"]["id"]))
    return found


def replica_pods(tfjob: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod the operator creates for each replica type, as kube-score sees pods."""
    meta = tfjob["metadata"]
    pods = []
    for kind, spec in tfjob["spec"]["tfReplicaSpecs"].items():
        template = spec["template"]
        labels = {**template.get("metadata", {}).get("labels", {}), "training.kubeflow.org/job-name": meta["name"]}
        pods.append({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{meta['name']}-{kind.lower()}-0", "namespace": meta["namespace"], "labels": labels},
            "spec": template["spec"],
        })
    return pods


def acme_solver_pod(issuer: dict[str, Any]) -> dict[str, Any]:
    """The HTTP-01 solver pod cert-manager makes for a challenge of `issuer` (its buildDefaultPod in
    pkg/issuer/acme/http/pod.go, with its default resources, and the Issuer's podTemplate laid over)."""
    from components.cert_manager import HTTP01_SOLVER_LABEL
    from vocab.versions import CERT_MANAGER_VERSION

    (solver,) = issuer["spec"]["acme"]["solvers"]
    template = solver["http01"]["ingress"].get("podTemplate", {})
    spec = {
        "automountServiceAccountToken": False,
        "restartPolicy": "OnFailure",
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "acmesolver",
            "image": f"quay.io/jetstack/cert-manager-acmesolver:{CERT_MANAGER_VERSION}",
            "imagePullPolicy": "IfNotPresent",
            "args": ["--listen-port=8089", "--domain=notebooks.example.com", "--token=t", "--key=k"],
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            "ports": [{"name": "http", "containerPort": 8089}],
            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }],
        **template.get("spec", {}),
        "nodeSelector": {"kubernetes.io/os": "linux", **template.get("spec", {}).get("nodeSelector", {})},
    }
    labels = {HTTP01_SOLVER_LABEL: "true", **template.get("metadata", {}).get("labels", {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "cm-acme-http-solver-0", "namespace": issuer["metadata"]["namespace"], "labels": labels},
        "spec": spec,
    }


def stack_documents(config: dict[str, Any], secrets: tuple[str, ...]) -> list[dict[str, Any]]:
    documents = []
    for resource in run_program(config, secrets).kubernetes_objects():
        manifest = resource.manifest()
        documents.append(manifest)
        if manifest["kind"] == "TFJob":
            documents += replica_pods(manifest)
        if manifest["kind"] == "Issuer":
            documents.append(acme_solver_pod(manifest))
    return documents


def part(namespace_name: str) -> str | None:
    namespace = namespace_name.split("/", 1)[0]
    return {"jupyterhub": "hub", "kubeflow": "operator", "mnist": "mnist", "kueue-system": "kueue"}.get(namespace)


def upstream_operator_findings(binary: Path) -> set[str]:
    from vocab.versions import TRAINING_OPERATOR_VERSION

    listing = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/kubeflow/training-operator@{TRAINING_OPERATOR_VERSION}"],
        capture_output=True, text=True, check=True, cwd="/",
    )
    base = Path(json.loads(listing.stdout)["Dir"]) / "manifests" / "base"
    documents = [d for name in ("deployment.yaml", "service.yaml") for d in yaml.safe_load_all((base / name).read_text()) if d]
    return {check for _, _, check in findings(binary, documents)}


def upstream_kueue_findings(binary: Path) -> set[str]:
    from vocab.versions import KUEUE_VERSION

    listing = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kueue@{KUEUE_VERSION}"],
                             capture_output=True, text=True, check=True, cwd="/")
    components = Path(json.loads(listing.stdout)["Dir"]) / "config" / "components"
    documents = [d for name in ("manager/manager.yaml", "webhook/service.yaml")
                 for d in yaml.safe_load_all((components / name).read_text()) if d and d.get("kind") != "Namespace"]
    return {check for _, _, check in findings(binary, documents)}


@pytest.fixture(scope="module")
def standards(binary: Path) -> dict[str, set[str]]:
    operator = upstream_operator_findings(binary)
    assert operator, "the upstream operator manifests scanned clean: the anchor did not load"
    kueue = upstream_kueue_findings(binary)
    assert kueue, "the upstream Kueue manifests scanned clean: the anchor did not load"
    hub = set(Z2JH_SHARED)
    return {"hub": hub, "operator": operator, "mnist": hub & operator, "kueue": kueue}


def stacks():
    # The dev stack runs Kueue; without it the job and the hub are rendered otherwise.
    yield pytest.param(example_stack("dev"), (), id="dev")
    without_kueue = example_stack("dev")
    without_kueue["kueue"] = {**without_kueue["kueue"], "enabled": False}
    yield pytest.param(without_kueue, (), id="dev-without-kueue")
    config, secrets = aks_stack()
    yield pytest.param(config, secrets, id="aks")


@pytest.mark.parametrize(("config", "secrets"), list(stacks()))
def test_no_finding_beyond_what_the_anchors_share(binary, standards, config, secrets):
    beyond = sorted(
        (part(where), kind, where, check)
        for kind, where, check in findings(binary, stack_documents(config, secrets))
        if part(where) and check not in standards[part(where)] and not {(part(where), check), (where, check)} & set(ACCEPTED)
    )
    assert not beyond, "kube-score findings the anchors do not share:\n" + "\n".join(" ".join(f) for f in beyond)


def test_the_scan_finds_what_it_should(binary):
    # Proves the budget can fail: a privileged pod with no policy has findings no anchor shares.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "mnist"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}]}}
    checks = {check for _, _, check in findings(binary, [pod])}
    assert "container-security-context-privileged" in checks and "pod-networkpolicy" in checks
