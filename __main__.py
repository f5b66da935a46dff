"""mlplatform: GPU notebooks and distributed TensorFlow training on Kubernetes.

Composes the components from the typed stack config and exports what users need.
"""

import gc

import pulumi

import stacks
from components.cert_manager import CertManager
from components.cluster import Cluster, ClusterArgs
from components.jupyterhub import JupyterHub, JupyterHubArgs
from components.k8s import declared_state_wins
from components.kept_data import checked
from components.kueue import Kueue, KueueArgs, KueueManifests, QueuedNamespaces, kueue_manifests_dir
from components.mnist import DistributedMnist, DistributedMnistArgs
from components.trainer_image import TrainerImage, TrainerImageArgs
from components.training_operator import TrainingOperator, TrainingOperatorArgs


def main() -> None:
    settings = stacks.load()
    # What the stack declares wins over hand edits (kubectl edit/scale) on the next `pulumi up`.
    pulumi.runtime.register_stack_transformation(declared_state_wins)
    cluster = Cluster("mlplatform", ClusterArgs(settings.cluster, settings.images))
    on_cluster = pulumi.ResourceOptions(providers=[cluster.provider])
    pulumi.export("clusterProvider", settings.cluster.provider)
    pulumi.export(
        "nodePools",
        {p.name: {"nodes": p.node_count, "gpusPerNode": p.gpus_per_node} for p in settings.cluster.node_pools},
    )
    if cluster.kubeconfig is not None:
        pulumi.export("kubeconfig", cluster.kubeconfig)

    # The namespaces that hold user data wait for this: a config that would lose what the last
    # deployment kept fails here, naming the key (stacks/retention.py).
    data_checked = checked(settings)

    kueue = None
    if settings.kueue.enabled:
        # What Kueue queues, by namespace: the training job's TFJob, the hub's GPU servers.
        queued = QueuedNamespaces(
            pods=(settings.jupyterhub.namespace,)
            if settings.jupyterhub.enabled and settings.kueue.queued_profiles(settings.jupyterhub) else (),
            tfjobs=(settings.mnist.namespace,) if settings.mnist.enabled and settings.kueue.training_queue else (),
        )
        kueue = Kueue(
            "kueue",
            KueueArgs(
                settings.kueue,
                cluster,
                KueueManifests(kueue_manifests_dir()),
                settings.images,
                queued=queued,
                api_server_egress=cluster.api_server_egress(),
            ),
            opts=on_cluster,
        )
        pulumi.export("kueueQueues", kueue.status_command)

    if settings.jupyterhub.enabled:
        https = settings.jupyterhub.https
        cert_manager = ()
        if https is not None and https.install_cert_manager:
            # The hub's Let's Encrypt certificate is issued and renewed by cert-manager.
            cert_manager = tuple(CertManager("cert-manager", opts=on_cluster).ready)
        hub = JupyterHub(
            "jupyterhub",
            JupyterHubArgs.from_cluster(
                settings.jupyterhub, cluster, settings.images, cert_manager, data_checked, kueue, settings.kueue
            ),
            opts=on_cluster,
        )
        # The hub's URL once its load balancer has an address, else the port-forward command.
        pulumi.export("jupyterhub", hub.url)
        if hub.admin_password is not None:
            # The first admin's generated password (native sign-in): `--show-secrets` reveals it.
            pulumi.export("jupyterhubAdminPassword", hub.admin_password)

    if settings.mnist.enabled:
        operator = TrainingOperator(
            "training-operator",
            TrainingOperatorArgs(
                settings.images,
                webhook=not cluster.simulated,
                gang_scheduler=settings.mnist.gang_scheduler,
                api_server_egress=cluster.api_server_egress(),
            ),
            opts=on_cluster,
        )
        image = TrainerImage(
            "trainer-image",
            TrainerImageArgs(
                settings.mnist.image,
                settings.images,
                resource_group_name=cluster.resource_group_name,
                managed_cluster=cluster.managed_cluster,
            ),
        )
        mnist = DistributedMnist(
            "mnist",
            DistributedMnistArgs(
                settings.mnist, cluster, image, operator.ready, settings.images, data_checked,
                kueue=kueue, cluster_queue=settings.kueue.training_queue if kueue else None,
            ),
            opts=on_cluster,
        )
        pulumi.export("tfConfig", mnist.tf_config)
        pulumi.export("tensorboard", mnist.tensorboard_url)
        pulumi.export("watchTraining", mnist.watch_command)

    # Every object made so far (the SDK's modules, the components) lives until the program exits.
    # Frozen, the collector never walks them again: neither while the engine works through the
    # registrations nor in the full collection at interpreter exit, which alone took about 0.5 s
    # of every preview and update on a 2-core machine (docs/benchmarks.md).
    gc.freeze()


if __name__ == "__main__":
    main()
