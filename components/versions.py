"""Every upstream version and image the platform deploys, pinned in one place."""

KUBERNETES_VERSION = "1.36.0"  # the API the manifests are validated against (kubernetes-validate)

NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"

# JupyterHub as Zero to JupyterHub 4.4.0 ships it: the chart's hub image (JupyterHub 5.5.0,
# KubeSpawner 7.0.0, oauthenticator 17.4.0, NativeAuthenticator, jupyterhub-idle-culler 1.4.0;
# requirements.txt pins the same packages for the tests) and the proxy it pairs with. The local
# hub tests run the same proxy version from npm (tests/hub/package.json).
JUPYTERHUB_HUB_IMAGE = "quay.io/jupyterhub/k8s-hub:4.4.0"
CONFIGURABLE_HTTP_PROXY_VERSION = "5.2.0"
CONFIGURABLE_HTTP_PROXY_IMAGE = f"quay.io/jupyterhub/configurable-http-proxy:{CONFIGURABLE_HTTP_PROXY_VERSION}"

# Kubeflow training operator, v1 line (TFJob lives there; Trainer v2 dropped TensorFlow).
TRAINING_OPERATOR_VERSION = "v1.9.4"
TRAINING_OPERATOR_IMAGE = "ghcr.io/kubeflow/training-v1/training-operator:v1-93c5489"  # the v1.9.4 standalone overlay's tag
