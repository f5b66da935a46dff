"""`make bench-kueue`: 30 users' GPU notebooks and 10 training jobs competing for 50 GPUs through
Kueue, on kwok's simulated nodes: admission order, wait times and GPU utilization.

What runs, all on this machine and on loopback only, and all removed at the end:

  cluster   a private kwok cluster (`bin/cluster up` with a name, directory and kubeconfig of its
            own under a temporary directory; never a developer's `make up` cluster nor the
            real-node tests', and it takes no machine lock: no real node runs) and the simulated
            Nodes of bench/kueue-scale.yaml's pools (components/cluster.simulated_nodes), 50 GPUs
  Kueue     the real manager binary of the pinned release (tools/build.sh kueue) as a process here,
            with the CRDs, webhooks and configuration the stack deploys (components/kueue.py), its
            webhooks called by the API server at https://127.0.0.1:<port> with a certificate made
            for that address (internal cert management off: there is no Service to name), and the
            ResourceFlavors and ClusterQueues the stack renders from the file's typed config, with
            a LocalQueue for notebooks in the hub's namespace and one for training in the job's
  load      the workloads of bench/kueue_metrics.generate (seeded): each user's notebook server, a
            pod of the file's GPU profile queued with the queue label; each job, the pods of the
            typed TFJob's replicas (components/mnist.py's job spec: chief and GPU workers, with the
            pod-group labels that make them one Workload). No container runs: kwok marks a
            scheduled pod Running, and the bench stops a notebook (deletes its pod) or completes a
            job (its pods Succeeded) once it has run its drawn duration.

Recorded per workload: created (its first pod), admitted (the Workload's Admitted condition),
running (its last pod Running), released (Finished, or Evicted when preempted); and whether any
pod of a group held a node while its Workload was not admitted. Written to --out: results.json
(the records, the figures of kueue_metrics.summarize, the command, load and machine) and
kueue-scale.svg; `--publish DIR` writes both there too (`make bench-kueue`: docs/benchmarks/kueue/;
a variant's `--queues` file, bench/kueue-queues-split.yaml, as kueue-scale-split.*).

Run it as `make bench-kueue` or, with the tools built, `PYTHONPATH=tests python -m bench.bench_kueue`.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import ipaddress
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from bench.kueue_metrics import Arrival, Plan, Record, generate, records_json, summarize, svg
from components.cluster import Placement, simulated_nodes
from components.kueue import (
    KueueManifests,
    QueuedNamespaces,
    cluster_queue_spec,
    flavor_name,
    kueue_manifests_dir,
    manager_config,
    resource_flavor_spec,
    stack_crd,
    stack_webhooks,
)
from components.mnist import DistributedMnist
from stacks.config import StackSettings
from stacks.images import ImagesSettings
from stacks.values import NAMESPACE as CONFIG_NAMESPACE
from tools.layout import tools_layout
from vocab.kueue_api import (
    API_VERSION,
    GROUP,
    NAMESPACE as KUEUE_NAMESPACE,
    NOTEBOOK_LOCAL_QUEUE,
    QUEUE_LABEL,
    TRAINING_LOCAL_QUEUE,
    VERSION,
    pod_group,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = ROOT / "bench" / "kueue-scale.yaml"
PUBLISHED = ROOT / "docs" / "benchmarks" / "kueue"
GPU_RESOURCE_KEYS = ("nvidia.com/gpu", "nvidia.com/gpu.shared")
POLL_SECONDS = 0.5
RUN_TIMEOUT_SECONDS = 900


class BenchError(RuntimeError):
    """What stops the bench, said to the user without a traceback."""


# --- the configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    settings: StackSettings
    notebook_queue: str

    @property
    def placement(self) -> Placement:
        return Placement(self.settings.cluster)

    @property
    def gpu_capacity(self) -> int:
        return sum(p.node_count * p.gpus_advertised for p in self.settings.cluster.node_pools if p.gpus_per_node)


def load_scenario(path: Path, notebook_queue: str | None = None, queues_file: Path | None = None) -> Scenario:
    """The file's cluster, Kueue, hub profiles and job, read by the stack's settings classes and
    checked as the preview checks them (KueueSettings.problems less its rule that a simulated
    cluster cannot run the manager as a pod: here it runs as a process). `queues_file`, when
    given, replaces the file's `mlplatform:kueue` section with its own."""
    raw = yaml.safe_load(path.read_text())["config"]
    if queues_file is not None:
        queues_raw = yaml.safe_load(queues_file.read_text())["config"]
        other = sorted(set(queues_raw) - {f"{CONFIG_NAMESPACE}:kueue"})
        if other:
            raise BenchError(f"{queues_file}: holds {', '.join(other)}; only {CONFIG_NAMESPACE}:kueue replaces the scenario's")
        raw = {**raw, **queues_raw}
    sections = {key.removeprefix(f"{CONFIG_NAMESPACE}:"): value for key, value in raw.items()}
    try:
        settings = StackSettings.model_validate(sections)
    except ValidationError as error:
        raise BenchError(f"{path}: {error}") from None
    problems = list(settings.cluster.problems(f"{CONFIG_NAMESPACE}:cluster"))
    queues = settings.kueue.cluster_queues
    for index, queue in enumerate(queues):
        problems += queue.problems(f"{CONFIG_NAMESPACE}:kueue.clusterQueues[{index}]", settings.cluster)
    problems += settings.mnist.problems(f"{CONFIG_NAMESPACE}:mnist", settings.cluster)
    names = [q.name for q in queues]
    notebook_queue = notebook_queue or settings.kueue.training_queue
    if settings.kueue.training_queue not in names:
        problems.append(f"{CONFIG_NAMESPACE}:kueue.trainingQueue: {settings.kueue.training_queue} is not one of {names}")
    if notebook_queue not in names:
        problems.append(f"--notebook-queue: {notebook_queue} is not a ClusterQueue of {path.name}; queues: {', '.join(names)}")
    if not any(p.gpus for p in settings.jupyterhub.profiles):
        problems.append(f"{CONFIG_NAMESPACE}:jupyterhub.profiles: give a GPU profile (gpus >= 1), the one users start")
    if problems:
        raise BenchError(f"{path}:\n" + "\n".join(problems))
    return Scenario(settings, notebook_queue)


