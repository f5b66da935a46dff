"""Storage on the real nodes (cluster/localcluster/storage.py): claims without a class bind through
the default StorageClass to volumes that local-path-provisioner makes, ReadWriteOnce and
ReadWriteMany; one pod writes a file that another reads; deleting a claim deletes its volume.

The real nodes share this machine's filesystem, so the two pods would share the ReadWriteMany
volume on two nodes just the same; with one real node today they run on the same one."""

from __future__ import annotations

from pathlib import Path

from cluster.localcluster.storage import PROVISIONER, STORAGE_CLASS
from real_cluster import RealCluster, pod, wait_for

CLAIMS = {"data-rwo": "ReadWriteOnce", "data-rwx": "ReadWriteMany"}


def claim(name: str, mode: str) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "16Mi"}}}}


def with_claims(p: dict) -> dict:
    p["spec"]["volumes"] = [{"name": n, "persistentVolumeClaim": {"claimName": n}} for n in CLAIMS]
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": n, "mountPath": f"/{n}"} for n in CLAIMS]
    return p


def finished(real: RealCluster, name: str) -> dict:
    return wait_for(lambda: (q := real.get("pod", name))["status"].get("phase") in ("Succeeded", "Failed") and q,
                    120, f"pod {name} finished")


def test_local_path_is_the_default_storage_class(real: RealCluster) -> None:
    defaults = [c for c in real.get("storageclass")["items"]
                if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert [(c["metadata"]["name"], c["provisioner"]) for c in defaults] == [(STORAGE_CLASS, PROVISIONER)]


def test_claims_bind_and_two_pods_share_a_file(real: RealCluster) -> None:
    for name, mode in CLAIMS.items():
        real.apply(claim(name, mode))
    for name in CLAIMS:
        wait_for(lambda name=name: real.get("pvc", name)["status"].get("phase") == "Bound", 120, f"claim {name} Bound")
    volumes = real.state_dir / "volumes"
    for name, mode in CLAIMS.items():
        pvc = real.get("pvc", name)
        assert pvc["spec"]["storageClassName"] == STORAGE_CLASS, pvc["spec"]
        pv = real.get("pv", pvc["spec"]["volumeName"])
        assert pv["spec"]["accessModes"] == [mode], pv["spec"]
        path = Path(pv["spec"]["hostPath"]["path"])
        assert path.parent == volumes and path.is_dir(), f"{name}: volume at {path}, not a directory in {volumes}"

    real.apply(with_claims(pod("writer", "echo rwo-$(hostname) > /data-rwo/f && echo rwx-$(hostname) > /data-rwx/f")))
    p = finished(real, "writer")
    assert p["status"]["phase"] == "Succeeded", p["status"]
    real.apply(with_claims(pod("reader", "cat /data-rwo/f /data-rwx/f > /dev/termination-log")))
    p = finished(real, "reader")
    assert p["status"]["phase"] == "Succeeded", p["status"]
    message = p["status"]["containerStatuses"][0]["state"]["terminated"].get("message", "")
    assert message.split() == ["rwo-writer", "rwx-writer"], message
    # On this machine's filesystem, where a pod on any real node finds it.
    rwx = Path(real.get("pv", real.get("pvc", "data-rwx")["spec"]["volumeName"])["spec"]["hostPath"]["path"])
    assert (rwx / "f").read_text() == "rwx-writer\n"
    # ReadWriteMany across nodes: a pod on the gpu node reads what the cpu node's pod wrote.
    other = pod("reader-gpu", "cat /data-rwx/f > /dev/termination-log", pool="gpu")
    other["spec"]["volumes"] = [{"name": "data-rwx", "persistentVolumeClaim": {"claimName": "data-rwx"}}]
    other["spec"]["containers"][0]["volumeMounts"] = [{"name": "data-rwx", "mountPath": "/data-rwx"}]
    real.apply(other)
    p = finished(real, "reader-gpu")
    assert p["status"]["phase"] == "Succeeded", p["status"]
    assert p["spec"]["nodeName"] != real.get("pod", "writer")["spec"]["nodeName"]
    assert p["status"]["containerStatuses"][0]["state"]["terminated"].get("message", "").split() == ["rwx-writer"]
    for name in ("writer", "reader", "reader-gpu"):
        real.kubectl("delete", "pod", name, "--wait=true")


def test_deleted_claim_deletes_its_volume(real: RealCluster) -> None:
    """data-rwx stays: `bin/cluster down` must remove a volume still claimed (test_real_node)."""
    pv = real.get("pvc", "data-rwo")["spec"]["volumeName"]
    path = Path(real.get("pv", pv)["spec"]["hostPath"]["path"])
    real.kubectl("delete", "pvc", "data-rwo", "--wait=true")
    wait_for(lambda: real.kubectl("get", "pv", pv, check=False).returncode != 0, 120, f"volume {pv} deleted")
    assert not path.exists(), f"{path} is still there after its volume was deleted"
