"""`make bench-hub`: a class of 20 presses Start at once on the real nodes (issue 27, item 6).

Brings up what it needs and takes it down again, under the real-node tests' machine lock (never
beside a real-node test session): a private cluster with real nodes (`bin/cluster up --real`),
the real-node tests' stack on it (the dev stack with their overrides: tests/realnode/realnode_stack.py)
by `make up`, then waits for the stack's TFJob to finish so that the storm meets the hub, not the
training. The stack is updated with a tiny test profile and the storm's limits (`--concurrent`,
`--active`; the hub rolls), and the storm of tests/realnode/hub_storm.py runs: the admin makes the
users, each presses Start within a few seconds; the refused press again once every accepted server
is ready, until a round accepts nobody; /hub/health is sampled throughout through a port-forward
of its own (its latency includes kubectl's port-forward, as a user's does locally).

Prints and writes into --out (results.json, results.md): spawn time (median and 95th percentile,
from the accepted press to the server ready, 1 s resolution), /hub/health's 95th percentile and
failures, the refusals by the hub's message, the hub's restarts, and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.bench_deploy import load_average, machine, timed
from bench.fresh_stack import cannot_run_here, fresh_real_stack, machine_turn
from e2e.local_stack import ROOT
from hub_storm import Limits, Storm, admin_token, run_storm, storm_limits
from real_cluster import wait_for

HEALTH_P95_GOAL = 1.0  # seconds: issue 27's bar for /hub/health during the storm


def storm_on_fresh_stack(base: Path, users: list[str], limits: Limits, spread: float,
                         steps: dict[str, float], load_storm: list[float]) -> Storm:
    with fresh_real_stack(base, "benchhub", steps) as fresh:
        client = fresh.client
        with storm_limits(fresh.stack, limits):
            client.connect()
            wait_for(client.healthy, 300, "/hub/health with the storm's limits", interval=1)
            token = admin_token(client, fresh.admin_password, "bench-hub")
            load_storm.extend(load_average())
            return timed(steps, "storm", lambda: run_storm(fresh.cluster, client, token, users, limits, spread=spread))


def markdown(results: dict[str, Any]) -> str:
    s = results["storm"]
    rows = [
        ("users pressing Start (first round within)", f"{s['users']} ({results['spread_seconds']} s)"),
        ("limits: concurrent spawns, active servers", f"{s['concurrentSpawnLimit']}, {s['activeServerLimit']}"),
        ("first round's answers (HTTP status: count)", ", ".join(f"{k}: {v}" for k, v in s["first round answers"].items())),
        ("rounds (the refused press again once the accepted are ready)", s["rounds"]),
        ("servers ready; spawns failed", f"{s['servers ready']}; {s['spawns failed']}"),
        ("spawn time, median / p95 (s)", f"{s['spawn median (s)']} / {s['spawn p95 (s)']}"),
        ("refusals (429) by message", "; ".join(f"{m!r}: {n}" for m, n in s["refusals"].items())),
        ("/hub/health: samples, failures, p95, max (s)",
         f"{s['health samples']}, {s['health failures']}, {s['health p95 (s)']}, {s['health max (s)']}"),
        ("hub restarts (pod replaced)", f"{s['hub restarts']} ({s['hub pod replaced']})"),
        ("servers silent through the proxy; left after stop", f"{s['servers silent through the proxy']}; {s['left after stop']}"),
        ("storm, first press to every server stopped (s)", results["seconds"].get("storm")),
    ]
    lines = ["| what | figure |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines) + (f"\n\nLoad average (1, 5, 15 min) at start {results['load_average']['start']}, "
                               f"before the storm {results['load_average']['storm']}, at end {results['load_average']['end']}; "
                               f"{results['machine']['cpus']} CPUs. Steps (s): {results['seconds']}.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench-hub")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--concurrent", type=int, default=8, help="the storm's concurrentSpawnLimit")
    parser.add_argument("--active", type=int, default=12, help="the storm's activeServerLimit")
    parser.add_argument("--spread", type=float, default=3.0, help="seconds within which the first round presses Start")
    args = parser.parse_args()
    problem = cannot_run_here()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    users = [f"storm-{i:02d}" for i in range(1, args.users + 1)]
    limits = Limits(concurrent_spawns=args.concurrent, active_servers=args.active)

    steps: dict[str, float] = {}
    load_storm: list[float] = []
    with machine_turn("mlp-bh-") as turn:
        storm = storm_on_fresh_stack(turn.base, users, limits, args.spread, steps, load_storm)

    results = {
        "when": turn.when,
        "command": "make bench-hub",
        "machine": machine(),
        "load_average": {"start": turn.load_start, "storm": load_storm, "end": turn.load_end},
        "spread_seconds": args.spread,
        "seconds": steps,
        "storm": storm.summary(),
        "spawn_seconds": storm.spawn_seconds(),
        "presses": [vars(p) for p in storm.presses],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    p95 = storm.summary()["health p95 (s)"]
    verdict = "met" if p95 is not None and p95 <= HEALTH_P95_GOAL else "NOT met"
    print(f"\n/hub/health p95 {p95} s: the {HEALTH_P95_GOAL} s goal {verdict}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