# --- the pods of each workload -------------------------------------------------------------------


def notebook_pod(scenario: Scenario, arrival: Arrival) -> dict[str, Any]:
    """A user's server as the hub's spawner makes it from the GPU profile: its requests and GPU
    limit, the GPU pool's scheduling terms, queued in the hub namespace's LocalQueue."""
    profile = next(p for p in scenario.settings.jupyterhub.profiles if p.gpus)
    scheduling = scenario.placement.scheduling_for(profile.gpus)
    requests = {"cpu": profile.cpu_guarantee or "100m", "memory": profile.memory_guarantee or "256Mi"}
    limits = {k: v for k, v in {"cpu": profile.cpu_limit, "memory": profile.memory_limit}.items() if v}
    limits.update(scheduling.gpu_limits(profile.gpus))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"jupyter-{arrival.name}",
            "namespace": scenario.settings.jupyterhub.namespace,
            "labels": {"component": "singleuser-server", "bench": arrival.name, QUEUE_LABEL: NOTEBOOK_LOCAL_QUEUE},
        },
        "spec": {
            "containers": [{"name": "notebook", "image": profile.image, "resources": {"requests": requests, "limits": limits}}],
            **scheduling.pod_spec(),
        },
    }


def queued_namespaces(scenario: Scenario) -> QueuedNamespaces:
    """Where the bench's manager queues plain pods: the notebooks' namespace and the jobs' (kwok
    runs no training operator, so a job is its replicas' pods, one pod group)."""
    return QueuedNamespaces(pods=(scenario.settings.jupyterhub.namespace, scenario.settings.mnist.namespace))


def job_pods(scenario: Scenario, arrival: Arrival) -> list[dict[str, Any]]:
    """A job's replica pods from the typed TFJob of the stack (DistributedMnist.job_spec), named as
    the operator names them, queued as one pod group in the training LocalQueue: the stack queues
    the TFJob itself (Kueue's TFJob integration), whose pods the operator would make, and no
    operator runs here. No container runs, so the shared volume is left out (nothing would bind it)."""
    mnist = scenario.settings.mnist.model_copy(update={"job_name": arrival.name})
    spec = DistributedMnist.job_spec(mnist, scenario.placement, "trainer:cpu", "trainer:gpu", False, ImagesSettings())
    group_labels, group_annotations = pod_group(
        TRAINING_LOCAL_QUEUE, arrival.name, sum(r.replicas for r in spec.replica_specs.values()))
    pods = []
    for kind, replica in spec.replica_specs.items():
        template = spec.pod_template(kind)
        for index in range(replica.replicas):
            pod_spec = json.loads(json.dumps(template["spec"]))
            claims = {v["name"] for v in pod_spec.get("volumes", []) if "persistentVolumeClaim" in v}
            pod_spec["volumes"] = [v for v in pod_spec.get("volumes", []) if v["name"] not in claims]
            for container in pod_spec["containers"]:
                container["volumeMounts"] = [m for m in container.get("volumeMounts", []) if m["name"] not in claims]
            pods.append({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": spec.pod_name(kind, index),
                    "namespace": mnist.namespace,
                    "labels": {**template["metadata"].get("labels", {}), **group_labels, "bench": arrival.name},
                    "annotations": {**template["metadata"].get("annotations", {}), **group_annotations},
                },
                "spec": {**pod_spec, "restartPolicy": "Never"},
            })
    return pods


