"""The Pulumi program under mocks, and the example stacks' config (imported as `program`)."""

from __future__ import annotations

import base64
import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cluster.localcluster.capacity import Allocatable  # noqa: E402

FAKE_KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"

# What each real node of the machine the example stacks are sized for offers pods (2 cores, 24 GiB):
# the allocatable its kubelet reports. The program under mocks sees this machine, not the one the
# tests run on, so that a `local` stack's capacity check does not depend on where they run.
DEV_MACHINE = Allocatable(cpu="2", memory="24581184Ki")


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]
    provider: str | None

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object this resource declares, as the API server would receive it."""
        return {k: reveal(v) for k, v in self.inputs.items() if k not in ("__meta", "__internal")}


# The kubernetes provider's component resources: they stand for many objects, not one.
COMPONENT_TYPES = ("kubernetes:yaml/v2:ConfigFile",)

# The API server as the mocked cluster's `kubernetes` EndpointSlice has it (addresses, port): the
# local cluster's advertised address and a port of its loopback range.
MOCK_API_SERVER = (("192.0.2.2",), 32443)

# Mocks record a Pulumi secret input as {SECRET_SIG: <secret marker>, "value": <the value>}.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def reveal(value: Any) -> Any:
    """`value` with every Pulumi secret inside it replaced by what it holds."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


@dataclass
class Deployment:
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Each resource's options as the program gave them (mocks see only inputs), by resource name.
    options: dict[str, pulumi.ResourceOptions] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_token]

    def kubernetes_objects(self) -> list[Resource]:
        """The Kubernetes objects the program declares itself (not the provider's components, such
        as a yaml/v2 ConfigFile, whose objects the provider reads from a manifest)."""
        return [
            r for r in self.resources
            if r.type.startswith("kubernetes:") and r.type != "pulumi:providers:kubernetes" and r.type not in COMPONENT_TYPES
        ]

    def named(self, name: str) -> Resource:
        matches = [r for r in self.resources if r.name == name]
        assert matches, f"no resource named {name}; have {[r.name for r in self.resources]}"
        return matches[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Records every resource; answers the invokes the program makes and refuses any other."""

    def __init__(self, deployment: Deployment, previous_outputs: dict[str, Any] | None = None) -> None:
        self.deployment = deployment
        # What a StackReference reads: the outputs of the stack's last deployment (the program
        # reads its own, components/kept_data.py).
        self.previous_outputs = previous_outputs or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        # The cluster component reads the API server's EndpointSlice (`.get`): an object of the
        # cluster, not one the program declares.
        if args.typ == "kubernetes:discovery.k8s.io/v1:EndpointSlice" and args.resource_id == "default/kubernetes":
            return args.resource_id, {"endpoints": [{"addresses": list(MOCK_API_SERVER[0])}],
                                      "ports": [{"name": "https", "port": MOCK_API_SERVER[1]}]}
        self.deployment.resources.append(Resource(args.typ, args.name, dict(args.inputs), args.provider))
        outputs = dict(args.inputs)
        if args.typ.startswith("azure-native:"):
            outputs.setdefault("name", args.name)
            outputs["id"] = f"/subscriptions/sub/resourceGroups/rg/providers/{args.typ}/{args.name}"
        if args.typ == "azure-native:containerservice:ManagedCluster":
            outputs["identityProfile"] = {"kubeletidentity": {"objectId": "kubelet-object-id"}}
        if args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{args.name}.azurecr.io"
        if args.typ == "pulumi:pulumi:StackReference":
            outputs = {"name": args.name, "outputs": self.previous_outputs, "secretOutputNames": []}
        if args.typ == "docker-build:index:Image":
            outputs["digest"] = "sha256:" + "0" * 64
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            encoded = base64.b64encode(FAKE_KUBECONFIG.encode()).decode()
            return {"kubeconfigs": [{"name": "clusterUser", "value": encoded}]}
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": "sub", "tenantId": "tenant", "clientId": "client", "objectId": "object"}
        if args.token == "azure-native:containerregistry:listRegistryCredentials":
            return {"username": "registry-user", "passwords": [{"name": "password", "value": "registry-password"}]}
        raise NotImplementedError(f"the program invoked {args.token}, which these mocks do not know")


def run_program(
    config: dict[str, Any], secret_keys: tuple[str, ...] = (), stack: str = "test", machine: Allocatable = DEV_MACHINE,
    previous_outputs: dict[str, Any] | None = None,
) -> Deployment:
    """Run __main__.py under mocks with `config` (top-level key -> value) as mlplatform stack config,
    on a machine whose real nodes offer `machine`, after a deployment that exported `previous_outputs`."""
    deployment = Deployment()
    pulumi.runtime.set_mocks(RecordingMocks(deployment, previous_outputs), project="mlplatform", stack=stack, preview=False)
    pulumi.runtime.set_all_config(
        {f"mlplatform:{k}": json.dumps(v) for k, v in config.items()},
        [f"mlplatform:{k}" for k in secret_keys],
    )
    program = runpy.run_path(str(ROOT / "__main__.py"), run_name="program")

    def record_options(args: pulumi.ResourceTransformationArgs) -> None:
        deployment.options[args.name] = args.opts

    @pulumi.runtime.test
    def run():
        pulumi.runtime.register_stack_transformation(record_options)
        program["main"]()
        return pulumi.Output.from_input(None)

    # stacks.load() learns the machine through this one function.
    with mock.patch("stacks.config.this_machine", lambda: machine):
        run()
    # The mocked stack resource holds what the program exported.
    deployment.outputs = _exports()
    return deployment


def run_components(build: Any) -> Deployment:
    """Call `build()` (which creates components directly) under mocks; what it registered."""
    deployment = Deployment()
    pulumi.runtime.set_mocks(RecordingMocks(deployment), project="mlplatform", stack="test", preview=False)

    @pulumi.runtime.test
    def run():
        build()
        return pulumi.Output.from_input(None)

    run()
    return deployment


def _exports() -> dict[str, Any]:
    from pulumi.runtime.settings import get_root_resource

    root = get_root_resource()
    outputs = getattr(root, "outputs", {}) or {}
    resolved = {}
    for key, value in outputs.items():
        resolved[key] = _resolve(value)
    return resolved


def _resolve(value: Any) -> Any:
    from pulumi.runtime.sync_await import _sync_await

    if isinstance(value, pulumi.Output):
        return _sync_await(value.future())
    return value


def example_stack(name: str) -> dict[str, Any]:
    """The mlplatform config of Pulumi.<name>.yaml, keys without the namespace."""
    document = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
    prefix = "mlplatform:"
    return {k[len(prefix):]: v for k, v in document["config"].items() if k.startswith(prefix)}


def dev_stack_with_upstream_images(images: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dev stack running the upstream images (`images` instead of `local: true`): the trainer
    then fetches its data over the network, not from the sample the local build carries."""
    config = example_stack("dev")
    config["images"] = images or {}
    config["mnist"] = {k: v for k, v in config["mnist"].items() if k != "dataUrl"}
    return config


def aks_stack() -> tuple[dict[str, Any], tuple[str, ...]]:
    """The aks example with the client secret a user sets with `pulumi config set --secret`."""
    config = example_stack("aks")
    config["jupyterhub"]["auth"]["clientSecret"] = "client-secret-for-tests"
    return config, ("jupyterhub",)
