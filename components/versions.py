"""Every upstream version and image the platform deploys, pinned in one place."""

KUBERNETES_VERSION = "1.36.0"  # the API the manifests are validated against (kubernetes-validate)

NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"

# Kubeflow training operator, v1 line (TFJob lives there; Trainer v2 dropped TensorFlow).
TRAINING_OPERATOR_VERSION = "v1.9.4"
TRAINING_OPERATOR_IMAGE = "ghcr.io/kubeflow/training-v1/training-operator:v1-93c5489"  # the v1.9.4 standalone overlay's tag
