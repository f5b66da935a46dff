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
# The GPU profile's servers (test_shared_gpu_notebooks.py): culled after one idle minute, half the
# hub's two, so that a GPU server goes while a CPU server of the same age stays; a server that finds
# every GPU share taken gives up after 90 s (a pod with its image imported runs in seconds); and
# guarantees small enough for four of them on the GPU node's two cores.
GPU_CULL_IDLE_SECONDS = 60
GPU_START_TIMEOUT_SECONDS = 90
GPU_GUARANTEES = {"cpuGuarantee": "250m", "memoryGuarantee": "1Gi"}
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
    (gpu,) = [p for p in config["jupyterhub"]["profiles"] if p.get("gpus")]
    gpu.update(cullIdleSeconds=GPU_CULL_IDLE_SECONDS, startTimeoutSeconds=GPU_START_TIMEOUT_SECONDS, **GPU_GUARANTEES)
    return config
