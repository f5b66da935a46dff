"""MNIST in the Keras ``mnist.npz`` layout: find it, fetch it, check it, and turn it into tf.data pipelines.

Locating and checking the file needs no TensorFlow, so a missing data set is reported before the 5 s
TensorFlow import; the pipeline builders import TensorFlow when they are called.
"""

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np

from trainer.flags import DEFAULT_DATA_URL

MNIST_FILE = "mnist.npz"
# The checksum Keras pins for its copy; mirrors (--data-url) may serve a subset, so they are only checked
# for layout.
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
DOWNLOAD_TIMEOUT_S = 60


class DataError(Exception):
    """The data set is missing or malformed; the message says where the trainer looked and what to do."""


@dataclass(frozen=True)
class Mnist:
    x_train: np.ndarray  # uint8, (n, 28, 28)
    y_train: np.ndarray  # uint8, (n,)
    x_test: np.ndarray
    y_test: np.ndarray


def ensure_mnist(data_dir: str, url: str = DEFAULT_DATA_URL) -> str:
    """Return the path of ``mnist.npz`` in ``data_dir``, downloading it from ``url`` first if it is absent."""
    path = os.path.join(data_dir, MNIST_FILE)
    if os.path.exists(path):
        return path
    try:
        _download(url, path)
    except (OSError, ValueError, DataError) as e:  # urllib.error.URLError is an OSError
        raise DataError(
            f"MNIST not found: {path} does not exist and downloading {url} failed ({_reason(e)}). "
            f"Put the Keras mnist.npz (arrays x_train, y_train, x_test, y_test) at {path}, "
            f"or pass --data-url with a mirror this machine can reach."
        ) from None
    return path


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return str(error)


def _download(url: str, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # Several tasks of one job may download into the same shared directory at once: each writes its own
    # temporary file and renames it into place, so readers never see a partial file.
    fd, partial = tempfile.mkstemp(prefix=MNIST_FILE + ".", suffix=".part", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            shutil.copyfileobj(response, out)
        if url == DEFAULT_DATA_URL:
            digest = _sha256(partial)
            if digest != KERAS_MNIST_SHA256:
                raise DataError(f"checksum mismatch: got sha256 {digest}, expected {KERAS_MNIST_SHA256}")
        load_mnist(partial)  # refuse to install a file in the wrong layout
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_mnist(path: str) -> Mnist:
    """Load and check ``mnist.npz``: uint8 images (n, 28, 28) and labels 0-9 for both splits."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in ("x_train", "y_train", "x_test", "y_test") if key in f}
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not a readable .npz file: {e}") from None
    missing = {"x_train", "y_train", "x_test", "y_test"} - set(arrays)
    if missing:
        raise DataError(f"{path} is not in the Keras MNIST layout: missing {sorted(missing)}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y) or len(x) == 0:
            raise DataError(f"{path}: x_{split} {x.shape} and y_{split} {y.shape} must be (n, 28, 28) and (n,)")
        if y.min() < 0 or y.max() > 9:
            raise DataError(f"{path}: y_{split} labels must be 0-9")
    return Mnist(**{key: value.astype(np.uint8) for key, value in arrays.items()})


def train_dataset_fn(x: np.ndarray, y: np.ndarray, global_batch_size: int):
    """A ``dataset_fn(input_context)`` for ``distribute_datasets_from_function``: shuffled, endless batches.

    Images stay uint8 inside the function (a parameter-server worker receives it with the arrays embedded,
    and float32 copies tripled worker memory); the model rescales them.
    """
    import tensorflow as tf

    def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
        dataset = tf.data.Dataset.from_tensor_slices((x, y))
        dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        dataset = dataset.shuffle(len(x), reshuffle_each_iteration=True).repeat()
        dataset = dataset.batch(batch_size, drop_remainder=True)
        dataset = dataset.map(lambda images, labels: (tf.cast(images, tf.float32), tf.cast(labels, tf.int32)))
        return dataset.prefetch(tf.data.AUTOTUNE)

    return dataset_fn
