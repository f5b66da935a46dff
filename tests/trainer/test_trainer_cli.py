"""What a user sees when the trainer is started wrongly: bad flags, bad TF_CONFIG, no data set."""

import json

import pytest

from trainer_fixtures import unreachable_url  # noqa: F401 (pytest fixtures)
from trainer_helpers import run_trainer, trainer_args
from trainer.flags import build_parser

BAD_FLAGS = [
    (["--train-steps", "0"], "argument --train-steps: 0 must be >= 1"),
    (["--train-steps", "ten"], "argument --train-steps: 'ten' is not an integer"),
    (["--batch-size", "-8"], "argument --batch-size: -8 must be >= 1"),
    (["--learning-rate", "0"], "argument --learning-rate: 0 must be a finite number > 0"),
    (["--learning-rate", "nan"], "argument --learning-rate: nan must be a finite number > 0"),
    (["--eval-every", "1.5"], "argument --eval-every: '1.5' is not an integer"),
    (["--model-dir", ""], "argument --model-dir: must not be empty"),
    (["--data-dir", " "], "argument --data-dir: must not be empty"),
    (["--log-dir"], "argument --log-dir: expected one argument"),
    (["--model", "resnet"], "argument --model: invalid choice: 'resnet' (choose from 'cnn', 'dense')"),
    (["--steps-per-invocation", "0"], "argument --steps-per-invocation: 0 must be >= 1"),
    (["--steps", "10"], "unrecognized arguments: --steps 10"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS, ids=[" ".join(argv) for argv, _ in BAD_FLAGS])
def test_bad_flag_fails_at_once_naming_the_flag(argv, message):
    result = run_trainer(argv, timeout=60)
    assert result.returncode == 2, f"{argv}: exit {result.returncode}\n{result.stderr}"
    assert f"python -m trainer: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "tensorflow" not in result.stderr.lower(), "flags must be checked before TensorFlow is imported"


def test_invalid_tf_config_names_the_variable():
    result = run_trainer([], env={"TF_CONFIG": "{not json"}, timeout=60)
    assert result.returncode == 2
    assert "python -m trainer: error: TF_CONFIG is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


def test_default_data_url_is_the_keras_mnist_file():
    # The real download path stays the default; only mirrors override it.
    assert build_parser().parse_args([]).data_url == \
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def test_missing_data_offline_says_where_it_looked_and_what_to_put_there(tmp_path, unreachable_url):
    data_dir = tmp_path / "empty-data"
    args = trainer_args(data_dir, tmp_path / "model") + ["--data-url", unreachable_url]
    result = run_trainer(args, timeout=120)
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("python -m trainer: error: MNIST not found:"), error
    assert f"{data_dir / 'mnist.npz'} does not exist" in error
    assert f"downloading {unreachable_url} failed" in error
    assert "Put the Keras mnist.npz (arrays x_train, y_train, x_test, y_test) at" in error
    assert "Traceback" not in result.stderr
    assert not any(data_dir.iterdir()), "a failed download must leave nothing behind"
    assert not (tmp_path / "model").exists(), "nothing is trained without data"


def test_missing_data_fails_before_any_training_on_a_distributed_chief(tmp_path, unreachable_url):
    # The tutorial's topology: the master needs data (the PS tasks do not, they never load it).
    tf_config = {"cluster": {"master": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:3"]},
                 "task": {"type": "master", "index": 0}}
    args = trainer_args(tmp_path / "empty-data", tmp_path / "model") + ["--data-url", unreachable_url]
    result = run_trainer(args, env={"TF_CONFIG": json.dumps(tf_config)}, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "python -m trainer: error: MNIST not found:" in result.stderr
    assert "Task chief:0: ParameterServerStrategy" in result.stdout, "master must run as chief"
