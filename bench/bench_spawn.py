"""`make bench-spawn`: how long a user waits for their server, from Start to JupyterLab (issue 28,
item 4).

Under the real-node tests' machine lock, on a new cluster with the real-node tests' stack
(bench/fresh_stack.py), one user presses Start again and again, as the spawn form does: the REST
call `POST /hub/api/users/NAME/server` with the CPU profile. The notebook image is on the nodes
(the machine's image store) and, after the first start, so is the user's home volume. Each spawn
is timed, at 50 ms polls, from the press to:

- the hub's answer to the press (it holds it until the server is ready or `slow_spawn_timeout`);
- the hub reporting the server ready (`GET /hub/api/users/NAME`);
- JupyterLab's page answering 200 through the proxy (`GET /user/NAME/lab` with the user's token);
- then, in headless Chromium (tests/hub/lab_render_times.mjs, one browser for the run), JupyterLab
  rendered: from navigating to the launcher shown.

Where the time goes comes from the pod and the server's log, on the same clock (the cluster runs on
this machine): the pod created, scheduled and its container started (the API server's 1 s
timestamps), the server's first log line and its "is running at" line (containerd's timestamps),
and its readiness. Then the server is stopped and gone before the next press. The first spawn
(its home volume provisioned then) is reported apart from the others.

Prints and writes into --out (results.json, results.md): each spawn, the median and 95th
percentile of every step, and the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.bench_deploy import load_average, machine, timed
from bench.fresh_stack import FreshStack, cannot_run_here, fresh_real_stack, machine_turn
from e2e.local_stack import ROOT
from hub_client import NAMESPACE, Client
from hub_storm import admin_token, make_users, percentile
from real_cluster import hub_certificate, spki_hash, wait_for

USER = "spawn-bench"
PROFILE = "tensorflow-cpu"  # the dev stack's default profile (Pulumi.dev.yaml)
GOAL_MEDIAN_SECONDS = 5.0  # issue 28: Start to JupyterLab through the proxy
# Issue 28's baseline for that figure: one start through the REST API, answered through the proxy
# 8.8 s later (2026-12-06, before this benchmark existed).
BASELINE_SECONDS = 8.8
POLL_SECONDS = 0.05
SPAWN_TIMEOUT = 300
RENDER_DRIVER = ROOT / "tests" / "hub" / "lab_render_times.mjs"
# KubeSpawner's name for the pod and the server's container.
POD = f"jupyter-{USER}"
CONTAINER = "notebook"
# jupyter_server's line once it listens.
LISTENING = "is running at"


@dataclass
class Spawn:
    """One press of Start; every figure in seconds from the press."""

    first: bool
    answered: float = 0.0  # the hub's answer to the POST
    status: int = 0  # 201: ready within slow_spawn_timeout; 202: still starting
    ready: float = 0.0  # the hub's model says ready
    lab: float = 0.0  # /user/NAME/lab answered 200 through the proxy
    rendered: float | None = None  # lab + the browser's render
    render: float | None = None  # navigating to the launcher shown
    pod: dict[str, float | None] = field(default_factory=dict)  # where the time went, from the pod and log
    log: list[str] = field(default_factory=list)  # the server's log until it listened, each line's seconds first


def seconds_after(stamp: str | None, origin: float) -> float | None:
    """An RFC 3339 timestamp (the API server's, or containerd's with nanoseconds) as seconds after
    `origin` (time.time())."""
    if not stamp:
        return None
    # Python 3.11 parses at most microseconds: cut containerd's nanoseconds.
    head, _, tail = stamp.rstrip("Z").partition(".")
    fraction = f".{tail[:6]}" if tail else ""
    moment = datetime.fromisoformat(f"{head}{fraction}+00:00")
    return round(moment.timestamp() - origin, 2)


def pod_timeline(fresh: FreshStack, origin: float) -> tuple[dict[str, float | None], list[str]]:
    """The server's pod and log, as seconds after the press (`origin`, wall clock), and its log
    until it listened, each line led by its seconds."""
    pod = fresh.cluster.get("pod", "-n", NAMESPACE, POD)
    conditions = {c["type"]: c.get("lastTransitionTime") for c in pod["status"].get("conditions", [])}
    (container,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == CONTAINER]
    log = fresh.cluster.kubectl("logs", "-n", NAMESPACE, POD, "-c", CONTAINER, "--timestamps").stdout.splitlines()
    until_listening: list[tuple[float | None, str]] = []
    listening = None
    for line in log:
        stamp, _, text = line.partition(" ")
        until_listening.append((seconds_after(stamp, origin), text))
        if LISTENING in text:
            listening = until_listening[-1][0]
            break
    return {
        "pod created": seconds_after(pod["metadata"]["creationTimestamp"], origin),
        "scheduled": seconds_after(conditions.get("PodScheduled"), origin),
        "container started": seconds_after(container["state"].get("running", {}).get("startedAt"), origin),
        "server's first log line": until_listening[0][0] if until_listening else None,
        "server listening": listening,
        "pod ready": seconds_after(conditions.get("Ready"), origin),
    }, [f"{seconds} {text}" for seconds, text in until_listening]


def lab_answers(client: Client, token: str) -> bool:
    try:
        status, _, text = client.open("GET", f"/user/{USER}/lab", token, follow=False, timeout=10, browser=False)
    except OSError:
        return False
    return status == 200 and "JupyterLab" in text


def server_gone(fresh: FreshStack, client: Client, admin: str) -> bool:
    model = client.api("GET", f"/users/{USER}", admin)
    if model["servers"]:
        return False
    return fresh.cluster.kubectl("get", "pod", "-n", NAMESPACE, POD, check=False).returncode != 0


def spawn_once(fresh: FreshStack, client: Client, admin: str, token: str, first: bool,
               renderer: subprocess.Popen | None) -> Spawn:
    spawn = Spawn(first=first)
    origin = time.time()
    start = time.monotonic()
    status, _, text = client.open("POST", f"/hub/api/users/{USER}/server", admin, {"profile": PROFILE},
                                  timeout=SPAWN_TIMEOUT, browser=False)
    assert status in (201, 202), f"POST /hub/api/users/{USER}/server: HTTP {status}: {text[:300]}"
    spawn.answered, spawn.status = round(time.monotonic() - start, 2), status

    def ready() -> bool:
        server = client.api("GET", f"/users/{USER}", admin)["servers"].get("")
        assert server is not None, f"{USER}'s spawn failed (the hub dropped the server)"
        return bool(server.get("ready"))

    wait_for(ready, SPAWN_TIMEOUT, f"{USER}'s server ready", interval=POLL_SECONDS)
    spawn.ready = round(time.monotonic() - start, 2)
    wait_for(lambda: lab_answers(client, token), SPAWN_TIMEOUT, "JupyterLab through the proxy", interval=POLL_SECONDS)
    spawn.lab = round(time.monotonic() - start, 2)
    if renderer is not None:
        renderer.stdin.write(json.dumps({"url": f"https://localhost:{client.port}/user/{USER}/lab", "token": token}) + "\n")
        renderer.stdin.flush()
        answer = json.loads(renderer.stdout.readline())
        assert "seconds" in answer, f"JupyterLab did not render in the browser: {answer}"
        spawn.render = round(answer["seconds"], 2)
        spawn.rendered = round(spawn.lab + spawn.render, 2)
    spawn.pod, spawn.log = pod_timeline(fresh, origin)
    client.api("DELETE", f"/users/{USER}/server", admin, ok=(202, 204))
    wait_for(lambda: server_gone(fresh, client, admin), SPAWN_TIMEOUT, f"{USER}'s server stopped and its pod gone", interval=0.5)
    return spawn


def run_spawns(fresh: FreshStack, count: int, browser: bool) -> list[Spawn]:
    client = fresh.client
    client.connect()
    wait_for(client.healthy, 300, "/hub/health through the port-forward", interval=1)
    admin = admin_token(client, fresh.admin_password, "bench-spawn")
    token = make_users(client, admin, [USER])[USER]
    renderer = None
    if browser:
        certificate = hub_certificate(fresh.cluster)
        renderer = subprocess.Popen(["node", str(RENDER_DRIVER)], cwd=RENDER_DRIVER.parent, text=True,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    env={**os.environ, "TRUSTED_SPKI": spki_hash(certificate)})
    spawns = []
    try:
        for i in range(count + 1):
            spawn = spawn_once(fresh, client, admin, token, first=i == 0, renderer=renderer)
            print(f"  spawn {i}{' (first: home volume made)' if i == 0 else ''}: ready {spawn.ready}s, "
                  f"lab through the proxy {spawn.lab}s, rendered {spawn.rendered}s; pod {spawn.pod}", flush=True)
            spawns.append(spawn)
    finally:
        if renderer is not None:
            renderer.stdin.close()
            renderer.wait(30)
    return spawns


def figures(spawn: Spawn) -> dict[str, float | None]:
    """A spawn's figures by the names the report gives them, in the report's order: the pod and
    the server's log first, then what the hub, the proxy and the browser answered."""
    return {**spawn.pod, "hub answered the press": spawn.answered, "hub: server ready": spawn.ready,
            "JupyterLab through the proxy": spawn.lab, "browser render": spawn.render,
            "Start to JupyterLab rendered": spawn.rendered}