def pod_gpus(pod: dict[str, Any]) -> int:
    return sum(int(c.get("resources", {}).get("limits", {}).get(key, 0))
               for c in pod["spec"]["containers"] for key in GPU_RESOURCE_KEYS)


# --- the cluster ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def kwok_cluster(base: Path) -> Iterator[Path]:
    """A private kwok cluster under `base` (simulated nodes only); its kubeconfig. `bin/cluster down`
    at the end, whatever happened."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KWOK_", "MLPLATFORM_CLUSTER", "MLPLATFORM_NODES"))},
        "MLPLATFORM_CLUSTER_NAME": f"mlp-kq{os.getpid() % 10000}",
        "MLPLATFORM_CLUSTER_DIR": str(base / "kwok"),
        "MLPLATFORM_KUBECONFIG": str(base / "kubeconfig"),
        # The stack file bin/cluster reads for real nodes: a simulated one, so it starts none.
        "MLPLATFORM_STACK_CONFIG": str(ROOT / "Pulumi.kwok.yaml"),
        "MLPLATFORM_NODES": "simulated",
    }
    cluster = [str(ROOT / "bin" / "cluster")]
    try:
        up = subprocess.run([*cluster, "up"], env=env, capture_output=True, text=True)
        if up.returncode:
            raise BenchError(f"bin/cluster up failed:\n{up.stdout}{up.stderr}")
        yield base / "kubeconfig"
    finally:
        down = subprocess.run([*cluster, "down"], env=env, capture_output=True, text=True)
        if down.returncode:
            print(f"bin/cluster down failed:\n{down.stdout}{down.stderr}", file=sys.stderr)


@dataclass(frozen=True)
class ServingCert:
    ca_pem: bytes
    directory: Path  # tls.crt and tls.key, as the manager's webhook server reads them


def serving_cert(directory: Path) -> ServingCert:
    """A CA of this run and a certificate it signs for 127.0.0.1, where the manager serves its
    webhooks (the API server checks it against the webhooks' caBundle)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    lifetime = datetime.timedelta(days=1)

    def certificate(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + lifetime)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("bench-kueue-ca", ca_key, "bench-kueue-ca", ca_key, ca=True)
    leaf = certificate("127.0.0.1", key, "bench-kueue-ca", ca_key, ca=False)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (directory / "tls.key").chmod(0o600)
    return ServingCert(ca.public_bytes(serialization.Encoding.PEM), directory)


def bench_manager_config(managed: QueuedNamespaces, webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    """The stack's manager configuration, served on loopback with the bench's certificate."""
    cfg = manager_config(managed)
    cfg["health"] = {"healthProbeBindAddress": f"127.0.0.1:{health_port}"}
    cfg["webhook"] = {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)}
    cfg["internalCertManagement"] = {"enable": False}
    return cfg


def url_client_config(client_config: dict[str, Any], port: int, ca_pem: bytes) -> dict[str, Any]:
    """A webhook's clientConfig pointed at the manager on 127.0.0.1 instead of its Service."""
    path = client_config.get("service", {}).get("path", "/")
    return {"url": f"https://127.0.0.1:{port}{path}", "caBundle": base64.b64encode(ca_pem).decode()}


# With its internal cert management off, the pinned manager reads a metrics certificate from a
# fixed path (cmd/kueue/main.go: /etc/kueue/metrics/certs, even with metrics off) and exits without
# one. It runs in a mount namespace of its own where /etc is an overlay whose upper layer is the
# bench's directory, so that path (the bench's certificate) exists for it alone and this
# machine's /etc is never written: $1 upper, $2 work, $3 the certificate directory, then the command.
METRICS_CERTS = "/etc/kueue/metrics/certs"
WITH_METRICS_CERTS = (
    'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && '
    f'mkdir -p {METRICS_CERTS.rsplit("/", 1)[0]} && ln -s "$3" {METRICS_CERTS} && shift 3 && exec "$@"'
)


def launcher(upper: Path, work: Path, certs: Path) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", WITH_METRICS_CERTS, "sh",
            str(upper), str(work), str(certs)]


