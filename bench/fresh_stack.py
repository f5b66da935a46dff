"""A new private cluster with real nodes and the real-node tests' stack on it, for the benchmarks that
need a deployed hub (`make bench-hub`, `make bench-spawn`), and their turn on the machine.

A benchmark checks first that it can run here (`cannot_run_here`), then takes the real-node tests'
machine lock (`machine_turn`: never beside a real-node test session) and brings up what it needs,
taking it down again after (`fresh_real_stack`): `bin/cluster up --real`, the stack of
tests/realnode/realnode_stack.py (the dev stack with the real-node tests' overrides) by `make up`,
then a wait for the stack's TFJob to finish, so that what is measured meets the hub, not the
training. Each step's seconds go into the benchmark's results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.bench_deploy import JOB_TIMEOUT_SECONDS, load_average, tfjob_succeeded, timed
from e2e.local_stack import LocalStack, missing_tools
from hub_client import Client
from hub_storm import ADMIN_PASSWORD_OUTPUT
from real_cluster import RealCluster, hub_context, machine_lock, not_built, wait_for
from realnode_stack import stack_config


def cannot_run_here() -> str | None:
    """Why a benchmark on real nodes cannot run on this machine, or None where it can."""
    missing = missing_tools() + not_built()
    if missing:
        return f"tools not built ({', '.join(missing)}): run `tools/build.sh pulumi kube operator kueue node`"
    if os.geteuid() != 0:
        return "real nodes need root (network namespaces, cgroups, mounts)"
    return None


@dataclass
class Turn:
    """A benchmark's turn on the machine: a directory for its cluster, when it began, the load."""

    base: Path
    when: str
    load_start: list[float]
    load_end: list[float] = field(default_factory=list)


@contextmanager
def machine_turn(prefix: str) -> Iterator[Turn]:
    """The machine lock held, and a new directory (removed after) for the cluster."""
    print("waiting for the machine lock (no real-node test session may run beside it) ...", flush=True)
    lock = machine_lock()
    try:
        # Short: a real node's unix sockets live below the cluster's directory.
        turn = Turn(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    load_average())
        print(f"load average at start: {turn.load_start}", flush=True)
        try:
            yield turn
        finally:
            shutil.rmtree(turn.base, ignore_errors=True)
        turn.load_end = load_average()
    finally:
        lock.close()


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
