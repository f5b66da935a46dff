"""Every upstream version and image the platform deploys, read from the one versions file.

`versions.env` at the repository root holds the pins (the shell scripts source the same file);
Python packages are pinned in the requirements files, which `package_pin` (images/pins.py) reads.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VERSIONS_FILE = REPO / "versions.env"

_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(\S*)\s*(#.*)?$")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as a shell sources them (no quoting, no expansion); comments and blank lines skipped."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _ASSIGNMENT.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: expected NAME=value, got {line!r}")
        values[match.group(1)] = match.group(2)
    return values


def package_pin(package: str) -> str:
    """The version the requirements files pin `package` to (`package==version`)."""
    from images.pins import pin  # images.pins reads versions.env through this module

    return pin(package)


PINS = read_env_file(VERSIONS_FILE)

# kubernetes-validate ships one schema per minor release (named x.y.0); every patch release of a
# minor serves the same API.
KUBERNETES_API_VERSION = re.sub(r"^v?(\d+\.\d+)\..*$", r"\1.0", PINS["KUBERNETES_VERSION"])

NVIDIA_DEVICE_PLUGIN_IMAGE = f"nvcr.io/nvidia/k8s-device-plugin:{PINS['NVIDIA_DEVICE_PLUGIN_VERSION']}"
JUPYTERHUB_HUB_IMAGE = f"quay.io/jupyterhub/k8s-hub:{PINS['ZERO_TO_JUPYTERHUB_VERSION']}"
CONFIGURABLE_HTTP_PROXY_VERSION = PINS["CONFIGURABLE_HTTP_PROXY_VERSION"]
CONFIGURABLE_HTTP_PROXY_IMAGE = f"quay.io/jupyterhub/configurable-http-proxy:{CONFIGURABLE_HTTP_PROXY_VERSION}"
TRAINING_OPERATOR_VERSION = PINS["TRAINING_OPERATOR_VERSION"]
TRAINING_OPERATOR_IMAGE = f"ghcr.io/kubeflow/training-v1/training-operator:{PINS['TRAINING_OPERATOR_IMAGE_TAG']}"

# The stock TensorFlow images at the trainer's TensorFlow version: they run the trainer code from
# a ConfigMap (and TensorBoard) when no trainer image is built or given.
TENSORFLOW_IMAGE = f"tensorflow/tensorflow:{package_pin('tensorflow-cpu')}"
TENSORFLOW_GPU_IMAGE = f"{TENSORFLOW_IMAGE}-gpu"
