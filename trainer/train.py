"""Custom training loops (Keras 3 ``model.fit`` does not run under these strategies in TF 2.21).

* default strategy and MultiWorkerMirroredStrategy: ``strategy.run`` inside a ``tf.function``; every worker
  runs the same loop, gradients are all-reduced, and every worker takes part in checkpoint saves (the chief
  into ``MODEL_DIR/checkpoints``, the others into temporary directories they delete right away).
* ParameterServerStrategy: the chief is the coordinator; it schedules functions onto the workers with
  ``ClusterCoordinator`` and alone saves checkpoints. The coordinator re-runs the functions of a worker that
  dies on the others and picks the worker up again when it comes back.

In both, one call of the compiled function takes up to ``--steps-per-invocation`` steps in a ``tf.range``
loop (the number of steps is an argument, so the last call before an evaluation takes the remainder and the
same graph serves every call), and returns the summed loss of its steps: the host and the coordinator see
one round trip per call instead of per step, and read the loss only at evaluations.

Only the chief evaluates on the held-out set, prints ``Accuracy at step N: A``, and writes TensorBoard
summaries, checkpoints and the exported model.
"""

import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from trainer import model as model_lib
from trainer.tf_config import Role, StrategyKind
from trainer.data import Mnist, train_dataset_fn
from trainer.termination import Termination

CHECKPOINT_SUBDIR = "checkpoints"
EXPORTED_MODEL = "mnist.keras"
CHECKPOINTS_KEPT = 3
MODEL_KIND_KEY = "model_kind/.ATTRIBUTES/VARIABLE_VALUE"

# A MultiWorkerMirroredStrategy peer that dies leaves the others' collectives failing with one of these.
PEER_LOST_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.CancelledError,
    tf.errors.AbortedError,
)


class PeerLostError(RuntimeError):
    """A peer of this MultiWorkerMirroredStrategy job went away; the job must restart and resume."""


@dataclass(frozen=True)
class TrainConfig:
    model_dir: str
    log_dir: str
    train_steps: int
    batch_size: int  # global
    learning_rate: float
    eval_every: int
    model: str  # one of model.MODELS
    steps_per_invocation: int


@dataclass(frozen=True)
class Result:
    step: int
    accuracy: float
    resumed_from_step: int
    train_seconds: float  # this run's training loop, excluding start-up and evaluation
    examples_per_second: float
    global_batch_size: int
    strategy: str
    model: str
    steps_per_invocation: int


def train(strategy: tf.distribute.Strategy, role: Role, config: TrainConfig, mnist: Mnist, log,
          termination: Termination) -> Result | None:
    """Train to ``config.train_steps``; returns the chief's result (None on other workers).

    What a later run reads (checkpoints, summaries, the exported model) is written inside
    ``termination.writing``, so that SIGTERM does not cut it short."""
    with strategy.scope():
        model = model_lib.build_model(config.model)
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
        optimizer.build(model.trainable_variables)
        # Our own step count: under ParameterServerStrategy, workers racing on optimizer.iterations lose
        # increments. The loop sets it from the steps that completed, the same way on every worker.
        global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    # Which model the weights are for, so a restart with another --model fails before restoring anything.
    model_kind = tf.Variable(config.model, dtype=tf.string, trainable=False, name="model_kind")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step, model_kind=model_kind)
    checkpoint_dir = os.path.join(config.model_dir, CHECKPOINT_SUBDIR)
    start_step = _restore(checkpoint, global_step, checkpoint_dir, config.model, log)
    chief = _ChiefOutputs(config, mnist, model, checkpoint, log, termination) if role.is_chief else None

    if role.kind is StrategyKind.PARAMETER_SERVER:
        loop = _ParameterServerLoop(strategy, model, optimizer, config, mnist)
    else:
        if role.kind is StrategyKind.MULTI_WORKER_MIRRORED:
            _check_replicas_agree_on(strategy, start_step, checkpoint_dir)
        loop = _MirroredLoop(strategy, model, optimizer, config, mnist, role, checkpoint, termination)

    step, train_seconds, accuracy = start_step, 0.0, None
    while step < config.train_steps:
        steps = min(config.eval_every - step % config.eval_every, config.train_steps - step)
        began = time.perf_counter()
        try:
            mean_loss = loop.run(steps)
        except PEER_LOST_ERRORS as e:
            raise PeerLostError(f"lost a peer after step {step} ({type(e).__name__}; "
                                "TensorFlow's log above says which)") from e
        train_seconds += time.perf_counter() - began
        step += steps
        global_step.assign(step)
        if chief:
            accuracy = chief.evaluate_and_save(step, mean_loss)
        else:
            loop.save_discarded_copy(step)
    if not chief:
        return None
    if accuracy is None:  # nothing left to train: report the restored model
        accuracy = chief.evaluate_and_save(step, None)
    trained = step - start_step
    result = Result(
        step=step,
        accuracy=accuracy,
        resumed_from_step=start_step,
        train_seconds=round(train_seconds, 3),
        examples_per_second=round(trained * config.batch_size / train_seconds, 1) if train_seconds else 0.0,
        global_batch_size=config.batch_size,
        strategy=role.kind.value,
        model=config.model,
        steps_per_invocation=config.steps_per_invocation,
    )
    chief.finish(result)
    return result


