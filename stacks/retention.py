"""What user data the stack holds, and the config changes that would lose it (issue 24, item 1).

A team's work lives in volumes: the hub's database (`hub-db-dir`: users, approvals, tokens) and
the users' homes (KubeSpawner's `claim-<user>`, which the stack never declares: they live and die
with the hub's namespace), and the training job's shared volume (data, checkpoints, logs). With
`dataRetention: keep` (the default) the namespaces and the declared claims are kept when Pulumi
would delete them (`retainOnDelete`), so `pulumi destroy` leaves them, and a later `pulumi up`
adopts them again (Server-Side Apply upserts an object that exists).

What retainOnDelete cannot do is tell a user that an edit leaves the data behind: a renamed
namespace or job, a capability switched off, a claim whose StorageClass changes (the provider
replaces a claim for that). So every deployment exports `kept_data(settings)` (the stack output
`keptData`), the next one reads it back (components/kept_data.py) and `problems` compares: each
change that would lose data fails the preview, naming the key and the volumes, unless both the
last deployment and this config say `dataRetention: delete`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from stacks.config import StackSettings
from stacks.values import NAMESPACE

# The stack output that records what the deployment keeps.
OUTPUT = "keptData"
HUB_DB_CLAIM = "hub-db-dir"
HOME_CLAIMS = "claim-<user>"  # KubeSpawner's pvc_name_template, claim-{user_server}
# A claim of the cluster's default StorageClass (storageClass unset), as the record writes it:
# stack outputs drop null values inside maps.
DEFAULT_CLASS = "<default>"


def data_claim(job_name: str) -> str:
    """The training job's shared volume: data, checkpoints and logs."""
    return f"{job_name}-data"


def kept_data(settings: StackSettings) -> dict[str, Any]:
    """Per capability deployed: its namespace, its declared claims (name -> the StorageClass key's
    value, DEFAULT_CLASS for the cluster's default) and its dataRetention."""
    kept: dict[str, Any] = {}
    if settings.jupyterhub.enabled:
        hub = settings.jupyterhub
        kept["jupyterhub"] = {
            "namespace": hub.namespace,
            "claims": {HUB_DB_CLAIM: hub.storage.storage_class or DEFAULT_CLASS},
            "dataRetention": hub.data_retention,
        }
    if settings.mnist.enabled:
        mnist = settings.mnist
        kept["mnist"] = {
            "namespace": mnist.namespace,
            "claims": {data_claim(mnist.job_name): mnist.storage.storage_class or DEFAULT_CLASS},
            "dataRetention": mnist.data_retention,
        }
    return kept


def _volumes(capability: str, before: Mapping[str, Any]) -> str:
    claims = list(before["claims"])
    if capability == "jupyterhub":
        what = f"the hub's database ({', '.join(claims)}: users, approvals, tokens) and every user's home ({HOME_CLAIMS})"
    else:
        what = f"the training volume ({', '.join(claims)}: data, checkpoints, logs)"
    return f"{what} in namespace {before['namespace']!r}"


def _changes(capability: str, before: Mapping[str, Any], now: Mapping[str, Any] | None) -> Iterator[tuple[str, str]]:
    """(key, what changes) for each edit that would delete, replace or strand the volumes."""
    if now is None:
        yield f"{capability}.enabled", "false"
        return
    if now["namespace"] != before["namespace"]:
        yield f"{capability}.namespace", f"{json.dumps(before['namespace'])} -> {json.dumps(now['namespace'])}"
    for claim, storage_class in before["claims"].items():
        if claim not in now["claims"]:
            yield f"{capability}.jobName", f"renames the volume {claim} -> {', '.join(now['claims'])}"
        elif now["claims"][claim] != storage_class:
            yield (
                f"{capability}.storage.storageClass",
                f"{json.dumps(storage_class)} -> {json.dumps(now['claims'][claim])} replaces {claim}",
            )


def problems(previous: Mapping[str, Any] | None, settings: StackSettings) -> list[str]:
    """What this config would lose of the data the last deployment (`previous`, its `keptData`)
    kept; one message per changed key."""
    now = kept_data(settings)
    found = []
    for capability, before in (previous or {}).items():
        current = now.get(capability)
        retention = getattr(settings, capability).data_retention
        if before.get("dataRetention") == "delete" and retention == "delete":
            continue
        for key, change in _changes(capability, before, current):
            found.append(
                f"{NAMESPACE}:{key}: {change} would delete, replace or strand {_volumes(capability, before)}. "
                f"Keep the old value; or, to delete that data for good, first set {NAMESPACE}:{capability}.dataRetention "
                "to delete and run `pulumi up` without other changes, then make this change (docs/data.md)"
            )
    return found
