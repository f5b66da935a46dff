"""The hub's configuration exactly as a stack deploys it, written out for a hub on this machine."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.hub_config import document as hub_config
from program import run_program

# KubeSpawner loads a kubeconfig when it is created; this one points at a closed port, so any
# call to a Kubernetes API fails fast instead of reaching a real cluster.
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: nobody, user: {token: not-a-token}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: nobody}}]
current-context: nowhere
"""


@dataclass
class RenderedHub:
    config_file: Path
    document_file: Path
    document: dict[str, Any]
    # What the hub's pod gets from Kubernetes: the secrets' environment and a kubeconfig.
    environment: dict[str, str]


def render_hub(config: dict[str, Any], secret_keys: tuple[str, ...], directory: Path) -> RenderedHub:
    """Run the program under mocks and write the hub ConfigMap's files into `directory`."""
    deployment = run_program(config, secret_keys)
    (config_map,) = [r for r in deployment.kubernetes_objects() if r.manifest()["metadata"]["name"] == "hub-config"]
    for name, text in config_map.manifest()["data"].items():
        (directory / name).write_text(text)
    (directory / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG)
    document_file = directory / hub_config.DOCUMENT_NAME
    document = json.loads(document_file.read_text())
    environment = {
        hub_config.DOCUMENT_ENV: str(document_file),
        "KUBECONFIG": str(directory / "kubeconfig"),
    }
    for traits in document["secretEnv"].values():
        for variable in traits.values():
            environment[variable] = secrets.token_hex(32)
    return RenderedHub(directory / hub_config.CONFIG_FILE.name, document_file, document, environment)
