"""DistributedMnist: the tutorial's distributed MNIST TFJob, its shared volume and TensorBoard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import Cluster
from components.k8s import (
    CLUSTER_DNS_PEER,
    DNS_PORTS,
    FIELD_MANAGER,
    FIELD_MANAGER_ANNOTATION,
    NON_INTERNET_RANGES,
    app_labels,
    default_deny,
    pod_security_labels,
    port_forward_command,
    restricted,
    service_await,
    service_url,
)
from components.kueue import Kueue
from components.tfjob import ReplicaSpec, RunPolicy, TFJob, TFJobArgs, TFJobSpec
from vocab.kueue_api import QUEUE_LABEL, TRAINING_LOCAL_QUEUE
from vocab.tfjob_api import CONTAINER_NAME, DEFAULT_PORT, JOB_NAME_LABEL, PORT_NAME
from components.trainer_image import TrainerImage, trainer_sources
from stacks import retention
from stacks.images import ImagesSettings
from stacks.mnist import MnistSettings

DATA_MOUNT = "/data"
CODE_MOUNT = "/opt/mlplatform/trainer"
TENSORBOARD = "tensorboard"  # its Deployment, Service, container and app name
TENSORBOARD_PORT = 6006
TENSORBOARD_LABELS = app_labels(TENSORBOARD, TENSORBOARD)

# Training and TensorBoard pods run as the trainer image's user (trainer/Dockerfile), never as
# root (the stock TensorFlow image's default); the shared volume is theirs through fsGroup. No
# privilege escalation, no capabilities, the runtime's default seccomp profile, a read-only root
# filesystem with a scratch /tmp (also HOME), and no service account token: they never call the
# Kubernetes API.
RUN_AS = 10001
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
SCRATCH = "/tmp"


def hardened(pod_spec: dict[str, Any], images: ImagesSettings) -> dict[str, Any]:
    """`pod_spec` with the pod and container settings above and a scratch /tmp."""
    containers = [
        {
            **c,
            # Pinned by tag or digest (ImagesSettings.pull_policy says why Always, or Never).
            "imagePullPolicy": images.pull_policy(),
            "securityContext": {**restricted(), "privileged": False, "readOnlyRootFilesystem": True},
            "env": [*c.get("env", []), {"name": "HOME", "value": SCRATCH}],
            "volumeMounts": [*c.get("volumeMounts", []), {"name": "scratch", "mountPath": SCRATCH}],
        }
        for c in pod_spec["containers"]
    ]
    return {
        **pod_spec,
        "automountServiceAccountToken": False,
        "securityContext": dict(POD_SECURITY),
        "containers": containers,
        "volumes": [*pod_spec.get("volumes", []), {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}}],
    }



def data_claim(settings: MnistSettings) -> str:
    """The shared volume's claim: data, checkpoints and logs of the job."""
    return retention.data_claim(settings.job_name)


def code_config_map(settings: MnistSettings) -> str:
    """The ConfigMap that carries the trainer code for the stock TensorFlow image."""
    return f"{settings.job_name}-trainer"


@dataclass(frozen=True)
class DistributedMnistArgs:
    settings: MnistSettings
    cluster: Cluster
    image: TrainerImage
    operator_ready: list[pulumi.Resource]
    images: ImagesSettings = field(default_factory=ImagesSettings)  # pull secrets
    # What the namespace waits for: the check that this config keeps the data the last deployment
    # kept (components/kept_data.py).
    data_checked: pulumi.Output[Any] | None = None
    # Kueue and the ClusterQueue the job queues in (`kueue.trainingQueue`): the TFJob then waits
    # suspended until all its replicas fit, and is admitted whole or not at all.
    kueue: Kueue | None = None
    cluster_queue: str | None = None


