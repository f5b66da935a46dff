"""The hub's configuration file, mounted into the k8s-hub image beside its rendered document.

Everything the platform decides about the hub is data in the document (mlplatform-hub.json,
rendered by components/hub_config/document.py from the stack's settings). This file loads it
and adds the two things that cannot be data:
- secrets, from environment variables that Kubernetes fills from Secrets (never in the ConfigMap);
- hub-managed services, run by this hub's own interpreter, which is the one that has them installed.
It must run with only JupyterHub and its plugins installed: it imports nothing from mlplatform.
"""

import json
import os
import sys
from pathlib import Path

from traitlets.config import Config

c = get_config()  # noqa: F821 (provided by traitlets when it executes this file)

_document_path = Path(os.environ.get("MLPLATFORM_HUB_CONFIG", Path(__file__).with_name("mlplatform-hub.json")))
_document = json.loads(_document_path.read_text())

c.merge(Config(_document["traits"]))

for _section, _traits in _document["secretEnv"].items():
    for _trait, _variable in _traits.items():
        _value = os.environ.get(_variable)
        # A hub started without its secrets would make up its own and then fail in confusing ways
        # (a proxy it may not talk to, sessions lost on restart): refuse to start instead.
        if not _value:
            raise RuntimeError(f"{_section}.{_trait}: environment variable {_variable} is not set")
        c[_section][_trait] = _value

c.JupyterHub.services = [
    {"name": _service["name"], "command": [sys.executable, "-m", _service["module"], *_service["args"]]}
    for _service in _document["managedServices"]
]
