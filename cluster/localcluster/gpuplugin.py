"""Simulated GPUs on a real node: `simulated-gpu-device-plugin` (tools/build.sh kubernetes-node)
advertises NODE's gpus through the kubelet's real device-plugin API, so the kubelet counts and
allocates them as on a GPU node. The GPUs are named `simulated-gpu-N`; containers given one run on
CPU and see MLPLATFORM_SIMULATED_GPUS (the GPUs' ids); the node carries `mlplatform.dev/gpu: simulated`.

A pool that time-slices its GPUs (`gpuSharing`) gets what NVIDIA's device plugin advertises for
the same config: each GPU as `replicas` devices `simulated-gpu-N::R`, under `nvidia.com/gpu` or,
renamed, `nvidia.com/gpu.shared`, and with failRequestsGreaterThanOne a container asking for more
than one share refused at allocation. The arithmetic is here (device_ids, advertised); the Go
command serves the ids it is given.
"""

from __future__ import annotations

from pathlib import Path

from .process import Daemon
from .settings import NodeSettings, NodeSpec

GPU_RESOURCE = "nvidia.com/gpu"
SIMULATED_LABEL = ("mlplatform.dev/gpu", "simulated")
# Every simulated device id starts so (the Go command refuses any other): a pod, a log or `kubectl
# describe node` never passes a simulated GPU off as a real one.
DEVICE_PREFIX = "simulated-gpu-"
# NVIDIA's device plugin names a GPU's shares `<gpu id>::<replica>`.
REPLICA_SEPARATOR = "::"


def device_ids(gpus: int, replicas: int = 1) -> list[str]:
    """The devices a node with `gpus` GPUs advertises, each GPU as `replicas` shares when shared."""
    if replicas <= 1:
        return [f"{DEVICE_PREFIX}{i}" for i in range(gpus)]
    return [f"{DEVICE_PREFIX}{i}{REPLICA_SEPARATOR}{r}" for i in range(gpus) for r in range(replicas)]


def advertised(spec: NodeSpec) -> tuple[str, int]:
    """The extended resource the node's GPUs are advertised as, and how many of it."""
    sharing = spec.gpu_sharing
    if sharing is None:
        return GPU_RESOURCE, spec.gpus
    return sharing.resource, spec.gpus * sharing.replicas


def plugin_args(spec: NodeSpec) -> list[str]:
    """The command's flags for the node: its resource, its device ids, and the one-share rule."""
    resource, _ = advertised(spec)
    sharing = spec.gpu_sharing
    args = [f"--resource={resource}", "--devices=" + ",".join(device_ids(spec.gpus, sharing.replicas if sharing else 1))]
    if sharing and sharing.fail_requests_greater_than_one:
        args.append("--fail-requests-greater-than-one")
    return args


class GpuPlugin:
    def __init__(self, node: NodeSettings, tools: dict[str, str]):
        self.node = node
        self.daemon = Daemon(
            "simulated-gpu-device-plugin",
            [str(Path(tools["KUBERNETES_NODE_DIR"]) / "bin" / "simulated-gpu-device-plugin"), *plugin_args(node.spec)],
            node.state_dir,
            # Its socket goes beside the kubelet's, in the node's own device-plugin directory.
            mount_ns=node.mount_ns,
        )

    def start(self) -> None:
        if self.node.spec.gpus:
            self.daemon.start()

    def ready(self) -> bool:
        return not self.node.spec.gpus or self.alive()

    def alive(self) -> bool:
        return not self.node.spec.gpus or self.daemon.alive()

    def stop(self) -> None:
        self.daemon.stop()
