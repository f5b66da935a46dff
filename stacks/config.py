"""The stack configuration of mlplatform, read once into typed, frozen settings.

Keys live in the project namespace `mlplatform` as five structured values, `cluster`,
`jupyterhub`, `mnist`, `images` and `kueue`, set with `pulumi config set --path`; each has its settings
module beside the others (stacks/cluster.py, jupyterhub.py, mnist.py, images.py, kueue.py, with the shared
value types in stacks/values.py). The shape (types, allowed values, unknown keys) is checked by
pydantic; the rules that tie several keys together are checked afterwards by each settings
class's `problems`, beside the settings it checks. Either way the result is one ConfigError whose
lines each name the key, the value and what is allowed, raised before any resource is
registered. This module holds the whole stack, `parse`, `load` and those messages. Each field's
description is the config reference: `make docs` writes it into Pulumi.yaml and the README.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError

import pulumi
from cluster.localcluster.capacity import Allocatable
from stacks.cluster import KUBECONFIG_ENV, LOCAL_KUBECONFIG, LOCAL_PROVIDERS, ClusterSettings, NodePool, this_machine
from stacks.images import ImagesSettings
from stacks.jupyterhub import JupyterHubSettings
from stacks.kueue import KueueSettings
from stacks.mnist import MnistSettings
from stacks.values import NAMESPACE, Settings


class ConfigError(pulumi.RunError):
    """A user mistake in stack config. RunError makes Pulumi print the message without a traceback."""


class StackSettings(Settings):
    cluster: ClusterSettings = Field(ClusterSettings(), description="Where to deploy, and its node pools")
    jupyterhub: JupyterHubSettings = Field(JupyterHubSettings(), description="Multi-user notebooks: JupyterHub with KubeSpawner")
    mnist: MnistSettings = Field(MnistSettings(), description="Distributed MNIST as a Kubeflow TFJob, with TensorBoard")
    images: ImagesSettings = Field(ImagesSettings(), description="Every image the stack runs, and the registry they come from")
    kueue: KueueSettings = Field(KueueSettings(), description="Quotas and queueing for notebooks and training with Kueue")

    def problems(self, secret_keys: frozenset[str]) -> list[str]:
        """Rules across keys, each problem naming the key it is about.

        `secret_keys` are the top-level keys Pulumi holds as secrets; a client secret anywhere else
        would sit in Pulumi.<stack>.yaml in plain text.
        """
        found = list(self.cluster.problems(f"{NAMESPACE}:cluster"))
        if self.jupyterhub.enabled:
            found += self.jupyterhub.problems(f"{NAMESPACE}:jupyterhub", self.cluster, "jupyterhub" in secret_keys)
        if self.mnist.enabled:
            found += self.mnist.problems(f"{NAMESPACE}:mnist", self.cluster)
        found += self.images.problems(f"{NAMESPACE}:images")
        if self.kueue.enabled:
            found += self.kueue.problems(
                f"{NAMESPACE}:kueue", self.cluster, self.jupyterhub if self.jupyterhub.enabled else None
            )
        # The cluster's config alone (all that stacks.local_nodes reads) says nothing of the workloads.
        if self.model_fields_set & {"jupyterhub", "mnist"}:
            found += self.unrequested_shares()
        mnist = self.mnist
        if mnist.enabled and mnist.fetches_from_image and not (self.images.local or mnist.image.build or mnist.image.reference):
            found.append(
                f"{NAMESPACE}:mnist.dataUrl: {mnist.data_url} is a file in the trainer image, and the stock TensorFlow "
                f"image has none; it is the sample of the images built here ({NAMESPACE}:images.local: true) or of an "
                "image of your own (mnist.image.build or mnist.image.reference); elsewhere give an http(s) URL"
            )
        return found


    def gpu_pools_requested(self) -> set[str]:
        """The GPU pools the stack's workloads land on to ask for GPUs: each GPU profile's pool (or
        the pools of the GPU types it offers) and each TFJob replica type's."""
        cluster = self.cluster
        wanted: list[NodePool | None] = []
        if self.jupyterhub.enabled:
            types = cluster.gpu_types()
            for profile in self.jupyterhub.profiles:
                if profile.gpu_types:
                    wanted += [p for t in profile.gpu_types for p in types.get(t, ())]
                elif profile.gpus:
                    wanted.append(cluster.pool_for(profile.gpus))
        if self.mnist.enabled:
            wanted += [cluster.pool_for(n) for n in self.mnist.gpu_counts.values()]
        return {pool.name for pool in wanted if pool is not None}

    def unrequested_shares(self) -> list[str]:
        """A pool that advertises its GPUs under the renamed shared resource, which no workload of
        the stack lands on to ask for: nothing would ever use those GPUs."""
        cluster = self.cluster
        landing = self.gpu_pools_requested()
        return [
            f"{cluster.pool_key(NAMESPACE + ':cluster', pool)}.gpuSharing.renameByDefault: node pool {pool.name} "
            f"advertises its GPUs only as {pool.gpu_resource}, and no GPU profile (jupyterhub.profiles[].gpus) or "
            "TFJob replica (mnist.gpus) lands there to ask for it; give one a GPU count the pool serves, or leave "
            "renameByDefault false"
            for pool in cluster.node_pools
            if pool.gpu_sharing and pool.gpu_sharing.rename_by_default and pool.gpus_per_node and pool.name not in landing
        ]


