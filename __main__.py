"""mlplatform: GPU notebooks and distributed TensorFlow training on Kubernetes.

Composes the components from the typed stack config and exports what users need.
"""

import pulumi

import stacks
from components.cluster import Cluster, ClusterArgs


def main() -> None:
    settings = stacks.load()
    cluster = Cluster("mlplatform", ClusterArgs(settings.cluster))
    pulumi.export("clusterProvider", settings.cluster.provider)
    pulumi.export("nodePools", {p.name: {"nodes": p.node_count, "gpusPerNode": p.gpus_per_node} for p in settings.cluster.node_pools})
    if cluster.kubeconfig is not None:
        pulumi.export("kubeconfig", cluster.kubeconfig)


if __name__ == "__main__":
    main()