class CheckpointMismatchError(RuntimeError):
    """The model dir holds checkpoints of another model than the one asked for."""


def _restore(checkpoint: tf.train.Checkpoint, global_step: tf.Variable, checkpoint_dir: str, model: str,
             log) -> int:
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if not latest:
        return 0
    written_for = _model_of_checkpoint(latest)
    if written_for != model:
        raise CheckpointMismatchError(
            f"{latest} holds a {written_for} model, not the --model {model} asked for; pass --model "
            f"{written_for} to resume it, or a new --model-dir")
    checkpoint.restore(latest).assert_existing_objects_matched()
    step = int(global_step.numpy())
    log(f"Restored checkpoint at step {step} from {latest}")
    return step


def _model_of_checkpoint(path: str) -> str:
    """The ``--model`` a checkpoint was written with (checkpoints from before the flag existed: dense)."""
    reader = tf.train.load_checkpoint(path)
    if not reader.has_tensor(MODEL_KIND_KEY):
        return "dense"
    return reader.get_tensor(MODEL_KIND_KEY).decode()


def _check_replicas_agree_on(strategy: tf.distribute.Strategy, step: int, checkpoint_dir: str) -> None:
    """Every MultiWorkerMirroredStrategy worker restores from the chief's checkpoints; if a worker cannot
    see them (a model dir that is not shared), its weights would silently diverge. Compare the steps."""

    @tf.function
    def gather_steps():
        def replica_fn():
            return tf.distribute.get_replica_context().all_gather(tf.constant([step], tf.int64), axis=0)
        return strategy.experimental_local_results(strategy.run(replica_fn))[0]

    steps = sorted(set(gather_steps().numpy().tolist()))
    if len(steps) > 1:
        raise RuntimeError(f"workers restored different steps {steps} from {checkpoint_dir}: "
                           "--model-dir must be a directory all workers share")


