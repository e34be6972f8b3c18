"""Python control flow on tensors: under `tape.compile: function` autograph makes it graph
control flow (`if` becomes `tf.cond`, `while` a `tf.while_loop`).

`conf/experiment/control_flow.yaml` calls `huber`; a sweep over `point.x` takes both branches.
`cube_by_loop` shows a TensorFlow limit: its second derivative fails under `tape.compile: xla`
(docs/your-code.md, "Known TensorFlow limits").
"""

import tensorflow as tf


def huber(x, delta=1.0):
    """The Huber loss of a scalar: quadratic within `delta` of 0, linear beyond."""
    if tf.abs(x) <= delta:
        return 0.5 * x * x
    return delta * (tf.abs(x) - 0.5 * delta)


def cube_by_loop(x):
    """x**3 as a loop that multiplies while a tensor counter is below 3."""
    y = tf.ones_like(x)
    i = tf.constant(0)
    while i < 3:
        y = y * x
        i += 1
    return y
