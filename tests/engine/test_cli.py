"""The real Pulumi engine, language host and kubernetes provider over the real program."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

import jsonschema

from cli import pulumi
from stacks.cluster import this_machine
from validation import Invalid, cel_errors, json_schema, validate


def render(project: Path) -> Path:
    out = project / ".local" / "render"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    result = subprocess.run([str(project / "bin" / "render"), str(out)], cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"bin/render failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def rendered(project) -> list[dict]:
    out = render(project)
    documents = []
    for path in sorted(out.rglob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return documents


def test_render_writes_every_manifest_of_the_dev_stack(rendered):
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert ("CustomResourceDefinition", "tfjobs.kubeflow.org") in kinds
    assert ("TFJob", "distributed-mnist") in kinds
    # What an existing cluster gets: its own nodes and volumes, the operator's webhook.
    assert not {kind for kind, _ in kinds} & {"Node", "PersistentVolume"}, kinds
    webhook = next(d for d in rendered if d["kind"] == "ValidatingWebhookConfiguration")
    assert webhook.get("webhooks"), "the operator's admission webhook is missing"
    assert ("DaemonSet", "nvidia-device-plugin") in kinds
    assert ("Deployment", "training-operator") in kinds
    assert ("Deployment", "tensorboard") in kinds


def test_rendered_manifests_are_schema_valid(rendered):
    crd = next(d for d in rendered if d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] == "tfjobs.kubeflow.org")
    tfjob_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for document in rendered:
        name = f"{document['kind']} {document['metadata'].get('namespace', '')}/{document['metadata']['name']}"
        if document["kind"] == "TFJob":
            # Against the CRD exactly as the engine rendered it, CEL rules included.
            jsonschema.validate(document, json_schema(tfjob_schema))
            assert not cel_errors(tfjob_schema, document), name
            continue
        try:
            validate(document)
        except Invalid as error:
            pytest.fail(f"{name}: {error}")


def test_bad_config_fails_preview_with_the_clear_message_and_creates_nothing(project):
    (project / "Pulumi.bad.yaml").write_text(
        yaml.safe_dump({"config": {"mlplatform:cluster": {"provider": "render"}, "mlplatform:jupyterhub": {"serviceType": "Loadbalancer"}}})
    )
    pulumi(project, "stack", "init", "bad")
    result = pulumi(project, "preview", "--stack", "bad", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'mlplatform:jupyterhub.serviceType: "Loadbalancer" is not allowed; allowed:' in output
    assert "Traceback" not in output
    state = json.loads(pulumi(project, "stack", "export", "--stack", "bad").stdout)
    assert not state["deployment"].get("resources"), "a failed preview must leave the stack empty"


def test_a_public_hub_without_https_fails_preview_naming_the_key(project):
    # Today's mistake of the aks example: a LoadBalancer hub that would serve sign-in over plain HTTP.
    (project / "Pulumi.plainhttp.yaml").write_text(
        yaml.safe_dump({"config": {"mlplatform:cluster": {"provider": "render"}, "mlplatform:jupyterhub": {"serviceType": "LoadBalancer"}}})
    )
    pulumi(project, "stack", "init", "plainhttp")
    result = pulumi(project, "preview", "--stack", "plainhttp", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mlplatform:jupyterhub.https: required with jupyterhub.serviceType LoadBalancer" in output, output[-3000:]
    assert "Traceback" not in output
    state = json.loads(pulumi(project, "stack", "export", "--stack", "plainhttp").stdout)
    assert not state["deployment"].get("resources"), "a failed preview must leave the stack empty"


def test_a_request_no_real_node_could_hold_fails_preview_naming_the_key(project):
    # cluster.provider local: the real nodes are this machine, which the program reads itself.
    config = {
        "mlplatform:cluster": {"provider": "local", "nodePools": [{"name": "cpu"}]},
        "mlplatform:jupyterhub": {
            "profiles": [{"name": "Huge", "image": "quay.io/jupyter/base-notebook:2025-12-01", "cpuGuarantee": "4096", "cpuLimit": "4096"}]
        },
    }
    (project / "Pulumi.toobig.yaml").write_text(yaml.safe_dump({"config": config}))
    pulumi(project, "stack", "init", "toobig")
    result = pulumi(project, "preview", "--stack", "toobig", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    cores = this_machine().cpu
    assert (
        f"mlplatform:jupyterhub.profiles[0].cpuGuarantee: 4096 is more than a node of pool cpu has (cpu {cores}: "
        "this machine's allocatable" in output
    ), output[-3000:]
    assert "Traceback" not in output
    state = json.loads(pulumi(project, "stack", "export", "--stack", "toobig").stdout)
    assert not state["deployment"].get("resources"), "a failed preview must leave the stack empty"


def test_render_writes_the_hubs_tls_secret_and_https_service(rendered):
    # The dev stack's jupyterhub.https selfSigned, through the real engine and provider.
    (secret,) = [d for d in rendered if d["kind"] == "Secret" and d["metadata"]["name"] == "proxy-public-tls"]
    assert secret["type"] == "kubernetes.io/tls" and set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    (service,) = [d for d in rendered if d["kind"] == "Service" and d["metadata"]["name"] == "proxy-public"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(443, "https"), (80, "http")]
