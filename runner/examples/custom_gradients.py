"""Custom gradients: TensorFlow guide's numerically stable log1pexp, and one that is wrong.

`conf/experiment/log1pexp.yaml` and `conf/experiment/wrong_gradient.yaml` call them.
"""

import tensorflow as tf


@tf.custom_gradient
def log1pexp(x):
    """log(1 + e^x), whose backward pass stays finite at x = 100 (plain autodiff gives NaN)."""
    e = tf.exp(x)

    def grad(upstream):
        return upstream * (1 - 1 / (1 + e))

    return tf.math.log(1 + e), grad


@tf.custom_gradient
def wrong_square(x):
    """x**2, with a hand-written backward pass that forgets the 2: the check catches it."""

    def grad(upstream):
        return upstream * x

    return x * x, grad
