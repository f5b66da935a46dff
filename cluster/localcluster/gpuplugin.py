"""Simulated GPUs on a real node: `simulated-gpu-device-plugin` (tools/build.sh kubernetes-node)
advertises NODE's gpus as nvidia.com/gpu through the kubelet's real device-plugin API, so the
kubelet counts and allocates them as on a GPU node. Containers given one run on CPU and see
MLPLATFORM_SIMULATED_GPUS (the device ids); the node carries `mlplatform.dev/gpu: simulated`.
"""

from __future__ import annotations

from pathlib import Path

from .process import Daemon
from .settings import NodeSettings

GPU_RESOURCE = "nvidia.com/gpu"
SIMULATED_LABEL = ("mlplatform.dev/gpu", "simulated")


class GpuPlugin:
    def __init__(self, node: NodeSettings, tools: dict[str, str]):
        self.node = node
        self.daemon = Daemon(
            "simulated-gpu-device-plugin",
            [str(Path(tools["KUBERNETES_NODE_DIR"]) / "bin" / "simulated-gpu-device-plugin"),
             f"--count={node.spec.gpus}", f"--resource={GPU_RESOURCE}"],
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