def summary(spawns: list[Spawn]) -> dict[str, Any]:
    """Median and p95 of each figure over the spawns after the first."""
    values: dict[str, list[float]] = {}
    for spawn in spawns:
        if not spawn.first:
            for name, value in figures(spawn).items():
                if value is not None:
                    values.setdefault(name, []).append(value)
    return {name: {"median": round(statistics.median(v), 2), "p95": round(percentile(v, 95), 2), "n": len(v)}
            for name, v in values.items()}


def goal_verdict(median: float) -> str:
    """Whether a median from Start to JupyterLab through the proxy meets issue 28's goal."""
    return "met" if median <= GOAL_MEDIAN_SECONDS else "NOT met"


def markdown(results: dict[str, Any]) -> str:
    first = figures(Spawn(**results["spawns"][0]))
    lines = ["| from Start (s) | median | p95 | first spawn (home volume made) | issue 28: baseline, goal |",
             "|---|---:|---:|---:|---|"]
    for name, figure in results["summary"].items():
        issue = ""
        if name == "JupyterLab through the proxy":
            issue = f"{BASELINE_SECONDS} s; median ≤ {GOAL_MEDIAN_SECONDS:g} s: {goal_verdict(figure['median'])}"
        lines.append(f"| {name} | {figure['median']} | {figure['p95']} | {first.get(name)} | {issue} |")
    n = results["summary"].get("JupyterLab through the proxy", {}).get("n", 0)
    return "\n".join(lines) + (
        f"\n\n{n} spawns after the first; `browser render` is from navigating to JupyterLab's launcher shown, not "
        f"from Start. Load average (1, 5, 15 min) at start {results['load_average']['start']}, before the spawns "
        f"{results['load_average']['spawns']}, at end {results['load_average']['end']}; {results['machine']['cpus']} CPUs. "
        f"Steps (s): {results['seconds']}.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench-spawn")
    parser.add_argument("--spawns", type=int, default=10, help="spawns timed after the first")
    parser.add_argument("--no-browser", action="store_true", help="skip the browser's render (no Chromium)")
    args = parser.parse_args()
    if args.spawns < 1:
        parser.error(f"--spawns {args.spawns}: at least 1 spawn is timed after the first")
    problem = cannot_run_here()
    if problem:
        print(problem, file=sys.stderr)
        return 1
    browser = not args.no_browser
    if browser and not (RENDER_DRIVER.parent / "node_modules" / "playwright-core").is_dir():
        print("the browser harness is not installed: run tests/hub/setup.sh (or pass --no-browser)", file=sys.stderr)
        return 1

    steps: dict[str, float] = {}
    load_spawns: list[float] = []
    with machine_turn("mlp-bs-") as turn, fresh_real_stack(turn.base, "benchspawn", steps) as fresh:
        load_spawns.extend(load_average())
        spawns = timed(steps, "spawns", lambda: run_spawns(fresh, args.spawns, browser))

    results = {
        "when": turn.when,
        "command": "make bench-spawn",
        "machine": machine(),
        "load_average": {"start": turn.load_start, "spawns": load_spawns, "end": turn.load_end},
        "seconds": steps,
        "summary": summary(spawns),
        "spawns": [asdict(s) for s in spawns],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    median = results["summary"]["JupyterLab through the proxy"]["median"]
    print(f"\nStart to JupyterLab through the proxy, median {median} s: the {GOAL_MEDIAN_SECONDS} s goal "
          f"{goal_verdict(median)}; "
          f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
