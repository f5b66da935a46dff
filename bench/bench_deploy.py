"""`make bench-deploy`: the dev stack's deploy lifecycle on real pods, Pulumi beside plain kubectl.

Both paths start from nothing, each on a fresh private cluster with real nodes (a kubelet and
containerd per node pool; docs/local-cluster.md) whose name, directory, kubeconfig and Pulumi backend
are its own (tests/e2e/local_stack.py, tests/realnode/real_cluster.py), so a developer's `make up`
cluster is never touched, and deploy the same objects:

  pulumi   `make up` (builds checked, cluster start with the images imported into each node,
           `pulumi up`); `pulumi preview --expect-no-changes`; an update (one more TFJob worker,
           the grown job on CPU: `pulumi up --yes`, then once more with `--skip-preview`);
           `pulumi destroy`; `make down`
  kubectl  the manifests `bin/render DIR local` writes for the same stack (exactly what the
           `local` provider deploys: tests/unit/test_cluster.py); `bin/cluster up`; `kubectl apply
           --server-side` in dependency order (CRDs, namespaces, the rest, then Kueue's queues and
           the TFJob once Kueue's and the operator's webhooks can admit them) with `kubectl wait`
           (CRDs Established, Deployments Available, claims Bound, the TFJob Succeeded); `kubectl
           diff --server-side` as the no-op preview; the update's TFJob manifest (rendered from the
           updated config) applied; `kubectl delete --wait` (the job and Kueue's queues first);
           `bin/cluster down`

Each side is timed from the start of its first command (`make up`, `bin/cluster up`) to two points
that a user sees, polled beside the deploy in the same way for both: the hub's login page served
(https GET /hub/login through a port-forward to proxy-public, trusting the stack's own CA) and
the TFJob Succeeded. The two sides run one after the other, under the real-node tests' machine
lock (never beside a real-node test session); the machine's load average at start and end is
recorded, since other work on the machine slows both sides.

`--stack kwok` runs the same on kwok's simulated nodes (no container runs there, so there is no
login page to time; the training operator runs as a local process, as `make up` does there).

Writes results.json and results.md into --out and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The test helpers it shares with the e2e and real-node tests come from tests/, which is on the
# path as the tests have it: `make bench-deploy` runs `PYTHONPATH=tests python -m bench.bench_deploy`.
from components.hub_config.document import PROXY_PUBLIC_SERVICE, PUBLIC_HTTPS_PORT
from e2e.local_stack import NAMESPACE, ROOT, LocalStack, condition, missing_tools
from realnode.real_cluster import RealCluster, hub_context, hub_login_form, machine_lock, not_built
from stacks.config import parse

WAIT_TIMEOUT = "300s"
# The dev stack's TFJob trains 1000 steps on 2 shared cores: minutes, more on a loaded machine.
JOB_TIMEOUT_SECONDS = 1200
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Variant:
    """What the benchmark deploys: the dev stack on real nodes, or the kwok stack on simulated ones."""

    stack: str  # dev | kwok
    config: str  # the stack file
    render_as: str  # bin/render's target for the same objects
    real: bool  # real nodes: containers run, so the hub serves its login page

    def cluster_name(self, side: str) -> str:
        # Short: a real node's directory, below the cluster's, holds its unix sockets (64 characters).
        return f"mlp-b{side}"


VARIANTS = {
    "dev": Variant("dev", "Pulumi.dev.yaml", "local", real=True),
    "kwok": Variant("kwok", "Pulumi.kwok.yaml", "kwok", real=False),
}


def timed(results: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    start = time.monotonic()
    value = step()
    results[name] = round(time.monotonic() - start, 1)
    print(f"  {name}: {results[name]}s", flush=True)
    return value


# The no-op preview runs this many times on each side; the table shows the median. The first one
# after the deploy once took twice as long as the ones after it (2026-12-07).
PREVIEW_RUNS = 3


def previews(results: dict[str, float], preview: Callable[[], Any]) -> Any:
    """PREVIEW_RUNS runs of `preview`: their seconds in results["preview.runs"], the median in
    results["preview"]; the last run's result, or the first that found changes."""
    runs, found = [], None
    for _ in range(PREVIEW_RUNS):
        start = time.monotonic()
        result = preview()
        runs.append(round(time.monotonic() - start, 1))
        if found is None and result.returncode != 0:
            found = result
    results["preview.runs"] = runs
    results["preview"] = sorted(runs)[len(runs) // 2]
    print(f"  preview: {results['preview']}s (median of {runs})", flush=True)
    return found or result


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- the update both sides make ------------------------------------------------------------------


def update_of(config: dict[str, Any]) -> dict[str, int]:
    """One more TFJob worker, the grown job training on CPU: the GPU pools hold a GPU per worker the
    stack has now, so the preview would refuse one more GPU worker (as test_make_up's update does)."""
    workers = config[f"{NAMESPACE}:mnist"]["replicas"]["Worker"]
    return {"mnist.replicas.Worker": workers + 1, "mnist.gpus.Worker": 0}


def with_update(config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A stack file's `config` with each `key.path: value` of `update` set, as `pulumi config set --path` would."""
    changed = copy.deepcopy(config)
    for path, value in update.items():
        top, *keys = path.split(".")
        node = changed.setdefault(f"{NAMESPACE}:{top}", {})
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return changed


# --- the two points a user sees ------------------------------------------------------------------


class JobFailed(AssertionError):
    pass


def tfjob_succeeded(cluster: RealCluster) -> bool:
    """Every TFJob of the cluster Succeeded (there is one); a Failed one ends the benchmark."""
    out = cluster.kubectl("get", "tfjobs", "--all-namespaces", "-o", "json", check=False)
    if out.returncode:
        return False  # no cluster, API server or CRD yet
    jobs = json.loads(out.stdout)["items"]
    failed = [j["metadata"]["name"] for j in jobs if condition(j, "Failed")]
    if failed:
        raise JobFailed(f"TFJob {', '.join(failed)} Failed")
    return bool(jobs) and all(condition(j, "Succeeded") for j in jobs)


def hub_login_served(cluster: RealCluster, namespace: str) -> bool:
    """The hub's login form, fetched over https through a port-forward to proxy-public (as a user
    of the dev stack reaches it), once the proxy has a ready endpoint and the stack's CA exists."""
    slices = cluster.kubectl("get", "endpointslices", "-n", namespace, "-l",
                             f"kubernetes.io/service-name={PROXY_PUBLIC_SERVICE}", "-o", "json", check=False)
    if slices.returncode:
        return False
    endpoints = [e for s in json.loads(slices.stdout)["items"] for e in s.get("endpoints") or []]
    if not any(e.get("conditions", {}).get("ready") for e in endpoints):
        return False
    try:
        context = hub_context(cluster, namespace)
        with cluster.port_forward(f"svc/{PROXY_PUBLIC_SERVICE}", PUBLIC_HTTPS_PORT, namespace=namespace) as port:
            return hub_login_form(port, context)
    except AssertionError:  # the Secret not there yet, or kubectl found no pod to forward to yet
        return False


class Milestones:
    """Seconds from `start` until each check first held, each polled in a thread of its own
    beside the deploy (the time is when the poll saw it: a few seconds' resolution)."""

    def __init__(self, start: float, checks: dict[str, Callable[[], bool]]) -> None:
        self.start = start
        self.at: dict[str, float] = {}
        self.errors: dict[str, AssertionError] = {}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, args=item, name=item[0], daemon=True) for item in checks.items()]
        for thread in self._threads:
            thread.start()

    def _poll(self, name: str, check: Callable[[], bool]) -> None:
        while not self._stop.is_set():
            try:
                if check():
                    self.at[name] = round(time.monotonic() - self.start, 1)
                    print(f"  {name}: {self.at[name]}s from the start", flush=True)
                    return
            except subprocess.TimeoutExpired:
                pass  # an API server too busy to answer in time: poll again
            except JobFailed as error:
                self.errors[name] = error
                return
            self._stop.wait(POLL_SECONDS)

    def wait(self, timeout: float) -> dict[str, float]:
        """Waits for every check (the TFJob's Failed ends it), then stops the threads."""
        deadline = time.monotonic() + timeout
        try:
            while any(t.is_alive() for t in self._threads) and not self.errors:
                if time.monotonic() > deadline:
                    missing = sorted({t.name for t in self._threads} - set(self.at))
                    raise AssertionError(f"not reached within {timeout:.0f}s: {missing}; reached: {self.at}")
                time.sleep(0.5)
        finally:
            self.stop()
        if self.errors:
            raise next(iter(self.errors.values()))
        return dict(self.at)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def milestone_checks(variant: Variant, cluster: RealCluster, config: dict[str, Any]) -> dict[str, Callable[[], bool]]:
    checks: dict[str, Callable[[], bool]] = {"succeeded": lambda: tfjob_succeeded(cluster)}
    if variant.real:  # on kwok's nodes no container runs: nothing serves a page
        namespace = stack_settings(config).jupyterhub.namespace
        checks["login"] = lambda: hub_login_served(cluster, namespace)
    return checks


