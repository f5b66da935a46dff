"""The test stack's config: the dev stack's, as a `local` stack, with the tests' own overrides.

A module of its own (not conftest.py) so that tests can import it: several test directories have
a conftest.py, and `import conftest` gets whichever pytest loaded last.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from e2e.local_stack import NAMESPACE, ROOT

# Idle servers stopped after two minutes, so that a test sees the culler at work
# (test_notebooks_on_real_nodes.py).
CULL_IDLE_SECONDS = 120


def stack_config() -> dict[str, Any]:
    """The dev stack's config as a `local` stack: what `make up` would deploy once the dev stack is
    local, with the test stack's own overrides."""
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config = {key.removeprefix(f"{NAMESPACE}:"): copy.deepcopy(value) for key, value in dev.items()}
    config["cluster"]["provider"] = "local"
    config["jupyterhub"]["cullIdleSeconds"] = CULL_IDLE_SECONDS
    return config
