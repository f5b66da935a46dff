"""Every image the stack runs, and where pods pull them from (`mlplatform:images`).

The defaults are vocab/versions.py's pins; `images.local` swaps in what images/ builds here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from pydantic import Field

from stacks.jupyterhub import DEFAULT_PROFILES
from stacks.values import DnsLabel, PinnedImage, Registry, Settings
from vocab.versions import (
    CONFIGURABLE_HTTP_PROXY_IMAGE,
    JUPYTERHUB_HUB_IMAGE,
    KUEUE_IMAGE,
    NVIDIA_DEVICE_PLUGIN_IMAGE,
    TENSORFLOW_GPU_IMAGE,
    TENSORFLOW_IMAGE,
    TRAINING_OPERATOR_IMAGE,
)


def mirrored(image: str, registry: str) -> str:
    """`image` pulled from `registry` instead: its path and tag or digest kept, its registry replaced.

    Docker Hub images keep Docker's full path (`ubuntu:24.04` is `library/ubuntu:24.04`), as
    registry mirrors and pull-through caches serve them.
    """
    first, slash, rest = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        path = rest
    elif slash:
        path = image
    else:
        path = f"library/{image}"
    return f"{registry}/{path}"


class ImagesSettings(Settings):
    registry: Registry | None = Field(
        None,
        description="a registry mirror every image is pulled from instead (notebook profiles' and "
        "mnist.image.reference included): `<registry>/<path>:<tag>`, the image's path without its registry",
    )
    local: bool = Field(
        False,
        description="run the images `make images` builds on this machine (images/) in place of the upstream ones "
        "they stand in for, GPU variants included; for the local cluster, whose nodes pull from no registry",
    )
    pull_secrets: tuple[DnsLabel, ...] = Field(
        (),
        description="names of `kubernetes.io/dockerconfigjson` Secrets every pod pulls with (create them in "
        "each namespace: jupyterhub, mnist, kubeflow, kube-system)",
    )
    hub: PinnedImage = Field(JUPYTERHUB_HUB_IMAGE, description="JupyterHub with KubeSpawner (Zero to JupyterHub's k8s-hub)")
    proxy: PinnedImage = Field(CONFIGURABLE_HTTP_PROXY_IMAGE, description="configurable-http-proxy")
    tensorflow: PinnedImage = Field(
        TENSORFLOW_IMAGE, description="TensorFlow (CPU) that runs the trainer from a ConfigMap when no trainer image is built or given"
    )
    tensorflow_gpu: PinnedImage = Field(TENSORFLOW_GPU_IMAGE, description="TensorFlow (GPU), likewise, for replicas with GPUs")
    tensorboard: PinnedImage = Field(
        DEFAULT_PROFILES[0].image,
        description="TensorBoard where no trainer image is built or given (those carry TensorBoard and run it): "
        "the notebooks' Jupyter Docker Stacks TensorFlow image, which runs as a non-root user",
    )
    training_operator: PinnedImage = Field(TRAINING_OPERATOR_IMAGE, description="the Kubeflow training operator")
    kueue: PinnedImage = Field(KUEUE_IMAGE, description="the Kueue manager (`kueue.enabled`)")
    nvidia_device_plugin: PinnedImage = Field(NVIDIA_DEVICE_PLUGIN_IMAGE, description="the NVIDIA device plugin on GPU pools (aks, existing)")

    IMAGE_FIELDS: ClassVar[tuple[str, ...]] = (
        "hub", "proxy", "tensorflow", "tensorflow_gpu", "tensorboard", "training_operator", "kueue",
        "nvidia_device_plugin",
    )

    def pull(self, image: str) -> str:
        """What a pod runs for `image`: its local build, or the image from the mirror, when set."""
        if self.local:
            from images.recipe import local_reference

            return local_reference(image) or image
        return mirrored(image, self.registry) if self.registry else image

    def pull_policy(self) -> str:
        """The imagePullPolicy of the containers that would otherwise check the registry on every start.

        `Always` makes the kubelet check the registry's digest and the pod's pull credentials on
        every start instead of trusting a node's cache. The local builds are in no registry: the
        real nodes have them imported (cluster/localcluster/images.py), so `Never`, and an image
        a node lacks fails its pod at once with ErrImageNeverPull naming it, never ImagePullBackOff.
        """
        return "Never" if self.local else "Always"

    def never_pulled(self) -> dict[str, str]:
        """For containers that keep Kubernetes' default policy upstream (IfNotPresent, for a
        tagged image): `imagePullPolicy: Never` with the local builds, as pull_policy() says why."""
        return {"imagePullPolicy": "Never"} if self.local else {}

    def problems(self, key: str) -> Iterator[str]:
        if self.local and self.registry:
            yield f"{key}.registry: set either images.registry or images.local, not both"

    def image_pull_secrets(self) -> list[dict[str, str]]:
        """A PodSpec's imagePullSecrets."""
        return [{"name": name} for name in self.pull_secrets]