def stack_settings(config: dict[str, Any]) -> Any:
    return parse({k.removeprefix(f"{NAMESPACE}:"): v for k, v in config.items() if k.startswith(f"{NAMESPACE}:")})


@contextmanager
def machine_to_ourselves(variant: Variant) -> Iterator[None]:
    """Real nodes: the real-node tests' machine lock, so that a test session and the benchmark take
    turns (they would share the kernel's settings and the two cores, and slow each other)."""
    if not variant.real:
        yield
        return
    print("waiting for the machine lock (no real-node test session may run beside it) ...", flush=True)
    lock = machine_lock()
    try:
        yield
    finally:
        lock.close()


# --- pulumi --------------------------------------------------------------------------------------

# `make up`'s steps after its build checks (venv, images, tools), by the command make echoes to
# start each; a command may follow environment assignments (`MLPLATFORM_STACK_CONFIG=... bin/cluster up`).
MAKE_UP_STEPS = {
    "bin/cluster up": "cluster",
    "bin/pulumi stack select": "stack",
    "bin/pulumi up": "deploy",
    "bin/training-operator start": "operator",
}
ASSIGNMENTS = r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*"


def step_of(line: str) -> str | None:
    """The `make up` step whose command `line` echoes, or None."""
    return next((name for command, name in MAKE_UP_STEPS.items() if re.match(ASSIGNMENTS + re.escape(command), line)), None)


