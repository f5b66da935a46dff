"""Every upstream version and image the platform deploys, pinned in one place."""

KUBERNETES_VERSION = "1.36.0"  # the API the manifests are validated against (kubernetes-validate)

NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
