"""`make bench-cluster`: how long a new two-node cluster takes to start, with the machine's image
store and without it (issue 28, item 2).

Under the real-node tests' machine lock (never beside a real-node test session), RUNS times over:
`bin/cluster up --real` of a new private cluster (control plane, the dev stack's two real nodes
Ready with every platform image, CoreDNS, storage and the service load balancer), once with every
node importing every image itself (MLPLATFORM_IMAGE_STORE=off, as before the store) and once on the
store (cluster/localcluster/imagestore.py), alternating, each cluster taken down after. The store
is made first if the images have none yet, and that is timed apart: the figures are for warm
caches.

Prints and writes into --out (results.json, results.md) each run's seconds, the medians and the
machine's load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_deploy import load_average, machine
from cluster.localcluster import imagestore
from cluster.localcluster.settings import tools
from real_cluster import RealCluster, machine_lock, not_built

MODES = {"import": {"MLPLATFORM_IMAGE_STORE": "off"}, "store": {}}


def cluster_up(mode: str) -> float:
    base = Path(tempfile.mkdtemp(prefix="mlp-bc-", dir="/tmp"))
    cluster = RealCluster(base)
    cluster.env.update(MODES[mode])
    try:
        started = time.monotonic()
        cluster.cluster("up", "--real", timeout=900)
        return round(time.monotonic() - started, 1)
    finally:
        cluster.cluster("down", check=False, timeout=600)
        shutil.rmtree(base, ignore_errors=True)


def markdown(results: dict) -> str:
    m = results["machine"]
    store = (f"the store made first in {results['store_made_s']} s" if results["store_made_s"] is not None
             else "the store made already")
    rows = [f"| {mode} | {', '.join(f'{s} s' for s in results['runs'][mode])} | {results['median'][mode]} s |"
            for mode in MODES]
    return "\n".join([
        f"`make bench-cluster`, {results['date']}, {m['cpus']} cores, {m['memory_gib']} GiB; load "
        f"{results['load_before']} before, {results['load_after']} after; {store}",
        "",
        "| nodes' images | `bin/cluster up --real`, each run | median |",
        "|---|---|---|",
        *rows,
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="clusters started each way (default 2)")
    parser.add_argument("--out", type=Path, default=Path(".local/bench-cluster"))
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    missing = not_built()
    if missing:
        print(f"bench-cluster: tools not built ({', '.join(missing)}): run `tools/build.sh kube node`", file=sys.stderr)
        return 1
    lock = machine_lock()
    try:
        load_before = load_average()
        before = set(imagestore.stores_dir().iterdir()) if imagestore.stores_dir().exists() else set()
        started = time.monotonic()
        imagestore.ensure(Path(tools()["CONTAINERD_DIR"]) / "bin", lambda line: print(f"  {line}", flush=True))
        store_seconds = round(time.monotonic() - started, 1)
        made = set(imagestore.stores_dir().iterdir()) - before
        runs: dict[str, list[float]] = {mode: [] for mode in MODES}
        for run in range(args.runs):
            for mode in MODES:
                seconds = cluster_up(mode)
                runs[mode].append(seconds)
                print(f"run {run + 1}, {mode}: bin/cluster up --real in {seconds} s", flush=True)
        results = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "load_before": load_before, "load_after": load_average(),
            "store_made_s": store_seconds if made else None,
            "runs": runs, "median": {mode: round(statistics.median(s), 1) for mode, s in runs.items()},
        }
    finally:
        lock.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