def split_steps(marks: list[tuple[str, float]], total: float) -> dict[str, float]:
    """`up` and `up.<step>` from the times each step's command started ("tools" from 0: the build checks)."""
    marks = [("tools", 0.0), *marks]
    ends = [at for _, at in marks[1:]] + [total]
    split = {"up": round(total, 1)}
    for (step, at), end in zip(marks, ends):
        split[f"up.{step}"] = round(end - at, 1)
    return split


def make_up_split(stack: LocalStack, start: float) -> dict[str, float]:
    """`make up`, timed from `start` as a whole and step by step."""
    args = ["make", "--no-print-directory", "up", f"STACK={stack.stack}", f"CONFIG_FILE={stack.config_file}"]
    marks: list[tuple[str, float]] = []
    output = []
    with subprocess.Popen(args, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            output.append(line)
            step = step_of(line)
            if step and step not in dict(marks):
                marks.append((step, time.monotonic() - start))
    if proc.returncode:
        raise AssertionError("make up failed:\n" + "".join(output[-80:]))
    split = split_steps(marks, time.monotonic() - start)
    print(f"  up: {split}", flush=True)
    return split


def bench_pulumi(base: Path, variant: Variant) -> tuple[dict[str, float], dict[str, bool]]:
    stack = LocalStack(base, stack="bench", cluster_name=variant.cluster_name("p"), source=variant.config)
    # The same directory and kubeconfig as the stack's cluster: what the milestones poll.
    cluster = RealCluster(base, name=stack.cluster_name)
    stack.create_stack()
    t: dict[str, float] = {}
    clean: dict[str, bool] = {}
    try:
        start = time.monotonic()
        milestones = Milestones(start, milestone_checks(variant, cluster, stack.config()))
        try:
            t.update(make_up_split(stack, start))
            t.update(milestones.wait(JOB_TIMEOUT_SECONDS))
        finally:
            milestones.stop()
        preview = previews(t, lambda: stack.pulumi("preview", "--expect-no-changes", check=False))
        clean["preview"] = preview.returncode == 0
        if not clean["preview"]:
            print(f"  preview found changes:\n{preview.output[-3000:]}", flush=True)
        for path, value in update_of(stack.config()).items():
            stack.set_config(path, str(value))
        timed(t, "update", lambda: stack.pulumi("up", "--yes"))
        # `pulumi up --yes` runs the program twice: a preview of every change, then the update.
        # The same kind of change (one more worker again) without that first pass:
        for path, value in update_of(stack.config()).items():
            stack.set_config(path, str(value))
        timed(t, "update_direct", lambda: stack.pulumi("up", "--yes", "--skip-preview"))
        timed(t, "destroy", lambda: stack.pulumi("destroy", "--yes"))
        timed(t, "down", lambda: stack.make("down"))
    finally:
        stack.make("down", check=False)
        stack.force_cleanup()
    return t, clean


# --- kubectl -------------------------------------------------------------------------------------


# Kueue's objects (ResourceFlavors, ClusterQueues, LocalQueues): its manager's webhook admits them.
KUEUE_GROUP = "kueue.x-k8s.io"


def kind_of(path: Path) -> str:
    return yaml.safe_load(path.read_text())["kind"]


def api_group(path: Path) -> str:
    return yaml.safe_load(path.read_text())["apiVersion"].rpartition("/")[0]


def render(stack: LocalStack, out: Path, render_as: str, stack_config: Path) -> None:
    """bin/render of `stack_config` (its `render` stack lives in the private backend)."""
    stack.run([str(ROOT / "bin" / "render"), str(out), render_as], env={"MLPLATFORM_STACK_CONFIG": str(stack_config)})


def bench_kubectl(base: Path, variant: Variant) -> tuple[dict[str, float], dict[str, bool]]:
    stack = LocalStack(base, stack="bench-kubectl", cluster_name=variant.cluster_name("k"), source=variant.config)
    cluster = RealCluster(base, name=stack.cluster_name)
    config = yaml.safe_load((ROOT / variant.config).read_text())
    # What bin/cluster makes nodes for and bin/render renders: the stack file as it is, and updated.
    stack.project_dir.mkdir(parents=True, exist_ok=True)
    stack.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    update_file = base / "update.yaml"
    updated = {**config, "config": with_update(config["config"], update_of(config["config"]))}
    update_file.write_text(yaml.safe_dump(updated, sort_keys=False))

    t: dict[str, float] = {}
    clean: dict[str, bool] = {}
    manifests, manifests_updated = base / "manifests", base / "manifests-update"
    timed(t, "render", lambda: render(stack, manifests, variant.render_as, stack.config_file))
    render(stack, manifests_updated, variant.render_as, update_file)
    crds = sorted((manifests / "0-crd").glob("*.yaml"))
    rest = sorted((manifests / "1-manifest").glob("*.yaml"))
    namespaces = [p for p in rest if kind_of(p) == "Namespace"]
    (job,) = [p for p in rest if kind_of(p) == "TFJob"]
    queues = [p for p in rest if api_group(p) == KUEUE_GROUP]
    others = [p for p in rest if p not in namespaces and p != job and p not in queues]
    (job_updated,) = [p for p in sorted((manifests_updated / "1-manifest").glob("*.yaml")) if kind_of(p) == "TFJob"]

    def apply(*files: Path, check: bool = True) -> Any:
        return stack.kubectl("apply", "--server-side", "--field-manager=bench", *(f"--filename={f}" for f in files),
                             check=check)

    def retried(what: str, step: Callable[[], Any]) -> None:
        # `kubectl wait` fails instead of waiting while no object matches or has conditions yet, and
        # the operator's webhook refuses nothing but answers only once its CA is in its configuration.
        deadline = time.monotonic() + 120
        while (result := step()).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: {result.output}")
            time.sleep(0.5)

    def wait(*args: str, timeout: str = WAIT_TIMEOUT) -> None:
        retried(f"kubectl wait {' '.join(args)}", lambda: stack.kubectl("wait", *args, f"--timeout={timeout}", check=False,
                                                                        timeout=JOB_TIMEOUT_SECONDS + 60))

    def deploy() -> None:
        # What `pulumi up` orders by itself: CRDs before their objects, namespaces before what is
        # in them, Kueue's queues once its manager (and its admission webhook) runs, the TFJob once
        # its operator (and the operator's admission webhook) runs and its queue is there.
        apply(*crds)
        wait("--for=condition=Established", "crd", "--all")
        apply(*namespaces)
        apply(*others)
        wait("--for=condition=Available", "deployment", "--all", "--all-namespaces")
        if not variant.real:  # as `make up` does on kwok's nodes, where no container runs
            timed(t, "operator", lambda: stack.run([str(ROOT / "bin" / "training-operator"), "start"]))
        if queues:  # Kueue's own webhook admits its objects, and the TFJob's queue must exist
            retried("kubectl apply (Kueue's queues)", lambda: apply(*queues, check=False))
        retried("kubectl apply (TFJob)", lambda: apply(job, check=False))
        wait("--for=jsonpath={.status.phase}=Bound", "pvc", "--all", "--all-namespaces")

    def diff() -> Any:
        return stack.kubectl("diff", "--server-side", "--field-manager=bench", "-R", f"--filename={manifests}", check=False)

    def delete() -> None:
        # The job and Kueue's queues first, while Kueue's manager still runs to lift their finalizers.
        for files in ([job, *queues], [*others, *namespaces, *crds]):
            stack.kubectl("delete", "--wait=true", f"--timeout={WAIT_TIMEOUT}", *(f"--filename={f}" for f in files),
                          timeout=600)

    def stop_operator() -> None:
        if not variant.real:
            stack.run([str(ROOT / "bin" / "training-operator"), "stop"], check=False)

    try:
        start = time.monotonic()
        milestones = Milestones(start, milestone_checks(variant, cluster, config["config"]))
        try:
            timed(t, "cluster", lambda: stack.run([str(ROOT / "bin" / "cluster"), "up"]))
            timed(t, "apply", deploy)
            t["up"] = round(time.monotonic() - start, 1)
            wait("--for=condition=Succeeded", "tfjob", "--all", "--all-namespaces", timeout=f"{JOB_TIMEOUT_SECONDS}s")
            t["wait"] = round(time.monotonic() - start, 1)
            t.update(milestones.wait(JOB_TIMEOUT_SECONDS))
        finally:
            milestones.stop()
        preview = previews(t, diff)
        clean["preview"] = preview.returncode == 0
        if not clean["preview"]:
            print(f"  kubectl diff found changes:\n{preview.output[-3000:]}", flush=True)
        timed(t, "update", lambda: apply(job_updated))
        timed(t, "destroy", delete)
        stop_operator()
        timed(t, "down", lambda: stack.run([str(ROOT / "bin" / "cluster"), "down"]))
    finally:
        stop_operator()
        stack.run([str(ROOT / "bin" / "cluster"), "down"], check=False)
        stack.force_cleanup()
    return t, clean


# --- report --------------------------------------------------------------------------------------

# (key, what, Pulumi command, kubectl command); keys as bench_pulumi and bench_kubectl record them.
ROWS = [
    ("render", "render the manifests (not on the clock below)", "(inside `pulumi up`)", "`bin/render DIR {render_as}`"),
    ("up", "cluster start + first deploy, until the command returns", "`make up`",
     "`bin/cluster up` + `kubectl apply --server-side` + `kubectl wait`"),
    ("login", "from the start: the hub's login page served", "https GET /hub/login via port-forward", "the same"),
    ("succeeded", "from the start: the TFJob Succeeded", "polled", "polled (`kubectl wait` returned: {wait} s)"),
    ("preview", f"no-op preview, median of {PREVIEW_RUNS}", "`pulumi preview --expect-no-changes`",
     "`kubectl diff --server-side`"),
    ("update", "update: one more TFJob worker, on CPU", "`pulumi up --yes`", "`kubectl apply --server-side` (TFJob)"),
    ("update_direct", "the same again, without `pulumi up`'s preview pass", "`pulumi up --yes --skip-preview`", ""),
    ("destroy", "destroy every object", "`pulumi destroy --yes`", "`kubectl delete --wait`"),
    ("down", "stop the cluster, remove its state", "`make down` (stack already empty)", "`bin/cluster down`"),
]

# The parts of "up": `make up`'s steps, and the kubectl side's that match them.
UP_PARTS = [
    ("tools", "build checks (venv, images, tools)", None),
    ("cluster", "cluster start (real nodes: with their images imported)", "cluster"),
    ("stack", "stack select", None),
    ("deploy", "deploy and wait", "apply"),
    # `make up` starts kwok's operator silently, in its deploy step; kubectl's side does it apart.
    ("operator", "operator start (kwok; within deploy)", "operator"),
]


# Issue 28's baseline: this benchmark's runs of 2026-12-02 (docs/benchmarks.md, "`make bench-deploy`"),
# the real-node run at load 5.3 and the kwok run at load 5.3, each side's seconds by key.
BASELINE_DATE = "2026-12-02"
BASELINES: dict[str, dict[str, dict[str, float]]] = {
    "dev": {
        "pulumi": {"up": 372.7, "up.tools": 3.7, "up.cluster": 306.7, "up.stack": 0.7, "up.deploy": 61.6,
                   "login": 344.3, "succeeded": 427.9, "preview": 7.3, "update": 13.2, "destroy": 16.5, "down": 50.2},
        "kubectl": {"render": 10.0, "up": 197.0, "cluster": 176.7, "apply": 20.2, "login": 193.0, "succeeded": 297.8,
                    "wait": 296.6, "preview": 1.1, "update": 0.2, "destroy": 8.2, "down": 49.7},
    },
    "kwok": {
        "pulumi": {"up": 67.9, "succeeded": 77.1, "preview": 15.4, "update": 24.0, "destroy": 19.6, "down": 5.3},
        "kubectl": {"up": 22.2, "succeeded": 29.0, "preview": 0.8, "update": 0.1, "destroy": 7.0, "down": 0.3},
    },
}


@dataclass(frozen=True)
class Goal:
    """One of issue 28's goals for a Pulumi figure: an absolute bound, or a multiple of kubectl's
    figure for the same step."""

    item: int  # the item that sets it
    seconds: float | None = None
    times_kubectl: float | None = None

    def bound(self, kubectl_seconds: float | None) -> float | None:
        if self.seconds is not None:
            return self.seconds
        return None if kubectl_seconds is None else round(self.times_kubectl * kubectl_seconds, 1)

    def words(self) -> str:
        limit = f"{self.seconds:g} s" if self.seconds is not None else f"{self.times_kubectl:g}× kubectl's"
        return f"≤ {limit} (item {self.item})"


# Keyed as the Pulumi side records its figures. Only the real-node run serves a login page and
# starts real nodes; the deploy's bound is judged on kwok too.
GOALS = {
    "up.cluster": Goal(2, seconds=60),
    "up.deploy": Goal(5, times_kubectl=1.5),
    "login": Goal(3, seconds=120),
    "succeeded": Goal(3, seconds=240),
    "preview": Goal(5, seconds=3),
    "update": Goal(5, seconds=5),
}


def goal_cell(key: str, pulumi: dict[str, float], kubectl: dict[str, float], kubectl_key: str | None) -> str:
    """The goal for `key`'s Pulumi figure and whether this run met it: "≤ 3 s (item 5): met"."""
    goal = GOALS.get(key)
    if goal is None or key not in pulumi:
        return ""
    bound = goal.bound(kubectl.get(kubectl_key or ""))
    if bound is None:
        return goal.words()
    return f"{goal.words()}: {'met' if pulumi[key] <= bound else 'NOT met'}"


def baseline_cell(baseline: dict[str, dict[str, float]], pulumi_key: str | None, kubectl_key: str | None) -> str:
    return f"{cell(baseline.get('pulumi', {}), pulumi_key)} / {cell(baseline.get('kubectl', {}), kubectl_key)}"


def cell(seconds: dict[str, float], key: str | None, clean: dict[str, bool] | None = None) -> str:
    if key is None or key not in seconds:
        return "—"
    if clean is not None and clean.get(key) is False:
        return f"{seconds[key]} (found changes)"
    return str(seconds[key])


def table(pulumi: dict[str, float], kubectl: dict[str, float],
          clean: dict[str, dict[str, bool]] | None = None, render_as: str = "local",
          baseline: dict[str, dict[str, float]] | None = None) -> str:
    """The Markdown table of both sides' seconds, beside issue 28's baseline and goals; a missing
    figure is "—", a preview that found changes says so."""
    clean = clean or {}
    baseline = baseline or {}
    lines = [
        f"| step | Pulumi (s) | kubectl (s) | baseline {BASELINE_DATE}, Pulumi / kubectl (s) | issue 28's goal "
        "| Pulumi command | kubectl command |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for key, what, pulumi_cmd, kubectl_cmd in ROWS:
        if key not in pulumi and key not in kubectl:
            continue
        kubectl_cmd = kubectl_cmd.format(wait=kubectl.get("wait", "—"), render_as=render_as)
        lines.append(f"| {what} | {cell(pulumi, key, clean.get('pulumi'))} | {cell(kubectl, key, clean.get('kubectl'))} "
                     f"| {baseline_cell(baseline, key, key)} | {goal_cell(key, pulumi, kubectl, key)} "
                     f"| {pulumi_cmd} | {kubectl_cmd} |")
        if key != "up":
            continue
        for step, part, kubectl_key in UP_PARTS:
            if f"up.{step}" in pulumi or (kubectl_key or "") in kubectl:
                lines.append(f"| &nbsp;&nbsp;of which {part} | {cell(pulumi, f'up.{step}')} | {cell(kubectl, kubectl_key)} "
                             f"| {baseline_cell(baseline, f'up.{step}', kubectl_key)} "
                             f"| {goal_cell(f'up.{step}', pulumi, kubectl, kubectl_key)} | | |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    memory_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"cpus": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1), "platform": platform.platform()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench-deploy")
    parser.add_argument("--stack", choices=sorted(VARIANTS), default="dev",
                        help="dev: real nodes (default); kwok: simulated nodes")
    args = parser.parse_args()
    variant = VARIANTS[args.stack]
    missing = missing_tools() + (not_built() if variant.real else [])
    if missing:
        print(f"tools not built ({', '.join(missing)}): run `tools/build.sh pulumi kube operator node`", file=sys.stderr)
        return 1
    if variant.real and os.geteuid() != 0:
        print("real nodes need root (network namespaces, cgroups, mounts); --stack kwok does not", file=sys.stderr)
        return 1

    with machine_to_ourselves(variant):
        load_start = load_average()
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"load average at start: {load_start}", flush=True)
        # Short directories in /tmp: a real node's unix sockets live below its cluster's directory.
        bases = [Path(tempfile.mkdtemp(prefix=f"mlp-b{side}-", dir="/tmp")) for side in "pk"]
        try:
            print("pulumi:", flush=True)
            pulumi, pulumi_clean = bench_pulumi(bases[0], variant)
            print("kubectl:", flush=True)
            kubectl, kubectl_clean = bench_kubectl(bases[1], variant)
        finally:
            for base in bases:
                shutil.rmtree(base, ignore_errors=True)
        load_end = load_average()

    args.out.mkdir(parents=True, exist_ok=True)
    clean = {"pulumi": pulumi_clean, "kubectl": kubectl_clean}
    results = {
        "when": when,
        "command": "make bench-deploy" + ("" if args.stack == "dev" else f" STACK={args.stack}"),
        "stack": variant.config,
        "machine": machine(),
        "load_average": {"start": load_start, "end": load_end},
        "seconds": {"pulumi": pulumi, "kubectl": kubectl},
        "preview_clean": clean,
        "baseline": {"date": BASELINE_DATE, "seconds": BASELINES[args.stack]},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = table(pulumi, kubectl, clean, variant.render_as, BASELINES[args.stack])
    footer = f"\nLoad average (1, 5, 15 min) at start {load_start}, at end {load_end}; {results['machine']['cpus']} CPUs."
    (args.out / "results.md").write_text(markdown + "\n" + footer + "\n")
    print()
    print(markdown)
    print(footer)
    print(f"\n(written to {args.out}/results.json and results.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
