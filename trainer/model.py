"""The classifiers and their loss. Both take raw 0-255 pixels (n, 28, 28) and rescale them inside.

* ``cnn`` (the default): the classic MNIST convolutional network, two convolution + max-pooling layers and a
  dense head with dropout, narrowed so a training step on 2 CPU cores stays in the tens of milliseconds.
* ``dense``: one hidden dense layer, the trainer's first model (about 1 ms of compute per step).
"""

import keras
import tensorflow as tf

from trainer.flags import MODELS

NUM_CLASSES = 10
DEFAULT_MODEL = MODELS[0]


def build_model(kind: str = DEFAULT_MODEL) -> keras.Model:
    """Build (and create the variables of) the model; call it inside ``strategy.scope()`` to distribute it.

    Rescaling lives in the model so the exported file accepts the same raw pixels as the data set.
    """
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; one of {', '.join(MODELS)}")
    head = {"cnn": _cnn_layers, "dense": _dense_layers}[kind]()
    return keras.Sequential(
        [keras.Input(shape=(28, 28), name="pixels"), keras.layers.Rescaling(1.0 / 255), *head,
         keras.layers.Dense(NUM_CLASSES, name="logits")],
        name=f"mnist_{kind}",
    )


def _cnn_layers() -> list[keras.layers.Layer]:
    return [
        keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.4),
    ]


def _dense_layers() -> list[keras.layers.Layer]:
    return [keras.layers.Flatten(), keras.layers.Dense(128, activation="relu")]


def per_example_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def accuracy(model: keras.Model, images, labels, batch_size: int = 1000) -> float:
    """Fraction of ``images`` the model labels correctly (evaluated on the calling process)."""
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = _predict(model, tf.constant(images[start:start + batch_size], tf.float32))
        correct += int(tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32),
                                                      tf.constant(labels[start:start + batch_size], tf.int32)),
                                             tf.int32)))
    return correct / len(images)


def _predict(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    return model(images, training=False)
