"""Every upstream version and image the platform deploys, from the project's pins.

`versions.env` at the repository root holds the pins (the shell scripts source the same file);
Python packages are pinned in the requirements files. images/pins.py reads both.
"""

from __future__ import annotations

import re

from images.pins import ROOT as REPO  # noqa: F401 (the repository's root, which tests import from here)
from images.pins import VERSIONS_FILE, read_env_file
from images.pins import pin as package_pin

PINS = read_env_file(VERSIONS_FILE)

# kubernetes-validate ships one schema per minor release (named x.y.0); every patch release of a
# minor serves the same API.
KUBERNETES_API_VERSION = re.sub(r"^v?(\d+\.\d+)\..*$", r"\1.0", PINS["KUBERNETES_VERSION"])

NVIDIA_DEVICE_PLUGIN_IMAGE = f"nvcr.io/nvidia/k8s-device-plugin:{PINS['NVIDIA_DEVICE_PLUGIN_VERSION']}"
JUPYTERHUB_HUB_IMAGE = f"quay.io/jupyterhub/k8s-hub:{PINS['ZERO_TO_JUPYTERHUB_VERSION']}"
CONFIGURABLE_HTTP_PROXY_VERSION = PINS["CONFIGURABLE_HTTP_PROXY_VERSION"]
CONFIGURABLE_HTTP_PROXY_IMAGE = f"quay.io/jupyterhub/configurable-http-proxy:{CONFIGURABLE_HTTP_PROXY_VERSION}"
# cert-manager's static install, as its release publishes it (jupyterhub.https.installCertManager).
CERT_MANAGER_VERSION = PINS["CERT_MANAGER_VERSION"]
CERT_MANAGER_MANIFEST = f"https://github.com/cert-manager/cert-manager/releases/download/{CERT_MANAGER_VERSION}/cert-manager.yaml"
TRAINING_OPERATOR_VERSION = PINS["TRAINING_OPERATOR_VERSION"]
KUEUE_VERSION = PINS["KUEUE_VERSION"]
KUEUE_IMAGE = f"registry.k8s.io/kueue/kueue:{KUEUE_VERSION}"
TRAINING_OPERATOR_IMAGE = f"ghcr.io/kubeflow/training-v1/training-operator:{PINS['TRAINING_OPERATOR_IMAGE_TAG']}"

# The stock TensorFlow images at the trainer's TensorFlow version: they run the trainer code from
# a ConfigMap (and TensorBoard) when no trainer image is built or given.
TENSORFLOW_IMAGE = f"tensorflow/tensorflow:{package_pin('tensorflow-cpu')}"
TENSORFLOW_GPU_IMAGE = f"{TENSORFLOW_IMAGE}-gpu"
