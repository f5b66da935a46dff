"""`make up` / `make down` end to end: the dev stack on a local simulated GPU cluster.

Real Pulumi engine, real kube-apiserver, etcd, controller manager and scheduler, kwok for the
kubelets (cluster/stages/). The tests share one deployment and run in this order; each restores
what it changed, and the last one takes everything down.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
from typing import Any

import pytest
from cryptography import x509
from kubernetes import dynamic

import stacks
from components.hub_config import document as hub
from components import tls
from components.cluster import toleration
from components.k8s import CAPACITY_ANNOTATION, GPU_RESOURCE, POOL_LABEL
from local_stack import NAMESPACE, LocalStack, live, steps_changed, wait_for


def manifest(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["outputs"]


def describe(resource: dict[str, Any]) -> str:
    meta = manifest(resource)["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{manifest(resource)['kind']} {where}{meta['name']}"


def of_kind(local: LocalStack, kind: str) -> list[dict[str, Any]]:
    return [r for r in local.kubernetes_resources() if manifest(r)["kind"] == kind]


def named(local: LocalStack, kind: str, name: str) -> dict[str, Any] | None:
    return next((r for r in of_kind(local, kind) if manifest(r)["metadata"]["name"] == name), None)


def identities(local: LocalStack, api: dynamic.DynamicClient) -> dict[str, tuple[str, int | None]]:
    """URN -> (uid, generation) of every declared object as it is live: a replace changes the uid."""
    found = {}
    for resource in local.kubernetes_resources():
        obj = live(api, manifest(resource))
        assert obj is not None, f"{describe(resource)} is in the stack but not in the cluster"
        found[resource["urn"]] = (obj.metadata.uid, obj.metadata.get("generation"))
    return found


def settings(local: LocalStack) -> stacks.StackSettings:
    return stacks.parse({key.split(":", 1)[1]: value for key, value in local.config().items()})


# --- after `make up` -------------------------------------------------------------------------


def test_make_up_creates_every_declared_object(local: LocalStack, api: dynamic.DynamicClient) -> None:
    declared = local.kubernetes_resources()
    kinds = {manifest(r)["kind"] for r in declared}
    assert {"Node", "Namespace", "Deployment", "Service", "PersistentVolumeClaim", "TFJob"} <= kinds, kinds
    missing = [describe(r) for r in declared if live(api, manifest(r)) is None]
    assert not missing, f"declared by the stack but missing from the cluster: {missing}"


def test_the_state_keeps_no_metadata_files_that_a_read_could_find_half_written(local: LocalStack) -> None:
    """bin/pulumi opens a file:// backend with fileblob's `metadata=skip`: no `.attrs` file beside
    the checkpoint. fileblob rewrote it in place on every save, and the program's StackReference to
    its own stack, reading during a save, once found it empty ("failed to load checkpoint: EOF")."""
    state = local.base / "state" / ".pulumi"
    assert list(state.glob(f"stacks/**/{local.stack}.json")), f"no checkpoint of {local.stack} under {state}"
    assert not sorted(state.rglob("*.attrs")), sorted(state.rglob("*.attrs"))


def test_second_preview_expects_no_changes(local: LocalStack) -> None:
    result = local.pulumi("preview", "--expect-no-changes", check=False)
    assert result.returncode == 0, f"a preview right after `make up` plans changes:\n{result.output[-4000:]}"


def test_every_deployment_is_available(local: LocalStack, api: dynamic.DynamicClient) -> None:
    for resource in of_kind(local, "Deployment"):
        status = live(api, manifest(resource)).status
        available = {c.type: c.status for c in status.conditions or []}.get("Available")
        assert available == "True", f"{describe(resource)} is not Available: {status}"
        assert status.readyReplicas == manifest(resource)["spec"]["replicas"], f"{describe(resource)}: {status}"


def test_claims_are_bound(local: LocalStack, api: dynamic.DynamicClient) -> None:
    for resource in of_kind(local, "PersistentVolumeClaim"):
        assert live(api, manifest(resource)).status.phase == "Bound", f"{describe(resource)} is not Bound"


def test_tfjob_is_stored_as_declared(local: LocalStack, api: dynamic.DynamicClient) -> None:
    (job,) = of_kind(local, "TFJob")
    stored = live(api, manifest(job)).to_dict()
    workers = settings(local).mnist.replica_counts["Worker"]
    assert stored["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == workers, stored["spec"]


def test_the_hub_serves_https_with_its_self_signed_certificate(local: LocalStack) -> None:
    # The dev stack's jupyterhub.https (selfSigned), as the API server stored it. No container runs
    # here: tests/images runs the proxy with such a certificate.
    namespace = settings(local).jupyterhub.namespace
    secret = local.kubectl_json("get", "secret", "-n", namespace, hub.TLS_SECRET_NAME)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {tls.CERT_KEY, tls.PRIVATE_KEY_KEY, tls.CA_KEY}
    certificate = x509.load_pem_x509_certificates(base64.b64decode(secret["data"][tls.CERT_KEY]))[0]
    certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(base64.b64decode(secret["data"][tls.CA_KEY])))
    service = local.kubectl_json("get", "service", "-n", namespace, hub.PROXY_PUBLIC_SERVICE)
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"https": (hub.PUBLIC_HTTPS_PORT, "https"), "http": (hub.PUBLIC_PORT, "http")}, ports
    proxy = local.kubectl_json("get", "deployment", "-n", namespace, hub.PROXY_DEPLOYMENT)["spec"]["template"]["spec"]
    (chp,) = proxy["containers"]
    assert f"--ssl-cert={hub.TLS_DIR}/tls.crt" in chp["command"] and f"--redirect-port={hub.PROXY_PORT}" in chp["command"]
    assert {"name": "tls", "secret": {"secretName": hub.TLS_SECRET_NAME, "defaultMode": 420}} in proxy["volumes"]
    # Pulumi's state holds the private key encrypted, never in plain text (nor base64-encoded).
    key = base64.b64decode(secret["data"][tls.PRIVATE_KEY_KEY]).decode()
    state = "".join(f.read_text(errors="replace") for f in (local.base / "state").rglob("*") if f.is_file())
    assert "PRIVATE KEY" in key and state
    assert key.strip().splitlines()[1] not in state, "the private key is in Pulumi's state in plain text"
    assert secret["data"][tls.PRIVATE_KEY_KEY] not in state, "the private key is in Pulumi's state, base64-encoded"


def test_nodes_report_the_capacity_their_pool_declares(local: LocalStack, api: dynamic.DynamicClient) -> None:
    nodes = of_kind(local, "Node")
    assert nodes
    for node in nodes:
        declared = json.loads(manifest(node)["metadata"]["annotations"][CAPACITY_ANNOTATION])
        status = wait_for(lambda node=node: live(api, manifest(node)).status, 30, f"{describe(node)} status")
        ready = {c.type: c.status for c in status.conditions or []}.get("Ready")
        assert ready == "True", f"{describe(node)} is not Ready"
        assert dict(status.allocatable) == declared, f"{describe(node)}: allocatable {status.allocatable}"
        assert dict(status.capacity) == declared, f"{describe(node)}: capacity {status.capacity}"


# --- scheduling --------------------------------------------------------------------------------


@pytest.fixture
def scratch_namespace(local: LocalStack) -> Any:
    name = "e2e-scheduling"
    local.kubectl("create", "namespace", name)
    yield name
    local.kubectl("delete", "namespace", name, "--wait=true", "--timeout=120s")


def deployment(name: str, namespace: str, replicas: int, pod_spec: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": "main", "image": "registry.k8s.io/pause:3.10", **pod_spec.pop("container", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container], **pod_spec}},
        },
    }


def pods(local: LocalStack, namespace: str, app: str) -> list[dict[str, Any]]:
    return local.kubectl_json("get", "pods", "-n", namespace, "-l", f"app={app}")["items"]


def node_pools(local: LocalStack) -> dict[str, str]:
    return {n["metadata"]["name"]: n["metadata"]["labels"][POOL_LABEL] for n in local.kubectl_json("get", "nodes")["items"]}


def gpu_limit(pod: dict[str, Any]) -> int:
    return sum(int((c.get("resources", {}).get("limits") or {}).get(GPU_RESOURCE, 0)) for c in pod["spec"]["containers"])


def gpus_held(local: LocalStack) -> int:
    """GPUs that placed, unfinished pods hold right now."""
    return sum(
        gpu_limit(p)
        for p in local.kubectl_json("get", "pods", "--all-namespaces")["items"]
        if p["spec"].get("nodeName") and p["status"].get("phase") not in ("Succeeded", "Failed")
    )


def test_gpu_pods_bind_to_gpu_nodes_only_and_count_gpus(local: LocalStack, scratch_namespace: str, api: dynamic.DynamicClient) -> None:
    """Pods asking for one GPU each, tolerating the GPU pool's taints but with no node selector:
    only the GPU capacity (copied from the pool's declaration by the node stage) sends them to
    GPU nodes, and one GPU per node means a pod more than there are GPUs stays Pending."""
    pools = settings(local).cluster.node_pools
    gpu_pools = [p for p in pools if p.gpus_per_node]
    gpus = sum(p.gpus_per_node * p.node_count for p in gpu_pools)
    # The stack's own GPU pods (TFJob workers, once the operator creates them) finish first.
    wait_for(lambda: gpus_held(local) == 0, 180, "the stack's GPU pods to finish and free their GPUs")
    tolerations = [toleration(t) for p in gpu_pools for t in p.taints]
    spec = {"tolerations": tolerations, "container": {"resources": {"limits": {GPU_RESOURCE: "1"}}}}
    local.kubectl("apply", "-f", "-", input_json=deployment("gpu", scratch_namespace, gpus + 1, spec))

    bound = wait_for(
        lambda: (lambda ps: ps if len(ps) == gpus else None)([p for p in pods(local, scratch_namespace, "gpu") if p["spec"].get("nodeName")]),
        60,
        f"{gpus} GPU pods to be bound",
    )
    by_node = node_pools(local)
    gpu_pool_names = {p.name for p in gpu_pools}
    placed = sorted(p["spec"]["nodeName"] for p in bound)
    assert {by_node[n] for n in placed} <= gpu_pool_names, f"GPU pods on {placed}"
    assert len(set(placed)) == gpus, f"two one-GPU pods share a one-GPU node: {placed}"

    def unschedulable() -> list[dict[str, Any]]:
        waiting = [p for p in pods(local, scratch_namespace, "gpu") if not p["spec"].get("nodeName")]
        return [
            c for p in waiting for c in p["status"].get("conditions", [])
            if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
        ]

    (condition,) = wait_for(unschedulable, 60, "the pod beyond the GPU count to be reported unschedulable")
    assert f"Insufficient {GPU_RESOURCE}" in condition["message"], condition

    running = wait_for(
        lambda: [p for p in pods(local, scratch_namespace, "gpu") if p["status"].get("phase") == "Running"],
        30,
        "bound GPU pods to run",
    )
    assert len(running) == gpus


def test_cpu_pods_never_land_on_gpu_nodes(local: LocalStack, scratch_namespace: str) -> None:
    gpu_pool_names = {p.name for p in settings(local).cluster.node_pools if p.gpus_per_node}
    local.kubectl("apply", "-f", "-", input_json=deployment("cpu", scratch_namespace, 6, {}))
    wait_for(lambda: len([p for p in pods(local, scratch_namespace, "cpu") if p["status"].get("phase") == "Running"]) == 6, 60, "6 CPU pods to run")
    by_node = node_pools(local)
    every_pod = local.kubectl_json("get", "pods", "--all-namespaces")["items"]
    cpu_pods = [p for p in every_pod if not gpu_limit(p)]
    assert len(cpu_pods) >= 6
    on_gpu = [
        f"{p['metadata']['namespace']}/{p['metadata']['name']} on {p['spec']['nodeName']}"
        for p in cpu_pods if by_node.get(p["spec"].get("nodeName", "")) in gpu_pool_names
    ]
    assert not on_gpu, f"CPU pods on GPU nodes: {on_gpu}"


# --- the cluster across `make up`s -----------------------------------------------------------

COMPONENTS = {"etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kwok-controller"}  # as /proc/*/comm names them


def test_second_make_up_reuses_the_running_cluster(local: LocalStack) -> None:
    before = local.component_pids()
    assert set(before) == COMPONENTS, before
    result = local.make("up")
    assert "ready (reused)" in result.output, result.output[-2000:]
    assert local.component_pids() == before, "a second `make up` restarted components of a running cluster"
    assert re.search(r"Resources:\s+\d+ unchanged\s+Duration", result.stdout), f"the second deploy changed something:\n{result.stdout[-1500:]}"


def test_make_up_restarts_a_killed_cluster(local: LocalStack, api: dynamic.DynamicClient, scratch_namespace: str) -> None:
    objects = identities(local, api)
    killed = local.component_pids()
    for pid in killed.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not local.component_pids(), 10, "the killed components to exit")

    result = local.make("up")
    assert "ready (restarted)" in result.output, result.output[-2000:]
    running = local.component_pids()
    assert set(running) == COMPONENTS and not set(running.values()) & set(killed.values()), running
    assert identities(local, api) == objects, "objects changed across the restart (etcd's data should survive it)"
    # kwok runs the nodes again at once (not after the dead kwok's node leases expire).
    local.kubectl("apply", "-f", "-", input_json=deployment("after-restart", scratch_namespace, 2, {}))
    wait_for(
        lambda: len([p for p in pods(local, scratch_namespace, "after-restart") if p["status"].get("phase") == "Running"]) == 2,
        30,
        "new pods to run on the restarted cluster",
    )


# --- changes ---------------------------------------------------------------------------------


@pytest.fixture
def restore_config(local: LocalStack) -> Any:
    """Puts the stack's config file back and brings the stack back to it after the test."""
    saved = local.config_file.read_text()
    yield
    local.config_file.write_text(saved)
    if local.pulumi("preview", "--expect-no-changes", check=False).returncode != 0:
        # The test stopped half-way (or the preview itself fails): deploy the config as it was.
        local.pulumi("up", "--yes", "--skip-preview")
        result = local.pulumi("preview", "--expect-no-changes", check=False)
        assert result.returncode == 0, f"the stack did not return to its config:\n{result.output[-4000:]}"


def apply_change(local: LocalStack, api: dynamic.DynamicClient) -> tuple[dict[str, set[str]], dict, dict]:
    """Preview (JSON) then `pulumi up`; the planned steps and every object's identity before and after."""
    before = identities(local, api)
    plan = steps_changed(local.pulumi("preview", "--json").stdout)
    local.pulumi("up", "--yes", "--skip-preview")
    return plan, before, identities(local, api)


SOURCE_RANGES = {"loadBalancerSourceRanges[0]": "10.0.0.0/8"}


@pytest.mark.parametrize(
    ("prefix", "service_name", "extra", "policy"),
    [
        pytest.param("jupyterhub", "proxy-public", {}, None, id="jupyterhub"),
        pytest.param("jupyterhub", "proxy-public", SOURCE_RANGES, None, id="jupyterhub-source-ranges"),
        # LoadBalancer requires ranges; TensorBoard's NetworkPolicy admits exactly those.
        pytest.param("mnist.tensorboard", "tensorboard", SOURCE_RANGES, "tensorboard", id="tensorboard"),
    ],
)
def test_public_service_flips_to_load_balancer_and_back_alone(
    local: LocalStack,
    api: dynamic.DynamicClient,
    restore_config: None,
    prefix: str,
    service_name: str,
    extra: dict[str, str],
    policy: str | None,
) -> None:
    service = named(local, "Service", service_name)
    assert service is not None, f"no Service {service_name} in the stack"
    urn = service["urn"]
    # The NetworkPolicy in front of the Service may follow it, in place.
    follows = {named(local, "NetworkPolicy", policy)["urn"]} if policy else set()
    cluster_ip = local.config_file.read_text()

    def check(plan: dict[str, set[str]], before: dict, after: dict, flip: str) -> None:
        assert set(plan) - follows == {urn}, f"{flip} should touch only {service_name}: {plan}"
        assert all(plan[u] == {"update"} for u in follows & set(plan)), f"{flip}: {plan}"
        changed = {u for u in before if before[u] != after[u]}
        assert changed - follows == {urn}, "objects other than the Service changed"
        assert all(before[u][0] == after[u][0] for u in follows), "the NetworkPolicy was replaced"

    for key, value in {"serviceType": "LoadBalancer", **extra}.items():
        local.set_config(f"{prefix}.{key}", value)
    check(*apply_change(local, api), "ClusterIP -> LoadBalancer")
    svc = live(api, manifest(service))
    assert svc.spec.type == "LoadBalancer"
    ingress = svc.status.loadBalancer.ingress or []
    assert ingress and ingress[0].ip.startswith("192.0.2."), f"no simulated load balancer address: {svc.status}"

    local.config_file.write_text(cluster_ip)
    check(*apply_change(local, api), "LoadBalancer -> ClusterIP")
    assert live(api, manifest(service)).spec.type == "ClusterIP"


def test_more_workers_update_the_tfjob_in_place(local: LocalStack, api: dynamic.DynamicClient, restore_config: None) -> None:
    # The kwok stack runs no Kueue: its job is the operator's alone, which takes the change as it
    # is. (A queued job is replaced instead: tests/unit/test_kueue.py, and on the real nodes
    # test_kueue_on_real_nodes.py.)
    (job,) = of_kind(local, "TFJob")
    workers = settings(local).mnist.replica_counts["Worker"] + 1
    local.set_config("mnist.replicas.Worker", str(workers))
    # The dev stack's GPU pool holds one GPU per worker it has now, and the preview refuses a job
    # whose GPUs could never fit: the grown job trains on CPU.
    local.set_config("mnist.gpus.Worker", "0")
    plan, before, after = apply_change(local, api)
    assert plan == {job["urn"]: {"update"}}, f"a new worker count should update the TFJob in place, nothing else: {plan}"
    assert after[job["urn"]][0] == before[job["urn"]][0], "the TFJob was replaced"
    stored = live(api, manifest(job)).to_dict()
    assert stored["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == workers


def test_bad_config_fails_preview_clearly_and_changes_nothing(local: LocalStack, api: dynamic.DynamicClient) -> None:
    bad = local.base / "Pulumi.bad.yaml"
    shutil.copy(local.config_file, bad)
    local.set_config("jupyterhub.serviceType", "Loadbalancer", config_file=bad)
    state_before = [r["urn"] for r in local.kubernetes_resources()]
    before = identities(local, api)

    for command in (["preview"], ["up", "--yes", "--skip-preview"]):
        result = local.pulumi(*command, config_file=bad, check=False)
        assert result.returncode != 0, f"`pulumi {command[0]}` accepted jupyterhub.serviceType Loadbalancer"
        assert f"{NAMESPACE}:jupyterhub.serviceType" in result.output, result.output[-3000:]
        assert "Loadbalancer" in result.output and "LoadBalancer" in result.output, result.output[-3000:]
        assert "Traceback" not in result.output, f"a Python traceback instead of the message:\n{result.output[-3000:]}"

    assert [r["urn"] for r in local.kubernetes_resources()] == state_before, "the failed update changed the state"
    assert identities(local, api) == before, "the failed update changed objects in the cluster"


def test_a_change_that_would_strand_data_fails_the_preview_naming_key_and_volumes(local: LocalStack, api: dynamic.DynamicClient) -> None:
    """The program reads its own stack's last outputs (a StackReference to itself, on the file
    backend) at preview time and refuses a job rename, which would leave its checkpoints behind."""
    renamed = local.base / "Pulumi.renamed.yaml"
    shutil.copy(local.config_file, renamed)
    local.set_config("mnist.jobName", "mnist-renamed", config_file=renamed)
    before = identities(local, api)
    for command in (["preview"], ["up", "--yes", "--skip-preview"]):
        result = local.pulumi(*command, config_file=renamed, check=False)
        assert result.returncode != 0, f"`pulumi {command[0]}` accepted a job rename that strands its volume"
        assert f"{NAMESPACE}:mnist.jobName" in result.output and "distributed-mnist-data" in result.output, result.output[-3000:]
        assert "mnist.dataRetention" in result.output, result.output[-3000:]
        assert "Traceback" not in result.output, result.output[-3000:]
    assert identities(local, api) == before, "the refused update changed objects in the cluster"


# --- `pulumi destroy`, `make down` (last) ------------------------------------------------------

# What `pulumi destroy` keeps (dataRetention keep, the default): the namespaces that hold user
# data and the claims the stack declares in them (on kwok, with their pre-made volumes).
KEPT_KINDS = ("Namespace", "PersistentVolumeClaim", "PersistentVolume")


def test_destroy_keeps_user_data_and_up_finds_it_again(local: LocalStack, api: dynamic.DynamicClient) -> None:
    declared = local.kubernetes_resources()
    data = {"jupyterhub", "mnist"}
    kept = [r for r in declared if manifest(r)["kind"] in KEPT_KINDS and (
        manifest(r)["kind"] != "Namespace" or manifest(r)["metadata"]["name"] in data)]
    assert {describe(r) for r in kept} >= {"Namespace jupyterhub", "Namespace mnist", "PersistentVolumeClaim jupyterhub/hub-db-dir",
                                           "PersistentVolumeClaim mnist/distributed-mnist-data"}, [describe(r) for r in kept]
    uids = {describe(r): live(api, manifest(r)).metadata.uid for r in kept}

    local.pulumi("destroy", "--yes", "--skip-preview")
    left = sorted(describe(r) for r in declared if live(api, manifest(r)) is not None)
    assert left == sorted(uids), f"after destroy, expected exactly the user data to be left: {left}"
    assert not local.kubernetes_resources(), "the stack still holds resources"

    # A later `pulumi up` adopts them (Server-Side Apply creates by applying): the same objects.
    local.pulumi("up", "--yes", "--skip-preview", timeout=900)
    after = {describe(r): live(api, manifest(r)).metadata.uid for r in local.kubernetes_resources() if describe(r) in uids}
    assert after == uids, "pulumi up after destroy made new objects instead of finding the kept ones"
    for claim in of_kind(local, "PersistentVolumeClaim"):
        assert live(api, manifest(claim)).status.phase == "Bound", describe(claim)
    result = local.pulumi("preview", "--expect-no-changes", check=False)
    assert result.returncode == 0, f"a preview after the re-adopting up plans changes:\n{result.output[-4000:]}"


def test_make_down_leaves_no_objects_and_no_processes(local: LocalStack, api: dynamic.DynamicClient) -> None:
    """`make down` is `pulumi destroy` (which keeps the user data), then `bin/cluster down`, which
    takes the whole cluster, kept data included."""
    assert local.cluster_pids(), "the cluster is not running before `make down`"

    local.make("down")
    assert not local.kubernetes_resources(), "the stack still holds resources"
    assert not local.cluster_pids(), f"processes left by `make down`: {local.cluster_pids()}"
    assert not local.cluster_dir.exists(), f"cluster state left in {local.cluster_dir}"
    assert not local.kubeconfig.exists()