def _make_train_steps(strategy, model, optimizer, global_batch_size: int):
    """``train_steps(iterator, steps)``: ``steps`` optimizer steps on the next batches of ``iterator``;
    returns the sum of their global mean losses."""

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.nn.compute_average_loss(model_lib.per_example_loss(labels, logits),
                                              global_batch_size=global_batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        # Keras 3's optimizer all-reduces (sums) the gradients across replicas before applying them.
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_steps(iterator, steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            per_replica_loss = strategy.run(replica_step, args=next(iterator))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
        return total

    return train_steps


def _invocations(steps: int, steps_per_invocation: int) -> list[tf.Tensor]:
    """The step counts of the calls that take exactly ``steps`` steps (the last one takes the remainder)."""
    full, rest = divmod(steps, steps_per_invocation)
    counts = [steps_per_invocation] * full + ([rest] if rest else [])
    return [tf.constant(count, tf.int32) for count in counts]


class _MirroredLoop:
    """Default strategy and MultiWorkerMirroredStrategy: all workers step in lock-step."""

    def __init__(self, strategy, model, optimizer, config: TrainConfig, mnist: Mnist, role: Role, checkpoint,
                 termination: Termination):
        self._strategy = strategy
        self._role = role
        self._checkpoint = checkpoint
        self._termination = termination
        dataset = strategy.distribute_datasets_from_function(
            train_dataset_fn(mnist.x_train, mnist.y_train, config.batch_size))
        self._iterator = iter(dataset)
        self._train_steps = _make_train_steps(strategy, model, optimizer, config.batch_size)
        self._steps_per_invocation = config.steps_per_invocation

    def run(self, steps: int) -> float:
        losses = [self._train_steps(self._iterator, count)
                  for count in _invocations(steps, self._steps_per_invocation)]
        return float(tf.add_n(losses)) / steps

    def save_discarded_copy(self, step: int) -> None:
        """Non-chief workers take part in every save (it may involve collectives) but keep nothing.
        Guarded all the same: a worker leaving mid-save would fail the chief's save of the same step."""
        scratch = tempfile.mkdtemp(prefix=f"ckpt-{self._role.task_type}-{self._role.task_id}-")
        try:
            with self._termination.writing(f"its part of the checkpoint at step {step}"):
                tf.train.CheckpointManager(self._checkpoint, scratch, max_to_keep=1).save(checkpoint_number=step)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class _ParameterServerLoop:
    """The chief schedules steps onto whichever worker is free; variables live on the PS tasks."""

    def __init__(self, strategy, model, optimizer, config: TrainConfig, mnist: Mnist):
        self._coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
        dataset_fn = train_dataset_fn(mnist.x_train, mnist.y_train, config.batch_size)

        @tf.function
        def per_worker_dataset_fn():
            # Runs on each worker, again on one that comes back after a failure: say so in its log.
            tf.print("Input pipeline ready on this worker; taking training steps from the chief")
            return strategy.distribute_datasets_from_function(dataset_fn)

        self._iterator = iter(self._coordinator.create_per_worker_dataset(per_worker_dataset_fn))
        self._train_steps = _make_train_steps(strategy, model, optimizer, config.batch_size)
        self._steps_per_invocation = config.steps_per_invocation

    def run(self, steps: int) -> float:
        losses = [self._coordinator.schedule(self._train_steps, args=(self._iterator, count))
                  for count in _invocations(steps, self._steps_per_invocation)]
        self._coordinator.join()
        return float(np.sum([loss.fetch() for loss in losses])) / steps


class _ChiefOutputs:
    """Everything only the chief writes: summaries, progress lines, checkpoints, the model, the marker."""

    def __init__(self, config: TrainConfig, mnist: Mnist, model, checkpoint, log, termination: Termination):
        self._termination = termination
        self._config = config
        self._mnist = mnist
        self._model = model
        self._log = log
        self._manager = tf.train.CheckpointManager(
            checkpoint, os.path.join(config.model_dir, CHECKPOINT_SUBDIR), max_to_keep=CHECKPOINTS_KEPT)
        self._writer = tf.summary.create_file_writer(config.log_dir)

    def evaluate_and_save(self, step: int, mean_loss: float | None) -> float:
        accuracy = model_lib.accuracy(self._model, self._mnist.x_test, self._mnist.y_test)
        self._log(f"Accuracy at step {step}: {accuracy:.4f}")
        with self._termination.writing(f"the summaries and checkpoint at step {step}"):
            with self._writer.as_default(step=step):
                tf.summary.scalar("accuracy", accuracy)
                if mean_loss is not None:
                    tf.summary.scalar("loss", mean_loss)
            self._writer.flush()
            if self._manager.latest_checkpoint is None or not self._manager.latest_checkpoint.endswith(f"-{step}"):
                self._manager.save(checkpoint_number=step)
                self._log(f"Saved checkpoint at step {step}")
        return accuracy

    def finish(self, result: Result) -> None:
        path = os.path.join(self._config.model_dir, EXPORTED_MODEL)
        with self._termination.writing("the exported model"):
            export_model(self._model, path, self._config.model)
            self._writer.close()
        self._log(f"Exported model to {path}")
        self._log(f"Training finished at step {result.step}: accuracy {result.accuracy:.4f}, "
                  f"{result.examples_per_second} examples/s")


def export_model(model: keras.Model, path: str, kind: str) -> None:
    """Save a plain copy of the weights, free of any distribution strategy, as a .keras file."""
    plain = model_lib.build_model(kind)
    plain.set_weights(model.get_weights())
    plain.save(path)
