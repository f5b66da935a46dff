"""One real node: its parts, started in the order below and stopped by `down`: first what runs
pods (gpu-plugin, netpol, kube-proxy, kubelet, containerd), then cgroups, mounts, apiproxy and
the network last.

    network     the node's network namespace and CNI configuration   (network.py)
    cgroups     the kubelet's cgroupRoot in every hierarchy           (cgroups.py)
    mounts      the node's mount namespace, its own hardcoded paths   (mounts.py)
    apiproxy    the API server at 127.0.0.1:PORT inside the namespace (apiproxy.py)
    containerd  the runtime, then the node's images imported          (containerd.py, images.py)
                (pause, busybox, CoreDNS and the platform's images/, those it lacks)
    kubelet     registers the node and runs its pods                  (kubelet.py)
    kube-proxy  Services' cluster IPs and node ports                  (kubeproxy.py)
    netpol      NetworkPolicy enforced (kube-router's firewall only)  (netpol.py)
    gpu-plugin  simulated GPUs and shares on the device-plugin API    (gpuplugin.py)

`up` starts what is missing and restarts what died (a killed kubelet or containerd comes back,
and the kubelet starts the node's pods again); `down` leaves nothing of the node on the machine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from . import images, imagestore
from .cgroups import Cgroups
from .containerd import Containerd, unmount_under
from .kubelet import Kubelet, Sysctls, remove_machine_leftovers
from .kubeproxy import KubeProxy
from .netpol import NetworkPolicyEngine
from .gpuplugin import GpuPlugin, advertised
from .mounts import MountNamespace
from .network import Network
from .process import Daemon, wait_for
from .settings import NodeSettings, pause_image


class Node:
    def __init__(self, settings: NodeSettings, tools: dict[str, str]):
        self.settings = settings
        self.tools = tools
        self.network = Network(settings, Path(tools["CNI_PLUGINS_DIR"]) / "bin")
        self.cgroups = Cgroups(settings.cgroup_root, settings.state_dir)
        self.mounts = MountNamespace(settings)
        self.apiproxy = Daemon(
            "apiproxy",
            [sys.executable, "-m", "cluster.localcluster.apiproxy", settings.netns, str(settings.api_port)],
            settings.state_dir,
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        self.containerd = Containerd(settings, tools)
        self.kubelet = Kubelet(settings, tools, self.containerd.socket)
        self.kubeproxy = KubeProxy(settings, tools)
        self.netpol = NetworkPolicyEngine(settings, tools)
        self.gpuplugin = GpuPlugin(settings, tools)

    def parts(self) -> dict[str, object]:
        return {"network": self.network, "cgroups": self.cgroups, "mounts": self.mounts, "apiproxy": self.apiproxy,
                "containerd": self.containerd, "kubelet": self.kubelet, "kube-proxy": self.kubeproxy,
                "netpol": self.netpol, "gpu-plugin": self.gpuplugin}

    def up(self, wait: bool = True, image_store: Path | None = None) -> list[str]:
        """Starts every part that does not run; returns the names of those it (re)started.

        IMAGE_STORE: the platform's images unpacked once (imagestore.py), which a new node's
        containerd starts on instead of importing them."""
        started = []
        # Held before any part starts: it records the kernel settings before the kubelet changes
        # them, and until the node is down no other cluster's last node removes the machine's
        # mount points its mount namespace needs (kubelet.remove_machine_leftovers).
        Sysctls().hold(self.settings.state_dir)
        for name, part in self.parts().items():
            if not part.alive():
                if part is self.containerd and image_store is not None:
                    imagestore.link(image_store, self.containerd.root, self._log)
                part.start()
                started.append(name)
            if part is self.containerd:
                self.containerd.wait_ready()
                out = self.settings.state_dir / "images"
                for image, archive in (pause_image(self.tools), images.busybox_image(out),
                                       images.coredns_image(self.tools, out)):
                    images.ensure(self.containerd, image, archive)
                images.import_platform_images(self.containerd, self._log)
            if part is self.apiproxy:
                wait_for("the API forwarder listening", self._api_reachable, 10, self.apiproxy.log_file)
            if part is self.kubelet and wait:
                # The device plugin registers on the kubelet's socket, there once the node is Ready.
                self.kubelet.wait_ready()
        if wait and self.settings.spec.gpus:
            resource, count = advertised(self.settings.spec)
            wait_for(f"node {self.settings.spec.name} advertising {count} {resource}",
                     lambda: self.kubelet.capacity(resource) == str(count), 60, self.gpuplugin.daemon.log_file)
        return started

    def _log(self, line: str) -> None:
        print(f"localcluster: node {self.settings.spec.name}: {line}", file=sys.stderr, flush=True)

    def _api_reachable(self) -> bool:
        probe = ["nsenter", f"--net=/run/netns/{self.settings.netns}", "--", sys.executable, "-c",
                 f"import socket; socket.create_connection(('127.0.0.1', {self.settings.api_port}), 2)"]
        return subprocess.run(probe, capture_output=True).returncode == 0

    def status(self) -> dict[str, str]:
        out = {}
        for name, part in self.parts().items():
            out[name] = "running" if part.alive() else "stopped"
        if out["kubelet"] == "running":
            out["kubelet"] = "running, node Ready" if self.kubelet.ready() else "running, node not Ready"
        return out

    def down(self, deregister: bool = True) -> None:
        self.gpuplugin.stop()
        self.netpol.stop()
        self.kubeproxy.stop()
        self.kubelet.stop()
        if deregister:
            self.kubelet.deregister()
        self.containerd.stop()
        self.cgroups.stop()
        self.mounts.stop()
        self.apiproxy.stop()
        self.network.stop()
        remove_machine_leftovers()
        unmount_under(self.settings.state_dir)
        shutil.rmtree(self.settings.state_dir, ignore_errors=True)
