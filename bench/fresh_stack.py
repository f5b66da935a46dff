"""A new private cluster with real nodes and the real-node tests' stack on it, for the benchmarks that
need a deployed hub (`make bench-hub`, `make bench-spawn`).

Brings up what they need and takes it down again: `bin/cluster up --real`, the stack of
tests/realnode/realnode_stack.py (the dev stack with the real-node tests' overrides) by `make up`,
then waits for the stack's TFJob to finish, so that what is measured meets the hub, not the
training. Each step's seconds go into the benchmark's results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.bench_deploy import JOB_TIMEOUT_SECONDS, tfjob_succeeded
from e2e.local_stack import LocalStack
from hub_client import Client
from hub_storm import ADMIN_PASSWORD_OUTPUT
from real_cluster import RealCluster, hub_context, wait_for
from realnode_stack import stack_config

T = TypeVar("T")


def timed(seconds: dict[str, float], name: str, step: Callable[[], T]) -> T:
    """`step()`, its seconds (0.1 s) kept in `seconds[name]` and printed."""
    start = time.monotonic()
    value = step()
    seconds[name] = round(time.monotonic() - start, 1)
    print(f"  {name}: {seconds[name]}s", flush=True)
    return value


@dataclass
class FreshStack:
    cluster: RealCluster
    stack: LocalStack
    client: Client  # not connected yet: a benchmark that changes the stack connects after
    admin_password: str


@contextmanager
def fresh_real_stack(base: Path, name: str, seconds: dict[str, float]) -> Iterator[FreshStack]:
    """The cluster in `base`, the stack `name` deployed on it and its TFJob Succeeded; the stack
    destroyed and the cluster taken down afterwards, whatever happened."""
    cluster = RealCluster(base)
    config = stack_config()
    config["cluster"]["kubeconfig"] = str(cluster.kubeconfig)
    stack = LocalStack(base / "stack", stack=name, extra_config=config)
    # The cluster above, not a kwok cluster of the stack's own (as tests/realnode/conftest.py).
    stack.cluster_dir, stack.kubeconfig = cluster.cluster_dir, cluster.kubeconfig
    stack.env.update({k: v for k, v in cluster.env.items() if k.startswith("MLPLATFORM_")})
    try:
        timed(seconds, "cluster up", lambda: cluster.cluster("up", "--real", timeout=900))
        stack.create_stack()
        timed(seconds, "make up", lambda: stack.make("up", timeout=900))
        timed(seconds, "TFJob finished", lambda: wait_for(lambda: tfjob_succeeded(cluster), JOB_TIMEOUT_SECONDS,
                                                          "the stack's TFJob Succeeded", interval=5))
        password = stack.pulumi("stack", "output", ADMIN_PASSWORD_OUTPUT, "--show-secrets").stdout.strip()
        client = Client(cluster, hub_context(cluster))
        try:
            yield FreshStack(cluster, stack, client, password)
        finally:
            client.close()
    finally:
        stack.pulumi("destroy", "--yes", check=False, timeout=600)
        cluster.cluster("down", check=False)
