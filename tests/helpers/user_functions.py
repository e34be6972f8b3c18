"""A user's own code for the tests of `function.callable` (trusted: RUNNER_TRUST=tests.helpers.user_functions).

Each function is what a user would write in their own package: plain TensorFlow, a
`tf.custom_gradient`, a Keras model factory, and code that fails in each way the run log
must report.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf


def sin_x2(x):
    """sin(x) * x**2, elementwise."""
    return tf.sin(x) * x**2


def scaled(x, w):
    """w * sin(x) * x**2: two inputs, passed positionally (they are its leading parameters)."""
    return w * tf.sin(x) * x**2


def rowwise(x):
    """tanh(x @ w) with a fixed w: each row of the output depends only on the same row of x."""
    w = tf.constant([[0.5, -1.0], [0.25, 0.5], [-0.75, 1.0]], dtype=x.dtype)
    return tf.tanh(x @ w)


def two_outputs(x):
    """A mapping of two outputs (function.output: [s, c])."""
    return {"s": tf.sin(x), "c": tf.cos(x) * x}


@tf.custom_gradient
def product(u, v):
    """u * v**2 with its hand-written (right) backward pass; two positional arguments."""

    def grad(upstream):
        return upstream * v**2, upstream * 2.0 * u * v

    return u * v**2, grad


def make_model(units: int = 2, seed: int = 0):
    """A Keras Sequential model of one Dense layer (tanh), Glorot-uniform from `seed`."""
    import keras

    return keras.Sequential(
        [
            keras.layers.Dense(
                units, activation="tanh", kernel_initializer=keras.initializers.GlorotUniform(seed=seed), name="dense"
            )
        ],
        name="model",
    )


# ---- float32 only: a float32 constant inside, so float64 inputs are refused by TF ----------

_SCALE = 1.5


@tf.custom_gradient
def cube32(x):
    """1.5 * x**3 in float32 only, with the right backward pass."""
    scale = tf.constant(_SCALE, tf.float32)

    def grad(upstream):
        return upstream * 3.0 * scale * x**2

    return scale * x**3, grad


@tf.custom_gradient
def wrong_cube32(x):
    """1.5 * x**3 in float32 only, with a backward pass that forgets the 3."""
    scale = tf.constant(_SCALE, tf.float32)

    def grad(upstream):
        return upstream * scale * x**2

    return scale * x**3, grad


# ---- code that fails ------------------------------------------------------------------------


def raises(x):
    raise ValueError("the input is not what this code expects")


def returns_list(x):
    return [x, x]


def returns_str(x):
    return "y"


def returns_none(x):
    return None


def returns_int(x):
    return tf.cast(x, tf.int32)


def returns_mapping(x):
    return {"y": x * 2.0, "z": x * 3.0}


class FailsAfter:
    """Calls after the first `calls` raise a RuntimeError (one object per job, by `_target_`)."""

    def __init__(self, calls: int):
        self.calls = calls
        self.count = 0

    def __call__(self, x):
        self.count += 1
        if self.count > self.calls:
            raise RuntimeError(f"call {self.count} fails (only {self.calls} allowed)")
        return tf.sin(x) * x**2


def fails_after(calls: int) -> Any:
    """A factory for `_target_`: the callable that fails after `calls` calls."""
    return FailsAfter(calls)


def mapping_of(keys: Dict[str, float]):
    """A factory: code returning a mapping with the given keys (x times each value)."""

    def code(x):
        return {k: x * v for k, v in keys.items()}

    return code
