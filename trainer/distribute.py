"""TensorFlow's side of the cluster: resolver, strategy, and the serving loop of parameter-server tasks.

Shutting down a parameter-server job: ``tf.distribute.Server.join()`` never returns, so PS-mode workers and
PS tasks would keep a finished job alive. Instead, the chief writes a completion marker into the shared
``--model-dir`` as the very last thing it does, and every serving task polls for it and exits 0 once the
marker records at least ``--train-steps`` steps. A task that starts after the chief finished (a restarted
pod, say) sees the marker before it even starts its server. On Kubernetes the TFJob's
``runPolicy.cleanPodPolicy: Running`` also deletes still-running pods once the chief succeeds, which covers
model directories that are not shared.
"""

import json
import os
import time

import tensorflow as tf

from trainer.tf_config import Role, StrategyKind

COMPLETION_MARKER = "COMPLETE.json"
SERVER_POLL_SECONDS = 1.0


def make_resolver() -> tf.distribute.cluster_resolver.TFConfigClusterResolver:
    return tf.distribute.cluster_resolver.TFConfigClusterResolver()


def make_strategy(role: Role, resolver) -> tf.distribute.Strategy:
    if role.kind is StrategyKind.PARAMETER_SERVER:
        _fail_fast_on_lost_workers()
        return tf.distribute.ParameterServerStrategy(resolver)
    if role.kind is StrategyKind.MULTI_WORKER_MIRRORED:
        options = tf.distribute.experimental.CommunicationOptions(implementation=collective_implementation())
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    return tf.distribute.get_strategy()


def collective_implementation() -> tf.distribute.experimental.CommunicationImplementation:
    """TensorFlow's ring all-reduce over gRPC on CPUs; on GPUs, AUTO (which picks NCCL)."""
    implementations = tf.distribute.experimental.CommunicationImplementation
    return implementations.AUTO if tf.config.list_physical_devices("GPU") else implementations.RING


def _fail_fast_on_lost_workers() -> None:
    # TensorFlow's parameter-server guide: without this, RPCs to a dead worker wait for it instead of failing,
    # and the coordinator cannot move that worker's work elsewhere. It must be set before any channel exists.
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")


def write_completion_marker(model_dir: str, record: dict) -> None:
    """Record that training finished (atomically: serving tasks poll this file)."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, COMPLETION_MARKER)
    partial = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(partial, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    tf.io.gfile.rename(partial, path, overwrite=True)


def read_completion_marker(model_dir: str) -> dict | None:
    path = os.path.join(model_dir, COMPLETION_MARKER)
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.loads(f.read())
    except (tf.errors.NotFoundError, json.JSONDecodeError):
        return None


def completed_step(model_dir: str) -> int:
    """The step a finished run of this model dir reached, or 0 when none has finished."""
    record = read_completion_marker(model_dir)
    return int(record.get("step", 0)) if record else 0


def serve_until_complete(role: Role, resolver, model_dir: str, train_steps: int, log) -> None:
    """Run this task's gRPC server until the chief's completion marker reports ``train_steps`` steps."""
    done = completed_step(model_dir)
    if done >= train_steps:
        log(f"{role.name}: the chief already finished ({done} steps, marker in {model_dir}); not serving")
        return
    server = tf.distribute.Server(
        resolver.cluster_spec(),
        job_name=role.task_type,
        task_index=role.task_id,
        protocol=resolver.rpc_layer or "grpc",
        start=True,
    )
    log(f"{role.name}: serving at {server.target}; exits when {model_dir}/{COMPLETION_MARKER} "
        f"reports {train_steps} steps")
    while (done := completed_step(model_dir)) < train_steps:
        time.sleep(SERVER_POLL_SECONDS)
    log(f"{role.name}: the chief finished at step {done}; shutting down")
