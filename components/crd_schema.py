"""The TFJob CRD's structural schema, with the pod template generated from the Kubernetes OpenAPI
definitions that kubernetes-validate ships for the targeted version (never pasted by hand).

The CRD admits every TFJob that the upstream operator (v1.9 line) admits: its own CRD's types and
formats, plus the one rule of its webhook that a schema can state (at most one Chief or Master),
and nothing stricter. Upstream leaves replica types, restart and clean-pod policies as free
strings and its defaulting turns `worker` or `ps` into `Worker` and `PS`, so clients that write
them so must keep working here. What this stack deploys is held to more at preview time
(components/tfjob.py: known replica types in their canonical case, policies from their lists).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from vocab.tfjob_api import COORDINATORS
from vocab.versions import KUBERNETES_API_VERSION

_DEFS_PREFIX = "#/$defs/"
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Keywords a CRD's structural schema takes over from the Kubernetes definitions; the rest
# (descriptions, patch strategies, list-map hints, defaults) is left out to keep the CRD small
# and free of rules that need more than the schema (list-map keys must be required or defaulted).
_KEPT = ("type", "format", "enum", "required", "minimum", "maximum", "minItems", "maxItems", "pattern")


@functools.cache
def _definitions(version: str = KUBERNETES_API_VERSION) -> dict[str, Any]:
    # Only the package's data is read: importing kubernetes_validate loads a JSON-schema validator
    # whose URI grammar alone takes over a second to build, on every `pulumi preview` and `up`.
    spec = importlib.util.find_spec("kubernetes_validate")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("kubernetes-validate (requirements.txt) is not installed")
    package = Path(next(iter(spec.submodule_search_locations)))
    root = package / "kubernetes-json-schema" / f"v{version}-local"
    return json.loads((root / "_definitions.json").read_text())["$defs"]


def _embedded_metadata() -> dict[str, Any]:
    """The part of ObjectMeta that a pod template may set (what the operator copies to pods)."""
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "namespace": {"type": "string"},
            "generateName": {"type": "string"},
            "labels": strings,
            "annotations": strings,
            "finalizers": {"type": "array", "items": {"type": "string"}},
        },
    }


def structural(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Turn a Kubernetes JSON-schema node into a structural CRD schema node."""
    ref = node.get("$ref")
    if ref:
        name = ref.removeprefix(_DEFS_PREFIX)
        if name == _OBJECT_META:
            return _embedded_metadata()
        if name in seen:  # a recursive type: accept it as it comes
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        return structural(defs[name], defs, seen + (name,))
    one_of = node.get("oneOf") or node.get("anyOf")
    if one_of:
        types = {t for option in one_of for t in _types(option)} - {"null"}
        if types <= {"string", "integer", "number"}:
            return {"x-kubernetes-int-or-string": True}
        return {"x-kubernetes-preserve-unknown-fields": True}
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT}
    kinds = [t for t in _types(node) if t != "null"]
    if kinds:
        out["type"] = kinds[0]
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: structural(v, defs, seen) for k, v in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        out["type"] = "object"
        out["additionalProperties"] = structural(node["additionalProperties"], defs, seen)
    if "items" in node:
        out["items"] = structural(node["items"], defs, seen)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    if kind is None:
        return []
    return [kind] if isinstance(kind, str) else list(kind)


def pod_template_schema() -> dict[str, Any]:
    defs = _definitions()
    return structural({"$ref": _DEFS_PREFIX + "io.k8s.api.core.v1.PodTemplateSpec"}, defs)


def replica_spec_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer", "format": "int32"},
            "restartPolicy": {"type": "string"},
            "template": pod_template_schema(),
        },
    }


def tfjob_schema() -> dict[str, Any]:
    """The openAPIV3Schema of tfjobs.kubeflow.org/v1."""
    quantity_map = {"type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True}}
    run_policy = {
        "type": "object",
        "properties": {
            "cleanPodPolicy": {"type": "string"},
            "backoffLimit": {"type": "integer", "format": "int32"},
            "activeDeadlineSeconds": {"type": "integer", "format": "int64"},
            "ttlSecondsAfterFinished": {"type": "integer", "format": "int32"},
            "suspend": {"type": "boolean"},
            # The webhook refuses any other manager.
            "managedBy": {"type": "string", "enum": ["kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"]},
            "schedulingPolicy": {
                "type": "object",
                "properties": {
                    "minAvailable": {"type": "integer", "format": "int32"},
                    "queue": {
                        "type": "string",
                        "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "spec.runPolicy.schedulingPolicy.queue is immutable"}
                        ],
                    },
                    "minResources": quantity_map,
                    "priorityClass": {"type": "string"},
                    "scheduleTimeoutSeconds": {"type": "integer", "format": "int32"},
                },
            },
        },
    }
    coordinators = ", ".join(f"'{t}'" for t in COORDINATORS)
    replica_specs = {
        "type": "object",
        "additionalProperties": replica_spec_schema(),
        # The operator's webhook rule, enforced by the API server even where that webhook cannot
        # run (a local process without a pod network). Like the webhook it counts the canonical
        # names only; a constant-cost rule, so the map needs no size bound.
        "x-kubernetes-validations": [
            {
                "rule": f"[{coordinators}].filter(k, k in self).size() <= 1",
                "message": "must not have more than 1 Chief or Master role",
            },
        ],
    }
    condition = {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            k: {"type": "string"} for k in ("type", "status", "reason", "message", "lastUpdateTime", "lastTransitionTime")
        },
    }
    status = {
        "type": "object",
        "properties": {
            "conditions": {"type": "array", "items": condition},
            "replicaStatuses": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "active": {"type": "integer", "format": "int32"},
                        "succeeded": {"type": "integer", "format": "int32"},
                        "failed": {"type": "integer", "format": "int32"},
                        "labelSelector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        "selector": {"type": "string"},
                    },
                },
            },
            "startTime": {"type": "string", "format": "date-time"},
            "completionTime": {"type": "string", "format": "date-time"},
            "lastReconcileTime": {"type": "string", "format": "date-time"},
        },
    }
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["tfReplicaSpecs"],
                "properties": {
                    "runPolicy": run_policy,
                    "successPolicy": {"type": "string"},
                    "enableDynamicWorker": {"type": "boolean"},
                    "tfReplicaSpecs": replica_specs,
                },
            },
            "status": status,
        },
    }