@contextmanager
def kueue_manager(base: Path, kubeconfig: Path, managed: QueuedNamespaces, cert: ServingCert,
                  webhook_port: int) -> Iterator[subprocess.Popen]:
    """The pinned Kueue manager as a process of this machine, until the block ends."""
    binary = Path(tools_layout()["KUEUE_DIR"]) / "bin" / "kueue"
    health_port = free_port()
    config_path = base / "kueue-config.yaml"
    config_path.write_text(yaml.safe_dump(bench_manager_config(managed, webhook_port, health_port, cert.directory)))
    log = (base / "kueue.log").open("w")
    for part in ("etc-upper", "etc-work"):
        (base / part).mkdir()
    argv = [*launcher(base / "etc-upper", base / "etc-work", cert.directory),
            str(binary), f"--config={config_path}", "--feature-gates=VisibilityOnDemand=false"]
    proc = subprocess.Popen(argv, env={**os.environ, "KUBECONFIG": str(kubeconfig)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise BenchError(f"the Kueue manager exited ({proc.returncode}):\n{(base / 'kueue.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BenchError("the Kueue manager was not ready within 120 s (kueue.log)")
            time.sleep(0.5)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class Api:
    """The bench's Kubernetes clients, against the private cluster."""

    def __init__(self, kubeconfig: Path) -> None:
        api_client = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.crds = client.ApiextensionsV1Api(api_client)
        self.admission = client.AdmissionregistrationV1Api(api_client)

    def kueue(self, plural: str, body: dict[str, Any], namespace: str | None = None) -> None:
        if namespace:
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        else:
            self.custom.create_cluster_custom_object(GROUP, VERSION, plural, body)


def install(api: Api, scenario: Scenario, cert: ServingCert, webhook_port: int, manifests: KueueManifests) -> None:
    """Nodes, namespaces and Kueue's CRDs (converted through the manager on loopback)."""
    for pool in scenario.settings.cluster.node_pools:
        for node in simulated_nodes(pool):
            api.core.create_node({"apiVersion": "v1", "kind": "Node", **node})
    for namespace in (KUEUE_NAMESPACE, scenario.settings.jupyterhub.namespace, scenario.settings.mnist.namespace):
        api.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for generated in manifests.crds():
        crd = stack_crd(generated)
        conversion = crd["spec"].get("conversion", {}).get("webhook")
        if conversion:
            conversion["clientConfig"] = url_client_config(conversion["clientConfig"], webhook_port, cert.ca_pem)
        api.crds.create_custom_resource_definition(crd)
    deadline = time.monotonic() + 60
    while not all(established(crd.to_dict()) for crd in api.crds.list_custom_resource_definition().items):
        if time.monotonic() > deadline:
            raise BenchError("Kueue's CRDs were not Established within 60 s")
        time.sleep(0.5)


def established(crd: dict[str, Any]) -> bool:
    return any(c["type"] == "Established" and c["status"] == "True" for c in (crd.get("status") or {}).get("conditions") or [])


def queues(api: Api, scenario: Scenario, cert: ServingCert, webhook_port: int, manifests: KueueManifests) -> None:
    """The stack's webhooks (pointed at the manager), then the flavors, ClusterQueues and
    LocalQueues, each admitted through those webhooks."""
    managed = queued_namespaces(scenario)
    mutating, validating = manifests.webhooks()
    for generated, create in ((mutating, api.admission.create_mutating_webhook_configuration),
                              (validating, api.admission.create_validating_webhook_configuration)):
        hooks = stack_webhooks(generated, managed)
        for hook in hooks:
            hook["clientConfig"] = url_client_config(hook["clientConfig"], webhook_port, cert.ca_pem)
        create({"apiVersion": "admissionregistration.k8s.io/v1", "kind": generated["kind"],
                "metadata": {"name": f"bench-{generated['kind'].lower()}"}, "webhooks": hooks})
    settings = scenario.settings
    pools = {p.name: p for p in settings.cluster.node_pools}
    placement = scenario.placement
    for name in sorted({q.pool for cq in settings.kueue.cluster_queues for q in cq.quotas}):
        retried(api.kueue, "resourceflavors", {"apiVersion": API_VERSION, "kind": "ResourceFlavor",
                                               "metadata": {"name": flavor_name(name)},
                                               "spec": resource_flavor_spec(pools[name], placement)})
    for cq in settings.kueue.cluster_queues:
        api.kueue("clusterqueues", {"apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": cq.name},
                                    "spec": cluster_queue_spec(cq, placement)})
    for namespace, local, target in ((settings.jupyterhub.namespace, NOTEBOOK_LOCAL_QUEUE, scenario.notebook_queue),
                                     (settings.mnist.namespace, TRAINING_LOCAL_QUEUE, settings.kueue.training_queue)):
        api.kueue("localqueues", {"apiVersion": API_VERSION, "kind": "LocalQueue",
                                  "metadata": {"name": local, "namespace": namespace}, "spec": {"clusterQueue": target}},
                  namespace)
    deadline = time.monotonic() + 60
    while True:
        cqs = api.custom.list_cluster_custom_object(GROUP, VERSION, "clusterqueues")["items"]
        if cqs and all(condition(cq, "Active") for cq in cqs):
            return
        if time.monotonic() > deadline:
            raise BenchError(f"ClusterQueues not Active within 60 s: {[cq.get('status') for cq in cqs]}")
        time.sleep(0.5)


def retried(step: Callable[..., Any], *args: Any, seconds: float = 30) -> None:
    """step(*args): a create that the webhooks may refuse for a moment after their configuration appears."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            step(*args)
            return
        except ApiException as error:
            if time.monotonic() > deadline or error.status not in (500, 503):
                raise
            time.sleep(0.5)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The True condition `kind` of an object's status, or None."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c["type"] == kind and c["status"] == "True"), None)


def stamp(value: str | datetime.datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


# --- the run -------------------------------------------------------------------------------------


class WorkloadWatch:
    """When each workload's Workload conditions first turned True, from a watch on every Workload.
    A single pod's Workload is deleted with its pod moments after it Finished, sooner than a poll
    might look; the watch sees each change, the deletion's final state included."""

    def __init__(self, api: Api, workload_of: Callable[[dict[str, Any]], str | None]) -> None:
        self.api = api
        self.workload_of = workload_of
        self.first: dict[str, dict[str, dict[str, Any]]] = {}  # arrival -> condition type -> condition
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(self.api.custom.list_cluster_custom_object, GROUP, VERSION, "workloads",
                                           timeout_seconds=30):
                    self._note(event["object"])
                    if self._stop.is_set():
                        stream.stop()
            except (ApiException, OSError, urllib3.exceptions.HTTPError):
                self._stop.wait(0.5)  # the API server busy or the stream cut: watch again (a re-list)

    def _note(self, workload: dict[str, Any]) -> None:
        name = self.workload_of(workload)
        if name is None:
            return
        with self._lock:
            first = self.first.setdefault(name, {})
            for c in (workload.get("status") or {}).get("conditions") or []:
                if c["status"] == "True":
                    first.setdefault(c["type"], c)

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        """The condition `kind` of the arrival's Workload as it was when it first turned True."""
        with self._lock:
            return self.first.get(name, {}).get(kind)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(40)


class Run:
    """Submits the arrivals at their times, watches their pods and Workloads, stops and completes
    them after their durations, and records each one's timestamps."""

    def __init__(self, api: Api, scenario: Scenario, arrivals: list[Arrival]) -> None:
        self.api = api
        self.scenario = scenario
        self.arrivals = {a.name: a for a in arrivals}
        self.pods = {a.name: ([notebook_pod(scenario, a)] if a.kind == "notebook" else job_pods(scenario, a)) for a in arrivals}
        for a in arrivals:
            gpus = sum(pod_gpus(p) for p in self.pods[a.name])
            if gpus != a.gpus or len(self.pods[a.name]) != a.pods:
                raise BenchError(f"{a.name}: its pods ask for {gpus} GPUs in {len(self.pods[a.name])} pods, not {a.gpus} in {a.pods}")
        self.records = {a.name: Record(a.name, a.kind, a.gpus) for a in arrivals}
        # Which workload each pod is of: a Workload names its pods as its owners.
        self.pod_owner = {p["metadata"]["name"]: a.name for a in arrivals for p in self.pods[a.name]}
        self.submitted: set[str] = set()
        self.ended: set[str] = set()
        self.stop_at: dict[str, float] = {}
        self.namespaces = (scenario.settings.jupyterhub.namespace, scenario.settings.mnist.namespace)
        self.start = 0.0

    def rel(self, epoch: float | None) -> float | None:
        return None if epoch is None else round(epoch - self.start, 1)

    def workload_of(self, workload: dict[str, Any]) -> str | None:
        """The arrival a Workload is of: it names the arrival's pods as its owners."""
        owners = [o["name"] for o in workload["metadata"].get("ownerReferences") or [] if o["kind"] == "Pod"]
        return next((self.pod_owner[o] for o in owners if o in self.pod_owner), None)

    def go(self, timeout: float) -> list[Record]:
        workloads = WorkloadWatch(self.api, self.workload_of)
        try:
            return self._go(workloads, timeout)
        finally:
            workloads.stop()

    def _go(self, workloads: WorkloadWatch, timeout: float) -> list[Record]:
        # The API's timestamps are whole seconds: measured from a whole second, the times of
        # creation and admission are truncated alike.
        self.start = float(math.floor(time.time()))
        deadline = self.start + timeout
        report = self.start
        while len(self.ended) < len(self.arrivals):
            now = time.time()
            if now > deadline:
                missing = sorted(set(self.arrivals) - self.ended)
                raise BenchError(f"not all workloads ended within {timeout:.0f} s: {missing}")
            for a in self.arrivals.values():
                if a.name not in self.submitted and now - self.start >= a.at:
                    self.submit(a)
            self.observe(workloads)
            if now - report >= 15:
                report = now
                admitted = sum(r.admitted is not None for r in self.records.values())
                print(f"  {now - self.start:5.0f} s: {len(self.submitted)} submitted, {admitted} admitted, "
                      f"{len(self.ended)} ended", flush=True)
            for name, at in list(self.stop_at.items()):
                if time.time() >= at:
                    self.finish(self.arrivals[name])
                    del self.stop_at[name]
            time.sleep(POLL_SECONDS)
        return [self.records[name] for name in self.arrivals]

    def submit(self, arrival: Arrival) -> None:
        for pod in self.pods[arrival.name]:
            self.api.core.create_namespaced_pod(pod["metadata"]["namespace"], pod)
        self.submitted.add(arrival.name)

    def finish(self, arrival: Arrival) -> None:
        """A notebook is stopped (its pod deleted, as the hub does); a job's pods complete."""
        for pod in self.pods[arrival.name]:
            meta = pod["metadata"]
            try:
                if arrival.kind == "notebook":
                    self.api.core.delete_namespaced_pod(meta["name"], meta["namespace"])
                else:
                    self.api.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], succeeded(pod))
            except ApiException as error:
                if error.status != 404:  # preempted meanwhile: Kueue deleted it
                    raise

    def observe(self, workloads: WorkloadWatch) -> None:
        """One look at every pod; each workload's conditions from the watch."""
        pods: dict[str, list[dict[str, Any]]] = {}
        for namespace in self.namespaces:
            for pod in self.api.core.list_namespaced_pod(namespace).to_dict()["items"]:
                name = self.pod_owner.get(pod["metadata"]["name"])
                if name is not None:
                    pods.setdefault(name, []).append(pod)
        now = time.time()
        for name, record in self.records.items():
            if name in self.ended or name not in self.submitted:
                continue
            its_pods = pods.get(name, [])
            if its_pods and record.created is None:
                record.created = self.rel(min(stamp(p["metadata"]["creation_timestamp"]) for p in its_pods))
            admitted = workloads.condition(name, "Admitted")
            if admitted and record.admitted is None:
                record.admitted = self.rel(stamp(admitted["lastTransitionTime"]))
            if not admitted and any(p["spec"].get("node_name") for p in its_pods) and not self.admitted_now(name, its_pods):
                record.partial.append(self.rel(now))
            running = [p for p in its_pods if p["status"]["phase"] == "Running"]
            if record.running is None and its_pods and len(running) == self.arrivals[name].pods:
                record.running = self.rel(max(stamp(p["status"]["start_time"]) or now for p in running))
                self.stop_at[name] = now + self.arrivals[name].duration
            evicted, finished = workloads.condition(name, "Evicted"), workloads.condition(name, "Finished")
            if evicted and evicted.get("reason") == "Preempted":
                record.preempted = True
                record.released = self.rel(stamp(evicted["lastTransitionTime"]))
                self.stop_at.pop(name, None)
                self.ended.add(name)
            elif finished:
                record.released = self.rel(stamp(finished["lastTransitionTime"]))
                self.ended.add(name)

    def admitted_now(self, name: str, its_pods: list[dict[str, Any]]) -> bool:
        """Whether the Workload of pods seen on a node is admitted (or done), read after the pods
        were: the watch may not have told it yet."""
        namespace = its_pods[0]["metadata"]["namespace"]
        for wl in self.api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "workloads")["items"]:
            if self.workload_of(wl) == name:
                return any(condition(wl, kind) for kind in ("Admitted", "Finished", "Evicted"))
        return False


