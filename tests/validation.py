"""Validate Kubernetes objects as a strict API server would: built-in kinds against the Kubernetes
OpenAPI schema of the targeted version, TFJobs against the CRD this project declares (its
structural schema, unknown fields refused, and its CEL rules evaluated), and cert-manager's
Issuers and Certificates against the CRDs of the pinned cert-manager release (from its Go
module, which carries them: `go mod download` fetches it from the module proxy once), and Kueue's
objects against the CRDs of the pinned Kueue release (`tools/build.sh kueue-manifests`)."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

import celpy
import jsonschema
import kubernetes_validate

from components.crd_schema import tfjob_schema
from vocab.tfjob_api import API_VERSION, KIND
from components import cert_manager
from components.kueue import KueueManifests, kueue_manifests_dir
from vocab import kueue_api
from vocab.versions import CERT_MANAGER_VERSION, KUBERNETES_API_VERSION


class Invalid(Exception):
    pass


def json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD structural schema as JSON Schema, strict: fields the CRD does not declare are errors."""
    if node.get("x-kubernetes-int-or-string"):
        return {"anyOf": [{"type": "integer"}, {"type": "string"}]}
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in node:
        out["properties"] = {k: json_schema(v) for k, v in node["properties"].items()}
        if not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = json_schema(node["additionalProperties"])
    if "items" in node:
        out["items"] = json_schema(node["items"])
    return out


def cel_errors(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule of `node` and its children against `value`,
    as the API server does on create (transition rules, those reading oldSelf, apply to updates)."""
    errors = []
    env = celpy.Environment()
    for rule in node.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for key, child in value.items():
            schema = node.get("properties", {}).get(key) or (
                node["additionalProperties"] if isinstance(node.get("additionalProperties"), dict) else None
            )
            if schema:
                errors += cel_errors(schema, child, f"{path}.{key}")
    if isinstance(value, list) and "items" in node:
        for i, child in enumerate(value):
            errors += cel_errors(node["items"], child, f"{path}[{i}]")
    return errors


def validate_tfjob(manifest: dict[str, Any]) -> None:
    validate_custom(manifest, tfjob_schema())


@functools.cache
def cert_manager_schema(kind: str) -> dict[str, Any]:
    """The v1 schema of cert-manager's CRD for `kind`, as the pinned release ships it."""
    module = f"github.com/cert-manager/cert-manager@{CERT_MANAGER_VERSION}"
    found = subprocess.run(["go", "mod", "download", "-json", module], capture_output=True, text=True, timeout=600)
    if found.returncode != 0:
        raise RuntimeError(f"go mod download {module} failed (the module proxy serves it): {found.stdout}{found.stderr}")
    crds = Path(json.loads(found.stdout)["Dir"]) / "deploy" / "crds"
    for path in sorted(crds.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd and crd["spec"]["names"]["kind"] == kind:
                (version,) = [v for v in crd["spec"]["versions"] if v["name"] == cert_manager.API_VERSION.split("/")[1]]
                return version["schema"]["openAPIV3Schema"]
    raise RuntimeError(f"{module} has no CRD for {kind} in {crds}")


@functools.cache
def kueue_schema(kind: str) -> dict[str, Any]:
    """The schema of Kueue's CRD for `kind` at the version the stack writes, as the pinned release ships it."""
    for crd in KueueManifests(kueue_manifests_dir()).crds():
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["name"] == kueue_api.VERSION]
            return version["schema"]["openAPIV3Schema"]
    raise RuntimeError(f"the Kueue CRDs have no {kind}")


def validate_custom(manifest: dict[str, Any], schema: dict[str, Any]) -> None:
    try:
        jsonschema.validate(manifest, json_schema(schema))
    except jsonschema.ValidationError as error:
        raise Invalid(f"{'.'.join(map(str, error.absolute_path))}: {error.message}") from None
    errors = cel_errors(schema, manifest)
    if errors:
        raise Invalid("; ".join(errors))


def validate(manifest: dict[str, Any]) -> None:
    if (manifest.get("apiVersion"), manifest.get("kind")) == (API_VERSION, KIND):
        validate_tfjob(manifest)
        return
    if manifest.get("apiVersion") == cert_manager.API_VERSION:
        validate_custom(manifest, cert_manager_schema(manifest["kind"]))
        return
    if manifest.get("apiVersion") == kueue_api.API_VERSION:
        validate_custom(manifest, kueue_schema(manifest["kind"]))
        return
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_API_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        raise Invalid(f"{list(error.path)}: {error.message}") from None
