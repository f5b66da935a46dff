"""`make bench-deploy`: the dev stack's deploy lifecycle, Pulumi beside plain kubectl.

Both paths run on a fresh private kwok cluster (tests/e2e/local_stack.py: its own cluster name,
directory, kubeconfig, Pulumi backend and stack; a developer's `make up` cluster is not touched)
and deploy the same objects:

  pulumi   `make up` (cluster start + first deploy), `pulumi preview --expect-no-changes`,
           an update (mnist.replicas.Worker 2 -> 3, `pulumi up --yes`), `pulumi destroy`,
           then `make down` for what remains (stopping the cluster)
  kubectl  `bin/cluster up`, then the manifests `bin/render` writes for the same stack applied
           with `kubectl apply --server-side` and `kubectl wait`ed on (CRDs established, nodes
           Ready, claims Bound, Deployments Available), `kubectl diff --server-side` as the no-op
           preview, the same update applied to the TFJob manifest, `kubectl delete --wait`,
           then `bin/cluster down`

Writes results.json and results.md into --out and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from local_stack import ROOT, LocalStack, missing_tools

WAIT_TIMEOUT = "300s"


def timed(results: dict[str, float], name: str, step: Any) -> Any:
    start = time.monotonic()
    value = step()
    results[name] = round(time.monotonic() - start, 1)
    print(f"  {name}: {results[name]}s", flush=True)
    return value


# --- pulumi ------------------------------------------------------------------------------------


# The steps of `make up`, as make echoes them, in order.
MAKE_UP_STEPS = {
    "tools/build.sh": "tools",
    "bin/cluster up": "cluster",
    "bin/pulumi stack select": "stack",
    "bin/pulumi up": "deploy",
    "bin/training-operator start": "operator",
}


def make_up_split(stack: LocalStack) -> dict[str, float]:
    """`make up`, timed as a whole and step by step (from the times make echoes each command)."""
    args = ["make", "--no-print-directory", "up", f"STACK={stack.stack}", f"CONFIG_FILE={stack.config_file}"]
    start = time.monotonic()
    marks: list[tuple[str, float]] = []
    output = []
    with subprocess.Popen(args, cwd=ROOT, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            output.append(line)
            step = next((name for prefix, name in MAKE_UP_STEPS.items() if line.startswith(prefix)), None)
            if step and step not in dict(marks):
                marks.append((step, time.monotonic() - start))
    total = time.monotonic() - start
    if proc.returncode:
        raise AssertionError("make up failed:\n" + "".join(output[-80:]))
    split = {"up": round(total, 1)}
    ends = [at for _, at in marks[1:]] + [total]
    for (step, at), end in zip(marks, ends):
        split[f"up.{step}"] = round(end - at, 1)
    print(f"  up: {split}", flush=True)
    return split


def bench_pulumi(base: Path) -> dict[str, float]:
    stack = LocalStack(base, stack="bench", cluster_name="mlplatform-bench")
    stack.create_stack()
    workers = stack.config()["mlplatform:mnist"]["replicas"]["Worker"]
    t: dict[str, float] = {}
    try:
        t.update(make_up_split(stack))
        timed(t, "preview", lambda: stack.pulumi("preview", "--expect-no-changes"))
        stack.set_config("mnist.replicas.Worker", str(workers + 1))
        # The dev GPU pool has a GPU per worker it has now: the grown job trains on CPU (as
        # test_make_up's in-place update does), or the preview refuses it.
        stack.set_config("mnist.gpus.Worker", "0")
        timed(t, "update", lambda: stack.pulumi("up", "--yes"))
        timed(t, "destroy", lambda: stack.pulumi("destroy", "--yes"))
        timed(t, "down", lambda: stack.make("down"))
    finally:
        stack.make("down", check=False)
        stack.force_cleanup()
    return t


# --- kubectl -----------------------------------------------------------------------------------


def kind_of(path: Path) -> str:
    return yaml.safe_load(path.read_text())["kind"]


def bench_kubectl(base: Path) -> dict[str, float]:
    stack = LocalStack(base, stack="bench-kubectl", cluster_name="mlplatform-bench-kubectl")
    manifests = base / "manifests"
    # bin/render keeps its own `render` stack; here it lives in the private backend.
    stack.run([str(ROOT / "bin" / "render"), str(manifests), "kwok"])  # the objects `make up` deploys
    crds = sorted((manifests / "0-crd").glob("*.yaml"))
    rest = sorted((manifests / "1-manifest").glob("*.yaml"))
    namespaces = [p for p in rest if kind_of(p) == "Namespace"]
    others = [p for p in rest if p not in namespaces]
    (job,) = [p for p in others if kind_of(p) == "TFJob"]

    def apply(*files: Path) -> None:
        stack.kubectl("apply", "--server-side", "--field-manager=bench", *(f"--filename={f}" for f in files))

    def wait(*args: str) -> None:
        # `kubectl wait` fails instead of waiting while an object has no status conditions yet.
        deadline = time.monotonic() + 60
        while (result := stack.kubectl("wait", *args, f"--timeout={WAIT_TIMEOUT}", check=False)).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"kubectl wait {' '.join(args)}: {result.output}")
            time.sleep(0.2)

    def up() -> None:
        # What `pulumi up` orders by itself: CRDs before their objects, namespaces before what is in them.
        apply(*crds)
        wait("--for=condition=Established", "crd", "--all")
        apply(*namespaces)
        apply(*others)
        wait("--for=condition=Ready", "node", "--all")
        wait("--for=jsonpath={.status.phase}=Bound", "pvc", "--all", "--all-namespaces")
        wait("--for=condition=Available", "deployment", "--all", "--all-namespaces")

    def diff() -> None:
        result = stack.kubectl("diff", "--server-side", "--field-manager=bench", "-R", f"--filename={manifests}", check=False)
        assert result.returncode == 0, f"kubectl diff found changes right after apply:\n{result.output[-3000:]}"

    def update() -> None:
        changed = base / "tfjob-update.yaml"
        document = yaml.safe_load(job.read_text())
        document["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] += 1
        changed.write_text(yaml.safe_dump(document))
        apply(changed)

    def delete() -> None:
        stack.kubectl("delete", "--wait=true", f"--timeout={WAIT_TIMEOUT}", *(f"--filename={f}" for f in [*others, *namespaces, *crds]))

    t: dict[str, float] = {}
    try:
        timed(t, "cluster", lambda: stack.run([str(ROOT / "bin" / "cluster"), "up"]))
        timed(t, "apply", up)
        t["up"] = round(t["cluster"] + t["apply"], 1)
        timed(t, "preview", diff)
        timed(t, "update", update)
        timed(t, "destroy", delete)
        timed(t, "down", lambda: stack.run([str(ROOT / "bin" / "cluster"), "down"]))
    finally:
        stack.run([str(ROOT / "bin" / "cluster"), "down"], check=False)
        stack.force_cleanup()
    return t


# --- report ------------------------------------------------------------------------------------

ROWS = [
    ("up", "cluster start + first deploy, until everything is ready", "`make up`", "`bin/cluster up` + apply + wait"),
    ("preview", "no-op preview", "`pulumi preview --expect-no-changes`", "`kubectl diff --server-side`"),
    ("update", "update: one more TFJob worker", "`pulumi up --yes`", "`kubectl apply --server-side` (TFJob)"),
    ("destroy", "destroy every object", "`pulumi destroy --yes`", "`kubectl delete --wait`"),
    ("down", "stop the cluster, remove its state", "`make down` (stack already empty)", "`bin/cluster down`"),
]


UP_PARTS = {"tools": "tools check", "cluster": "cluster start", "stack": "stack select", "deploy": "deploy and wait", "operator": "operator start"}


def table(pulumi: dict[str, float], kubectl: dict[str, float]) -> str:
    lines = [
        "| step | Pulumi (s) | kubectl (s) | Pulumi command | kubectl command |",
        "|---|---:|---:|---|---|",
    ]
    for key, what, pulumi_cmd, kubectl_cmd in ROWS:
        lines.append(f"| {what} | {pulumi[key]} | {kubectl[key]} | {pulumi_cmd} | {kubectl_cmd} |")
        if key != "up":
            continue
        for step, part in UP_PARTS.items():
            pulumi_part = pulumi.get(f"up.{step}", "")
            kubectl_part = {"cluster": kubectl["cluster"], "deploy": kubectl["apply"]}.get(step, "")
            if pulumi_part != "" or kubectl_part != "":
                lines.append(f"| &nbsp;&nbsp;of which {part} | {pulumi_part} | {kubectl_part} | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".local" / "bench-deploy")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        print(f"tools not built ({', '.join(missing)}): run `tools/build.sh pulumi kube`", file=sys.stderr)
        return 1

    base = Path(tempfile.mkdtemp(prefix="mlplatform-bench-"))
    try:
        print("pulumi:", flush=True)
        pulumi = bench_pulumi(base / "pulumi")
        print("kubectl:", flush=True)
        kubectl = bench_kubectl(base / "kubectl")
    finally:
        shutil.rmtree(base, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": int(cpus), "platform": platform.platform()},
        "seconds": {"pulumi": pulumi, "kubectl": kubectl},
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = table(pulumi, kubectl)
    (args.out / "results.md").write_text(markdown + "\n")
    print()
    print(markdown)
    print(f"\n(written to {args.out}/results.json and results.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
