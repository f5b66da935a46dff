"""The CPU and GPU trainer images: built and pushed, given, or the stock TensorFlow image.

- `mnist.image.build`: trainer/Dockerfile and trainer/Dockerfile.gpu built with the docker-build
  provider and pushed to `mnist.image.repository`, or on aks to an Azure Container Registry the
  cluster's kubelet identity may pull from.
- `mnist.image.reference`: a ready image, used for every replica.
- neither (the dev default, where no registry exists): the stock TensorFlow images at the
  trainer's TensorFlow version, running the trainer code mounted from a ConfigMap.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from stacks.azure_names import REGISTRY
from stacks.images import ImagesSettings
from stacks.mnist import ImageSettings

TRAINER_DIR = Path(__file__).resolve().parent.parent / "trainer"
ACR_PULL_ROLE = "7f951dda-4ed3-4680-a7ca-43fe172d538d"  # Azure's built-in AcrPull role


def registry_name() -> str:
    """A fresh Azure Container Registry name: "mlplatform" and 12 random hex digits."""
    name = f"mlplatform{secrets.token_hex(6)}"
    assert REGISTRY.problem(name) is None, REGISTRY.problem(name)
    return name


def trainer_sources() -> dict[str, str]:
    """The trainer package's Python files, by file name (what the ConfigMap mounts)."""
    return {path.name: path.read_text() for path in sorted(TRAINER_DIR.glob("*.py"))}


def source_tag() -> str:
    """A tag that changes exactly when the trainer's code, requirements or Dockerfiles change."""
    digest = hashlib.sha256()
    for path in sorted(TRAINER_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(TRAINER_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return f"src-{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class TrainerImageArgs:
    settings: ImageSettings
    images: ImagesSettings  # the stock TensorFlow images, when nothing is built or given
    # On aks, the cluster resource group and ManagedCluster, for the registry and its pull grant.
    resource_group_name: pulumi.Input[str] | None = None
    managed_cluster: Any = None


class TrainerImage(pulumi.ComponentResource):
    cpu_image: pulumi.Output[str]
    gpu_image: pulumi.Output[str]
    tensorboard_image: pulumi.Output[str]  # an image with the `tensorboard` command
    code_from_config_map: bool

    def __init__(self, name: str, args: TrainerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        settings = args.settings
        if settings.build and not settings.repository and args.managed_cluster is None:
            raise ValueError("TrainerImage: building needs a repository, or an aks cluster to create a registry in")
        super().__init__("mlplatform:trainer_image:TrainerImage", name, None, opts)
        self._name = name
        self.code_from_config_map = False
        if settings.build:
            self.cpu_image, self.gpu_image = self._build(settings, args)
        elif settings.reference:
            self.cpu_image = self.gpu_image = pulumi.Output.from_input(settings.reference)
        else:
            self.cpu_image = pulumi.Output.from_input(args.images.tensorflow)
            self.gpu_image = pulumi.Output.from_input(args.images.tensorflow_gpu)
            self.code_from_config_map = True
        # The stock TensorFlow image lacks TensorBoard (a separate package since TF 2.21); a built
        # trainer image carries it (trainer/requirements.txt), a given one must, and so does the
        # local trainer build that stands in for the stock image with `images.local`.
        stock = self.code_from_config_map and not args.images.local
        self.tensorboard_image = pulumi.Output.from_input(args.images.tensorboard) if stock else self.cpu_image
        self.register_outputs(
            {"cpu_image": self.cpu_image, "gpu_image": self.gpu_image, "tensorboard_image": self.tensorboard_image}
        )

    def _build(self, settings: ImageSettings, args: TrainerImageArgs) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        import pulumi_docker_build as docker_build

        registries: list[dict[str, Any]] = []
        if settings.repository:
            repository: pulumi.Input[str] = settings.repository
        else:
            repository, registry = self._azure_registry(args)
            registries.append(registry)
        tag = settings.tag or source_tag()
        images = []
        for variant, dockerfile, suffix in (("cpu", "Dockerfile", ""), ("gpu", "Dockerfile.gpu", "-gpu")):
            ref = pulumi.Output.concat(repository, ":", tag, suffix)
            image = docker_build.Image(
                f"{self._name}-{variant}",
                context={"location": str(TRAINER_DIR)},  # the Dockerfiles build with trainer/ as context
                dockerfile={"location": str(TRAINER_DIR / dockerfile)},
                platforms=["linux/amd64"],
                tags=[ref],
                push=True,
                registries=registries,
                opts=pulumi.ResourceOptions(parent=self),
            )
            # Run by digest, so a moved tag never changes what a pod runs.
            images.append(pulumi.Output.concat(repository, "@", image.digest))
        return images[0], images[1]

    def _azure_registry(self, args: TrainerImageArgs) -> tuple[pulumi.Output[str], dict[str, Any]]:
        from pulumi_azure_native import authorization, containerregistry

        parent = pulumi.ResourceOptions(parent=self)
        registry = containerregistry.Registry(
            f"{self._name}-acr",
            # Pulumi would auto-name it from the resource name, dashes included, which Azure refuses
            # (stacks/azure_names.py); registry names are global, so a random one, drawn once and
            # then kept from state, like the hub's secrets.
            registry_name=registry_name(),
            resource_group_name=args.resource_group_name,
            sku={"name": containerregistry.SkuName.BASIC},
            # The push needs credentials inside `pulumi up`; they stay Pulumi secrets.
            admin_user_enabled=True,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["registryName"]),
        )
        client = authorization.get_client_config_output()
        kubelet = args.managed_cluster.identity_profile.apply(lambda profile: profile["kubeletidentity"].object_id)
        authorization.RoleAssignment(
            f"{self._name}-acr-pull",
            principal_id=kubelet,
            principal_type=authorization.PrincipalType.SERVICE_PRINCIPAL,
            role_definition_id=client.subscription_id.apply(
                lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL_ROLE}"
            ),
            scope=registry.id,
            opts=parent,
        )
        credentials = containerregistry.list_registry_credentials_output(
            resource_group_name=args.resource_group_name, registry_name=registry.name
        )
        auth = {
            "address": registry.login_server,
            "username": credentials.username,
            "password": pulumi.Output.secret(credentials.passwords.apply(lambda p: p[0].value)),
        }
        return pulumi.Output.concat(registry.login_server, "/mlplatform-trainer"), auth
