"""Entry point: parse flags, resolve the cluster from TF_CONFIG, pick the strategy, then serve or train."""

import argparse
import dataclasses
import os

from trainer import flags, tf_config
from trainer.data import DataError, ensure_mnist, load_mnist
from trainer.termination import Termination, exit_now

# Kubeflow's ExitCode restart policy retries exit code 138 (128 + SIGUSR1), which it reserves for
# "user-defined retryable error"; 1 and 2 are permanent failures there.
EXIT_RESTART_JOB = 138


def log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    # First of all: as PID 1 of a container, a SIGTERM that comes before this is dropped by the kernel.
    termination = Termination(log)
    termination.install()
    parser = flags.build_parser()
    args = flags.parse_args(parser, argv)
    try:
        tf_config.use_chief_for_master(os.environ)
    except tf_config.ClusterConfigError as e:
        _fail(parser, str(e))

    # TensorFlow (about 5 s) only after the cheap checks, so mistakes in flags or TF_CONFIG fail fast.
    from trainer import distribute

    resolver = distribute.make_resolver()
    try:
        role = tf_config.resolve_role(resolver)
    except tf_config.ClusterConfigError as e:
        _fail(parser, str(e))
    log(f"Task {role.name}: {role.kind.value}")

    if role.serves:
        distribute.serve_until_complete(role, resolver, args.model_dir, args.train_steps, log)
        return 0

    # Every training task checks, so that MultiWorkerMirroredStrategy workers don't wait for a chief
    # that has nothing left to do.
    if distribute.completed_step(args.model_dir) >= args.train_steps:
        log(f"Training already finished: {args.model_dir} records {args.train_steps} steps or more")
        return 0
    try:
        mnist = load_mnist(ensure_mnist(args.data_dir, args.data_url))
    except DataError as e:
        _fail(parser, str(e), status=1)
    log(f"MNIST: {len(mnist.x_train)} training and {len(mnist.x_test)} held-out images from {args.data_dir}")

    strategy = distribute.make_strategy(role, resolver)
    if args.batch_size % strategy.num_replicas_in_sync:
        _fail(parser, f"argument --batch-size: {args.batch_size} must be divisible by the "
                      f"{strategy.num_replicas_in_sync} replicas of this job")

    from trainer import train

    config = train.TrainConfig(
        model_dir=args.model_dir,
        log_dir=args.log_dir,
        train_steps=args.train_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        eval_every=args.eval_every,
        model=args.model,
        steps_per_invocation=args.steps_per_invocation,
    )
    try:
        result = train.train(strategy, role, config, mnist, log, termination)
    except train.CheckpointMismatchError as e:
        _fail(parser, str(e))
    except train.PeerLostError as e:
        log(f"{role.name}: {e}. Exiting with {EXIT_RESTART_JOB} so the job restarts and resumes "
            "from the last checkpoint.")
        exit_now(EXIT_RESTART_JOB)
    if result is not None:
        # Written once train() has returned and released its remote functions, and last of all:
        # parameter-server tasks exit as soon as they see it.
        with termination.writing("the completion marker"):
            distribute.write_completion_marker(args.model_dir, dataclasses.asdict(result))
    return 0


def _fail(parser: argparse.ArgumentParser, message: str, status: int = 2) -> None:
    parser.exit(status, f"{parser.prog}: error: {message}\n")