class DistributedMnist(pulumi.ComponentResource):
    tf_config: dict[str, str]
    tensorboard_url: pulumi.Output[str]
    watch_command: str

    def __init__(self, name: str, args: DistributedMnistArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        settings = args.settings
        code = args.image.code_from_config_map
        queued = args.kueue is not None and args.cluster_queue is not None
        job_spec = self.job_spec(
            settings, args.cluster, args.image.cpu_image, args.image.gpu_image, code, args.images, queued
        )
        job_spec.validate()  # refuse a bad job before anything is registered
        super().__init__("mlplatform:mnist:DistributedMnist", name, None, opts)
        namespace = settings.namespace
        # With dataRetention keep, the namespace and the shared volume (checkpoints) outlive a
        # delete (docs/data.md).
        keep = settings.data_retention == "keep"
        namespace_name: pulumi.Input[str] = namespace
        if args.data_checked is not None:
            namespace_name = args.data_checked.apply(lambda _: namespace)
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": namespace_name, "labels": {**app_labels("mnist", "namespace"), **pod_security_labels()}},
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=keep),
        )
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        kept = pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(retain_on_delete=keep))

        claim = data_claim(settings)
        access = ["ReadWriteMany"]  # chief, workers and TensorBoard share data, checkpoints and logs
        args.cluster.volume_for(claim, namespace, settings.storage.size, access, kept)
        pvc_spec: dict[str, Any] = {"accessModes": access, "resources": {"requests": {"storage": settings.storage.size}}}
        if settings.storage.storage_class is not None:
            pvc_spec["storageClassName"] = settings.storage.storage_class
        elif args.cluster.simulated:
            pvc_spec["storageClassName"] = ""  # bind to the pre-made volume, not a default class
        else:
            # The config layer refuses a provider without a known ReadWriteMany class.
            pvc_spec["storageClassName"] = args.cluster.settings.read_write_many_class
        pvc = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-data",
            metadata={"name": claim, "namespace": namespace, "labels": app_labels("mnist", "data")},
            spec=pvc_spec,
            opts=kept,
        )
        depends: list[pulumi.Resource] = [pvc, *args.operator_ready]
        if code:
            depends.append(
                k8s.core.v1.ConfigMap(
                    f"{name}-trainer-code",
                    metadata={"name": code_config_map(settings), "namespace": namespace, "labels": app_labels("mnist", "trainer-code")},
                    data=trainer_sources(),
                    opts=in_ns,
                )
            )
        self._network_policies(name, settings, job_spec, in_ns)
        if queued:
            depends.append(args.kueue.local_queue(f"{name}-queue", TRAINING_LOCAL_QUEUE, namespace, args.cluster_queue, in_ns))
        job = TFJob(f"{name}-tfjob", TFJobArgs(job_spec), pulumi.ResourceOptions(parent=self, depends_on=depends))
        self.tf_config = job.tf_config

        selector = f"{JOB_NAME_LABEL}={settings.job_name}"
        self.watch_command = f"kubectl get pods -n {namespace} -l {selector} -w"
        self.tensorboard_url = pulumi.Output.from_input("(TensorBoard disabled: mnist.tensorboard.enabled is false)")
        if settings.tensorboard.enabled:
            self.tensorboard_url = self._tensorboard(name, settings, args, claim, pulumi.ResourceOptions(parent=self, depends_on=[pvc]))
        self.register_outputs(
            {"tf_config": self.tf_config, "tensorboard_url": self.tensorboard_url, "watch_command": self.watch_command}
        )

    @staticmethod
    def _network_policies(name: str, settings: MnistSettings, job_spec: TFJobSpec, opts: pulumi.ResourceOptions) -> None:
        """Who may talk to whom in the job's namespace.

        Nothing reaches a pod there and no pod there reaches anything unless a policy below lets
        it (`default-deny` selects every pod, the operator's future ones too). The job's replicas reach each
        other on the job's ports (TF_CONFIG's addresses), the cluster DNS and, when their data URL
        is a remote one, the internet (the trainer downloads MNIST when the shared volume lacks
        it), but no other in-cluster, node or metadata address. TensorBoard (no sign-in) is reached only from a LoadBalancer's source
        ranges; `kubectl port-forward` does not pass through pod networking, so it still works,
        and TensorBoard itself connects nowhere.
        """
        job_pods = {"podSelector": {"matchLabels": {JOB_NAME_LABEL: settings.job_name}}}
        job_ports = [{"protocol": "TCP", "port": port} for port in sorted({s.port() for s in job_spec.replica_specs.values()})]
        board = settings.tensorboard
        board_from = [{"ipBlock": {"cidr": cidr}} for cidr in board.load_balancer_source_ranges]
        policies: dict[str, dict[str, Any]] = {
            "replicas": {
                **job_pods,
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [job_pods], "ports": job_ports}],
                "egress": [
                    {"to": [job_pods], "ports": job_ports},
                    {"to": [CLUSTER_DNS_PEER], "ports": DNS_PORTS},
                    *([] if settings.fetches_from_image
                      else [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(NON_INTERNET_RANGES)}}]}]),
                ],
            },
        }
        if board.enabled:
            policies[TENSORBOARD] = {
                "podSelector": {"matchLabels": TENSORBOARD_LABELS},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": board_from, "ports": [{"protocol": "TCP", "port": TENSORBOARD_PORT}]}] if board_from else [],
                "egress": [],
            }
        default_deny(settings.namespace, app_labels("mnist", "network-policy"), opts, f"{name}-netpol-default-deny")
        for policy, spec in policies.items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{policy}",
                metadata={"name": policy, "namespace": settings.namespace, "labels": app_labels("mnist", "network-policy")},
                spec=spec,
                opts=opts,
            )

    @staticmethod
    def job_spec(
        settings: MnistSettings,
        cluster: Cluster,
        cpu_image: pulumi.Input[str],
        gpu_image: pulumi.Input[str],
        mount_code: bool,
        images: ImagesSettings,
        queued: bool = False,
    ) -> TFJobSpec:
        replica_specs = {}
        gpus_by_kind = settings.gpu_counts
        for kind, count in settings.replica_counts.items():
            gpus = gpus_by_kind.get(kind, 0)
            scheduling = cluster.scheduling_for(gpus)
            resources = getattr(settings.resources, kind).manifest()
            if gpus:
                # The pool's GPU resource: shared GPUs may be advertised under another name.
                resources.setdefault("limits", {}).update(scheduling.gpu_limits(gpus))
            container: dict[str, Any] = {
                "name": CONTAINER_NAME,
                "image": gpu_image if gpus else cpu_image,
                "command": ["python", "-m", "trainer"],
                "args": [
                    f"--data-dir={DATA_MOUNT}/mnist",
                    f"--model-dir={DATA_MOUNT}/model",
                    f"--log-dir={DATA_MOUNT}/logs",
                    f"--train-steps={settings.train_steps}",
                    f"--batch-size={settings.batch_size}",
                    f"--learning-rate={settings.learning_rate}",
                    f"--eval-every={settings.eval_every}",
                    f"--data-url={settings.data_url}",
                ],
                # The protocol spelled out: Kueue keeps the job's templates in its Workload, where the
                # API server defaults it, and a job whose templates then differ from its Workload's
                # is not the Workload's (Kueue deleted and recreated an admitted one in a loop, the
                # job never resumed: seen on the real nodes, 2026-12-07).
                "ports": [{"name": PORT_NAME, "containerPort": DEFAULT_PORT, "protocol": "TCP"}],
                "resources": resources,
                "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT}],
            }
            volumes: list[dict[str, Any]] = [{"name": "data", "persistentVolumeClaim": {"claimName": data_claim(settings)}}]
            if mount_code:
                container["volumeMounts"].append({"name": "trainer-code", "mountPath": CODE_MOUNT, "readOnly": True})
                container["env"] = [{"name": "PYTHONPATH", "value": CODE_MOUNT.rsplit("/", 1)[0]}]
                volumes.append({"name": "trainer-code", "configMap": {"name": code_config_map(settings)}})
            pod_spec = hardened({"containers": [container], "volumes": volumes, **scheduling.pod_spec()},
                                images)
            if images.pull_secrets:
                pod_spec["imagePullSecrets"] = images.image_pull_secrets()
            replica_specs[kind] = ReplicaSpec(
                replicas=count,
                restart_policy=settings.restart_policy,
                template={
                    "metadata": {"labels": app_labels("mnist", kind.lower())},
                    "spec": pod_spec,
                },
            )
        policy = settings.run_policy
        return TFJobSpec(
            name=settings.job_name,
            namespace=settings.namespace,
            replica_specs=replica_specs,
            run_policy=RunPolicy(
                clean_pod_policy=policy.clean_pod_policy,
                backoff_limit=policy.backoff_limit,
                active_deadline_seconds=policy.active_deadline_seconds,
                ttl_seconds_after_finished=policy.ttl_seconds_after_finished,
            ),
            # Queued, the TFJob carries the LocalQueue's name: Kueue's TFJob integration creates it
            # suspended and runs it once every replica fits the quota (vocab/kueue_api.py).
            labels={**app_labels("mnist", "tfjob"), **({QUEUE_LABEL: TRAINING_LOCAL_QUEUE} if queued else {})},
        )

    def _tensorboard(
        self, name: str, settings: MnistSettings, args: DistributedMnistArgs, claim: str, opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        namespace = settings.namespace
        labels = TENSORBOARD_LABELS
        serve = ["--logdir", f"{DATA_MOUNT}/logs", "--port", str(TENSORBOARD_PORT), "--bind_all"]
        container: dict[str, Any] = {
            "name": TENSORBOARD,
            "image": args.image.tensorboard_image,
            "command": ["tensorboard", *serve],
            "ports": [{"name": "http", "containerPort": TENSORBOARD_PORT}],
            "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT, "readOnly": True}],
            "resources": settings.tensorboard.resources.manifest(),
            "readinessProbe": {"httpGet": {"path": "/", "port": TENSORBOARD_PORT}},
            # Alive while it listens; ready once it serves (a slow log scan is not a reason to restart).
            "livenessProbe": {"tcpSocket": {"port": TENSORBOARD_PORT}, "initialDelaySeconds": 30, "periodSeconds": 30},
        }
        volumes: list[dict[str, Any]] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}]
        pod_spec = hardened({"containers": [container], "volumes": volumes, **args.cluster.scheduling_for(0).pod_spec()},
                            args.images)
        if args.images.pull_secrets:
            pod_spec["imagePullSecrets"] = args.images.image_pull_secrets()
        k8s.apps.v1.Deployment(
            f"{name}-tensorboard",
            metadata={"name": TENSORBOARD, "namespace": namespace, "labels": labels},
            spec={"replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
            opts=opts,
        )
        board = settings.tensorboard
        service_spec: dict[str, Any] = {
            "type": board.service_type,
            "selector": labels,
            "ports": [{"name": "http", "port": TENSORBOARD_PORT, "targetPort": TENSORBOARD_PORT}],
        }
        if board.load_balancer_source_ranges:
            service_spec["loadBalancerSourceRanges"] = list(board.load_balancer_source_ranges)
            # Keep the client's address, which TensorBoard's NetworkPolicy admits by range.
            service_spec["externalTrafficPolicy"] = "Local"
        service = k8s.core.v1.Service(
            f"{name}-tensorboard-svc",
            metadata={
                "name": TENSORBOARD,
                "namespace": namespace,
                "labels": labels,
                # TensorBoard's Deployment is waited for (see service_await).
                "annotations": {FIELD_MANAGER_ANNOTATION: FIELD_MANAGER, **service_await(board.service_type)},
            },
            spec=service_spec,
            # The API refuses some type changes in place (a leftover nodePort on ClusterIP).
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(replace_on_changes=["spec.type"], delete_before_replace=True)),
        )
        fallback = port_forward_command(namespace, TENSORBOARD, TENSORBOARD_PORT, TENSORBOARD_PORT) + f"  # then open http://localhost:{TENSORBOARD_PORT}"
        return service_url(service, board.service_type, TENSORBOARD_PORT, fallback)