TOP_LEVEL_KEYS = tuple(StackSettings.model_fields)


def parse(
    raw: Mapping[str, Any],
    secret_keys: frozenset[str] = frozenset(),
    local_kubeconfig: str = LOCAL_KUBECONFIG,
    local_node: Callable[[], Allocatable] | None = None,
) -> StackSettings:
    """Validate raw stack config (top-level key -> decoded value) into settings.

    `local_kubeconfig` is the kubeconfig of the local cluster, for a kwok stack that names none.
    `local_node` tells what each real node of a `local` cluster offers pods (this machine's
    allocatable, `this_machine`); it is asked only for cluster.provider local, and without it
    requests are not checked against those nodes.
    """
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(
            "\n".join(f"{NAMESPACE}:{key}: unknown key; allowed: {', '.join(TOP_LEVEL_KEYS)}" for key in unknown)
        )
    try:
        settings = StackSettings.model_validate(dict(raw))
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(e) for e in error.errors())) from None
    if settings.cluster.provider == "local" and local_node is not None:
        settings = settings.model_copy(update={"cluster": settings.cluster.on_machine(local_node())})
    problems = settings.problems(secret_keys)
    if problems:
        raise ConfigError("\n".join(problems))
    if settings.cluster.provider in LOCAL_PROVIDERS and settings.cluster.kubeconfig is None:
        cluster = settings.cluster.model_copy(update={"kubeconfig": local_kubeconfig})
        settings = settings.model_copy(update={"cluster": cluster})
    return _pulled(settings)


def _pulled(settings: StackSettings) -> StackSettings:
    """`settings` with every image reference as pods pull it (the local build with `images.local`,
    else through `images.registry`), so that components, the spawn form and the stack's outputs all
    name what really runs."""
    images = settings.images
    if not (images.registry or images.local):
        return settings
    if images.local:
        from images.recipe import RecipeError, load, names

        for name in names():
            try:  # the local build's tag, which needs all it is made from
                load(name).tag()
            except RecipeError as error:
                raise ConfigError(f"{NAMESPACE}:images.local: image {name}: {error}") from None
    hub, mnist = settings.jupyterhub, settings.mnist
    profiles = tuple(p.model_copy(update={"image": images.pull(p.image)}) for p in hub.profiles)
    reference = mnist.image.reference and images.pull(mnist.image.reference)
    return settings.model_copy(
        update={
            "images": images.model_copy(update={f: images.pull(getattr(images, f)) for f in images.IMAGE_FIELDS}),
            "jupyterhub": hub.model_copy(update={"profiles": profiles}),
            "mnist": mnist.model_copy(update={"image": mnist.image.model_copy(update={"reference": reference})}),
        }
    )


def load() -> StackSettings:
    """Read this stack's `mlplatform:*` config from the Pulumi runtime and validate it."""
    config = pulumi.Config(NAMESPACE)
    prefix = f"{NAMESPACE}:"
    names = {key[len(prefix):] for key in _all_config_keys() if key.startswith(prefix)}
    raw: dict[str, Any] = {}
    for name in sorted(names):
        text = config.get(name)
        try:
            raw[name] = json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            raw[name] = text
    secret_keys = frozenset(name for name in names if pulumi.runtime.is_config_secret(f"{prefix}{name}"))
    # A `local` cluster's real nodes are this machine (bin/cluster up --real runs them here).
    return parse(raw, secret_keys, os.environ.get(KUBECONFIG_ENV) or LOCAL_KUBECONFIG, this_machine)


def _all_config_keys() -> set[str]:
    """Every config key the engine handed the program.

    The SDK has no public call that lists them: `pulumi.Config` reads one key at a time, and the
    engine does not refuse undeclared keys in the project's namespace. A misspelt top-level key
    must fail, not be ignored, so this reads the map `set_all_config` filled (and the
    PULUMI_CONFIG environment that `get_config` falls back to).
    """
    from pulumi.runtime import config as runtime_config

    return set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())




# --- messages ----------------------------------------------------------------------------------


def _key_path(loc: tuple[Any, ...]) -> str:
    path = NAMESPACE + ":"
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if i else "") + str(part)
    return path


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings class that holds the value at `loc`, to list its allowed keys."""
    model: Any = StackSettings
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = _settings_class(field.annotation)
        if model is None:
            return None
    return model


def _settings_class(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) else ():
        found = _settings_class(arg)
        if found:
            return found
    return None


def _allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _describe(error: Any) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    # Pydantic puts the type tag (such as `function-after[...]`) into loc for annotated types.
    loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
    key = _key_path(loc)
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = f"; allowed: {_allowed_keys(parent)}" if parent else ""
        return f"{key}: unknown key{allowed}"
    if kind == "missing":
        return f"{key}: required"
    if kind == "literal_error":
        return f"{key}: {json.dumps(value)} is not allowed; allowed: {error['ctx']['expected']} (case matters)"
    message = error["msg"].removeprefix("Value error, ")
    if kind in ("greater_than_equal", "greater_than"):
        message = f"must be {'>=' if kind == 'greater_than_equal' else '>'} {error['ctx'].get('ge', error['ctx'].get('gt'))}"
    return f"{key}: {json.dumps(value, default=str)} {message[0].lower()}{message[1:]}"
