"""The trainer's command-line flags.

Nothing here imports TensorFlow, so a bad flag fails in a fraction of a second with argparse's usual
``python -m trainer: error: argument --FLAG: ...`` message and exit status 2.
"""

import argparse
import math
import os

# The models trainer.model builds, listed here because that module imports TensorFlow; the first is the default.
MODELS = ("cnn", "dense")
# The file Keras' own mnist.load_data() downloads; kept as the default so a pod with internet access
# needs nothing else.
DEFAULT_DATA_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# The 5000-digit sample (trainer/sample_data.py) that the trainer image built here carries
# (images/trainer/image.toml), for clusters without internet.
SAMPLE_DATA_URL = "file:///app/sample/mnist.npz"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


def _path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        # No prefixes: "--steps 10" must not silently mean --steps-per-invocation.
        allow_abbrev=False,
        description="Train an MNIST classifier on one process or on the cluster that TF_CONFIG describes "
        "(chief/master + workers: MultiWorkerMirroredStrategy; with ps: ParameterServerStrategy).",
    )
    parser.add_argument("--data-dir", type=_path, default="/tmp/mnist/data",
                        help="directory holding mnist.npz in the Keras layout (default: %(default)s)")
    parser.add_argument("--data-url", type=_path, default=DEFAULT_DATA_URL,
                        help="where to fetch mnist.npz when --data-dir lacks it; point it at a mirror "
                        "(http(s):// or file://) on closed networks (default: %(default)s)")
    parser.add_argument("--model-dir", type=_path, default="/tmp/mnist/model",
                        help="checkpoints, the exported model and the completion marker; must be shared "
                        "by all tasks of a distributed job (default: %(default)s)")
    parser.add_argument("--log-dir", type=_path, default=None,
                        help="TensorBoard summaries (default: MODEL_DIR/logs)")
    parser.add_argument("--train-steps", type=_positive_int, default=1000,
                        help="total optimizer steps, counted across restarts (default: %(default)s)")
    parser.add_argument("--batch-size", type=_positive_int, default=100,
                        help="global batch size, split across replicas (default: %(default)s)")
    parser.add_argument("--learning-rate", type=_positive_float, default=0.001,
                        help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--eval-every", type=_positive_int, default=100,
                        help="steps between held-out evaluations and checkpoints (default: %(default)s)")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0],
                        help="cnn: two convolution layers and a dense head; dense: one hidden dense layer "
                        "(default: %(default)s)")
    parser.add_argument("--steps-per-invocation", type=_positive_int, default=10,
                        help="training steps inside each call of the compiled step function (each "
                        "function a parameter-server worker is sent); fewer host and coordinator round "
                        "trips (default: %(default)s)")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.log_dir is None:
        args.log_dir = os.path.join(args.model_dir, "logs")
    return args
