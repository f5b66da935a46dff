"""The real nodes `bin/cluster up --real` makes for a stack's node pools, as JSON on stdout.

    python -m stacks.local_nodes STACK_CONFIG_FILE
    python -m stacks.local_nodes --provider STACK_CONFIG_FILE   # the stack's cluster.provider

One node per pool (this machine has two cores; kwok's simulated nodes are for rehearsing many),
named `real-<pool>-0`, with the labels and taints the stack's workloads select and tolerate on
that pool, and the pool's GPUs per node and their sharing (simulated there:
cluster/localcluster/gpuplugin.py).
A `kwok` stack's own pods must stay on kwok's nodes (their manifests are for simulated nodes), so
there every real node is also tainted REAL_NODE_TAINT, which only the real-node tests tolerate; a
`local` stack's pods run on the real nodes. Only `mlplatform:cluster` is read and validated: the
rest of the config may hold secrets that need the stack's passphrase.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from vocab.names import POOL_LABEL
from stacks.config import NAMESPACE, ClusterSettings, ConfigError, parse

KEY = "cluster"
REAL_NODE_TAINT = "mlplatform.dev/node-kind=real:NoSchedule"


def nodes(cluster: ClusterSettings) -> list[dict]:
    beside_kwok = [REAL_NODE_TAINT] if cluster.provider == "kwok" else []
    return [
        {
            "name": f"real-{pool.name}-0",
            "labels": {**pool.labels, POOL_LABEL: pool.name},
            "taints": [str(t) for t in pool.taints] + beside_kwok,
            "gpus": pool.gpus_per_node,
            "gpuSharing": pool.gpu_sharing and {
                "replicas": pool.gpu_sharing.replicas,
                "resource": pool.gpu_sharing.resource,
                "failRequestsGreaterThanOne": pool.gpu_sharing.fail_requests_greater_than_one,
            },
        }
        for pool in cluster.node_pools
    ]


def read(config_file: Path, need_pools: bool = True) -> ClusterSettings:
    config = (yaml.safe_load(config_file.read_text()) or {}).get("config") or {}
    cluster = parse({KEY: config.get(f"{NAMESPACE}:{KEY}", {})}).cluster
    if need_pools and not cluster.node_pools:
        raise ConfigError(f"{NAMESPACE}:{KEY}.nodePools: real nodes are made for the stack's pools, and it has none")
    return cluster


def main(argv: list[str]) -> int:
    provider_only = argv[:1] == ["--provider"]
    argv = argv[1:] if provider_only else argv
    if len(argv) != 1:
        print("usage: python -m stacks.local_nodes [--provider] STACK_CONFIG_FILE", file=sys.stderr)
        return 2
    try:
        cluster = read(Path(argv[0]), need_pools=not provider_only)
    except (ConfigError, OSError, yaml.YAMLError) as error:
        print(f"{argv[0]}: {error}", file=sys.stderr)
        return 1
    print(cluster.provider if provider_only else json.dumps(nodes(cluster), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
