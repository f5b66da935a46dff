"""The cluster's storage: rancher's local-path-provisioner and the default StorageClass
`local-path`, so a PersistentVolumeClaim without a class gets a volume of its own, ReadWriteOnce
or ReadWriteMany.

Why local-path-provisioner and not the controller manager's hostpath provisioner
(`--enable-hostpath-provisioner`): that one provisions ReadWriteOnce only (the hostPath plugin's
access modes; a ReadWriteMany claim fails) and hardcodes /tmp/hostpath_pv/<uuid>, shared by every
cluster on the machine. local-path-provisioner is what kind and k3s ship, and its "shared
filesystem" mode says exactly what is true here: every real node sees this machine's filesystem,
so one directory is the same volume on every node, and ReadWriteMany is real.

- Volumes live in <cluster dir>/volumes/<pv>_<namespace>_<claim>, as hostPath PersistentVolumes
  without node affinity (any node can mount them); `stop()` (bin/cluster down) removes the
  directory with whatever is left in it. Deleting a claim deletes its volume (reclaim Delete).
- Binding is Immediate: a volume on the shared filesystem suits any node, so there is no node
  choice to wait for, and a claim is Bound as soon as it is made (as the stack's `pulumi up` expects).
- The provisioner is a controller of the control plane and runs beside it on this machine with the
  admin kubeconfig, as the controller manager's own provisioner would; only its helper pods, which
  make and remove the directories, run on a real node (the imported busybox image; the image has
  a few applet links only, so the scripts call busybox by name). After each helper pod it logs
  "failed to save ... logs: unable to load in-cluster configuration": it fetches the pod's log
  with in-cluster credentials it does not have out here (and `kubectl logs` does not reach real
  nodes yet anyway); the volume is made all the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from .process import Daemon

NAMESPACE = "local-path-storage"
STORAGE_CLASS = "local-path"
PROVISIONER = "rancher.io/local-path"
CONFIG_MAP = "local-path-config"
SERVICE_ACCOUNT = "local-path-provisioner-service-account"
FIELD_MANAGER = "mlplatform-localcluster"

SETUP = """#!/bin/sh
set -eu
/bin/busybox mkdir -m 0777 -p "$VOL_DIR"
"""
TEARDOWN = """#!/bin/sh
set -eu
/bin/busybox rm -rf "$VOL_DIR"
"""


def helper_pod(image: str, node_selector: dict, tolerations: list) -> dict:
    """The helper pod's template: the provisioner adds its command, volumes and a toleration of
    every taint; the node selector keeps it off kwok's simulated nodes, where it would never run."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "nodeSelector": node_selector,
            "tolerations": tolerations,
            "automountServiceAccountToken": False,
            "containers": [{"name": "helper-pod", "image": image, "imagePullPolicy": "IfNotPresent"}],
        },
    }


def manifests(volumes_dir: Path, helper_image: str, node_selector: dict, tolerations: list) -> list[dict]:
    config = {"sharedFileSystemPath": str(volumes_dir)}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        # The helper pods run as this account (the provisioner names it); it needs no permissions.
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP, "namespace": NAMESPACE},
         "data": {"config.json": json.dumps(config, indent=2), "setup": SETUP, "teardown": TEARDOWN,
                  "helperPod.yaml": json.dumps(helper_pod(helper_image, node_selector, tolerations), indent=2)}},
        {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        },
    ]


class Storage:
    """The provisioner's daemon and its objects, with start / ready / alive / stop."""

    def __init__(self, state_dir: Path, volumes_dir: Path, tools: dict[str, str], kubeconfig: Path | None,
                 helper_image: str = "", node_selector: dict | None = None, tolerations: list | None = None):
        self.state_dir = state_dir
        self.volumes_dir = volumes_dir
        self.kubectl = Path(tools["KUBERNETES_DIR"]) / "bin" / "kubectl"
        self.kubeconfig = kubeconfig
        self.helper_image = helper_image
        self.node_selector = node_selector or {}
        self.tolerations = tolerations or []
        binary = Path(tools["LOCAL_PATH_PROVISIONER_DIR"]) / "bin" / "local-path-provisioner"
        # It reads its configuration (config.json, helperPod.yaml) from the ConfigMap, where a user
        # finds it too, and the helper pods mount the setup and teardown scripts from it.
        self.daemon = Daemon("local-path-provisioner", [
            str(binary), "start", f"--kubeconfig={kubeconfig}", f"--namespace={NAMESPACE}",
            f"--provisioner-name={PROVISIONER}", f"--configmap-name={CONFIG_MAP}",
            f"--service-account-name={SERVICE_ACCOUNT}", f"--helper-image={helper_image}",
        ], state_dir)

    def start(self) -> None:
        if not self.helper_image or self.kubeconfig is None:
            raise ValueError("storage: starting the provisioner needs the admin kubeconfig and the helper pod's image")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.volumes_dir.mkdir(parents=True, exist_ok=True)
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(
            self.volumes_dir, self.helper_image, self.node_selector, self.tolerations)})
        out = subprocess.run([str(self.kubectl), "--kubeconfig", str(self.kubeconfig), "apply", "--server-side",
                              f"--field-manager={FIELD_MANAGER}", "-f", "-"], input=doc, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"storage: applying the StorageClass and the provisioner's objects failed: "
                               f"{out.stderr.strip()}")
        self.daemon.start()

    def ready(self) -> bool:
        return self.alive()

    def alive(self) -> bool:
        return self.daemon.alive()

    def status(self) -> str:
        return f"{'running' if self.alive() else 'stopped'} (volumes in {self.volumes_dir})"

    def stop(self) -> None:
        self.daemon.stop()
        # What claims still held when the cluster goes: their volumes go with it.
        shutil.rmtree(self.volumes_dir, ignore_errors=True)
        shutil.rmtree(self.state_dir, ignore_errors=True)