def succeeded(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod's status as a container's clean exit leaves it (what kwok's pod-complete stage writes
    for the training operator's replicas)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"status": {
        "phase": "Succeeded",
        "conditions": [{"type": t, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
                       for t in ("Ready", "ContainersReady")],
        "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now}}}
                              for c in pod["spec"]["containers"]],
    }}


# --- main ----------------------------------------------------------------------------------------


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def missing_tools() -> list[str]:
    layout = tools_layout()
    wanted = {"kubernetes": "KUBERNETES_DIR", "etcd": "ETCD_DIR", "kwok": "KWOK_DIR", "kueue": "KUEUE_DIR",
              "kueue-manifests": "KUEUE_MANIFESTS_DIR"}
    return [name for name, key in wanted.items() if not (Path(layout[key]) / ".stamp").exists()]


def table(summary: dict[str, Any]) -> str:
    lines = ["| kind | workloads | admitted | finished | preempted | wait p50 (s) | wait p90 (s) | wait max (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, k in summary["kinds"].items():
        cells = [k["count"], k["admitted"], k["finished"], k["preempted"],
                 *("—" if k[w] is None else f"{k[w]:.0f}" for w in ("wait_p50", "wait_p90", "wait_max"))]
        lines.append(f"| {kind} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def published_stem(queues: Path | None) -> str:
    """kueue-scale, or kueue-scale-split for bench/kueue-queues-split.yaml: a variant's figure
    never replaces the default one."""
    return "kueue-scale" if queues is None else f"kueue-scale-{queues.stem.removeprefix('kueue-queues-')}"


def make_command(args: argparse.Namespace) -> str:
    """The `make bench-kueue` line that runs the same."""
    words = ["make bench-kueue"]
    for var, value, default in (("QUEUES", args.queues, None), ("NOTEBOOK_QUEUE", args.notebook_queue, None),
                                ("SEED", args.seed, Plan.seed), ("USERS", args.users, Plan.users),
                                ("JOBS", args.jobs, Plan.jobs)):
        if value != default:
            words.append(f"{var}={value}")
    return " ".join(words)


def fraction(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def parse_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text}: give MIN-MAX seconds, e.g. 30-90") from None
    return low, high


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench-kueue")
    parser.add_argument("--config", type=Path, default=CONFIG_FILE, help="the cluster, queues and workloads (stack-file shape)")
    parser.add_argument("--notebook-queue", default=None,
                        help="the ClusterQueue users' servers queue in (default: kueue.trainingQueue, the jobs' queue)")
    parser.add_argument("--queues", type=Path, default=None,
                        help="a file whose mlplatform:kueue section replaces --config's (e.g. bench/kueue-queues-split.yaml)")
    parser.add_argument("--users", type=int, default=Plan.users)
    parser.add_argument("--jobs", type=int, default=Plan.jobs)
    parser.add_argument("--seed", type=int, default=Plan.seed)
    parser.add_argument("--arrival-window", type=float, default=Plan.arrival_window, help="seconds over which they arrive")
    parser.add_argument("--notebook-seconds", type=parse_range, default=Plan.notebook_seconds, help="MIN-MAX a server runs")
    parser.add_argument("--job-seconds", type=parse_range, default=Plan.job_seconds, help="MIN-MAX a job runs")
    parser.add_argument("--publish", type=Path, default=None,
                        help=f"write results.json and the SVG into this directory too, as kueue-scale.json and "
                        f"kueue-scale.svg (the docs': {PUBLISHED.relative_to(ROOT)})")
    args = parser.parse_args()
    plan = Plan(args.users, args.jobs, args.arrival_window, args.notebook_seconds, args.job_seconds, args.seed)
    try:
        problems = plan.problems()
        if problems:
            raise BenchError("\n".join(problems))
        if os.geteuid() != 0:
            raise BenchError("the Kueue manager runs in a mount namespace of its own (unshare, mount): run as root")
        missing = missing_tools()
        if missing:
            raise BenchError(f"tools not built ({', '.join(missing)}): run `tools/build.sh kube kueue`")
        scenario = load_scenario(args.config, args.notebook_queue, args.queues)
        return bench(args, plan, scenario)
    except BenchError as error:
        print(f"bench-kueue: {error}", file=sys.stderr)
        return 1


def bench(args: argparse.Namespace, plan: Plan, scenario: Scenario) -> int:
    sample = Arrival("sample", "job", 0, 1, 0, 0)
    pods_of_job = job_pods(scenario, sample)
    profile = next(p for p in scenario.settings.jupyterhub.profiles if p.gpus)
    arrivals = generate(plan, len(pods_of_job), sum(pod_gpus(p) for p in pods_of_job), profile.gpus)
    manifests = KueueManifests(kueue_manifests_dir())
    load_start = load_average()
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{len(arrivals)} workloads, {scenario.gpu_capacity} GPUs; load average at start {load_start}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="mlp-kq-", dir="/tmp"))
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        with kwok_cluster(base) as kubeconfig:
            timings["cluster"] = round(time.monotonic() - t0, 1)
            api = Api(kubeconfig)
            cert = serving_cert(base / "certs")
            webhook_port = free_port()
            install(api, scenario, cert, webhook_port, manifests)
            managed = queued_namespaces(scenario)
            t1 = time.monotonic()
            with kueue_manager(base, kubeconfig, managed, cert, webhook_port):
                queues(api, scenario, cert, webhook_port, manifests)
                timings["kueue"] = round(time.monotonic() - t1, 1)
                print(f"cluster {timings['cluster']} s, Kueue and queues {timings['kueue']} s; running ...", flush=True)
                t2 = time.monotonic()
                records = Run(api, scenario, arrivals).go(RUN_TIMEOUT_SECONDS)
                timings["run"] = round(time.monotonic() - t2, 1)
    finally:
        kueue_log = base / "kueue.log"
        if kueue_log.exists():
            args.out.mkdir(parents=True, exist_ok=True)
            shutil.copy(kueue_log, args.out / "kueue.log")
        shutil.rmtree(base, ignore_errors=True)
    load_end = load_average()
    summary = summarize(records, scenario.gpu_capacity)
    results = {
        "when": when,
        "command": make_command(args),
        "plan": {**vars(plan)},
        "config": str(args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config),
        "queues": str(args.queues) if args.queues else None,
        "notebook_queue": scenario.notebook_queue,
        "seconds": timings,
        "load_average": {"start": load_start, "end": load_end},
        "cpus": os.cpu_count(),
        "summary": summary,
        "arrivals": [vars(a) for a in arrivals],
        "records": records_json(records),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    title = (f"{plan.users} notebooks and {plan.jobs} jobs on {scenario.gpu_capacity} GPUs through Kueue "
             f"(seed {plan.seed}, {when[:10]})")
    figure = svg(records, summary, title)
    (args.out / "kueue-scale.svg").write_text(figure)
    if args.publish:
        args.publish.mkdir(parents=True, exist_ok=True)
        stem = published_stem(args.queues)
        (args.publish / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.publish / f"{stem}.svg").write_text(figure)
    print()
    print(table(summary))
    print(f"\nGPU utilization: mean {summary['utilization_mean']:.0%} from the first arrival to the last release, "
          f"peak {summary['utilization_peak']:.0%}, while any workload waited ({summary['waiting_seconds']} s) "
          f"{fraction(summary['utilization_while_waiting'])}; makespan {summary['makespan']} s; "
          f"later-created admitted first: {summary['overtaken_pairs']} pairs")
    print(f"admission order: {', '.join(summary['admission_order'])}")
    print(f"groups seen partly started: {summary['partly_started'] or 'none'}")
    print(f"load average (1, 5, 15 min) at start {load_start}, at end {load_end}; timings {timings}")
    print(f"(written to {args.out}/results.json and kueue-scale.svg)")
    return 1 if summary["partly_started"] else 0


if __name__ == "__main__":
    sys.exit(main())
