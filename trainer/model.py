"""The classifier and its loss: a small dense network that takes raw 0-255 pixels (28x28)."""

import keras
import tensorflow as tf

NUM_CLASSES = 10


def build_model(hidden_units: int = 128) -> keras.Model:
    """Build (and create the variables of) the model; call it inside ``strategy.scope()`` to distribute it.

    Rescaling lives in the model so the exported file accepts the same raw pixels as the data set.
    """
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28), name="pixels"),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden_units, activation="relu"),
            keras.layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name="mnist",
    )
    return model


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
