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
# 400 of the dev stack's 1000 steps: its evaluations and checkpoints every 100 steps leave room for
# the kills of test_mnist_on_real_nodes.py, and on 2 shared cores the job then takes minutes.
TRAIN_STEPS = 400


def stack_config() -> dict[str, Any]:
    """The dev stack's config (a `local` stack): what `make up` deploys, with the test stack's own
    overrides."""
    dev = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config = {key.removeprefix(f"{NAMESPACE}:"): copy.deepcopy(value) for key, value in dev.items()}
    config["jupyterhub"]["cullIdleSeconds"] = CULL_IDLE_SECONDS
    config["mnist"]["trainSteps"] = TRAIN_STEPS
    return config
