"""Static shape inference agrees with TensorFlow: same shape when TF accepts, refusal when it refuses.

Each row is run twice: through `runner.language.shapes.infer` (no TensorFlow), and through the real
lowering (`runner.tape.program.run`). A row TensorFlow accepts must infer its exact shape;
a row TensorFlow refuses must be refused statically, with the message given. So the static
check never refuses a config TensorFlow would run.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from runner.config import spec as specs
from runner.errors import ConfigError
from runner.language import expression as ex
from runner.language import shapes
from tests.helpers import function_config

POINTS = {
    "s": [],
    "v3": [3],
    "v4": [4],
    "m23": [2, 3],
    "m32": [3, 2],
    "m33": [3, 3],
    "c31": [3, 1],
    "r14": [1, 4],
    "b423": [4, 2, 3],
    "e0": [0],
}

AGREE = [
    # expression, the shape TensorFlow gives
    ("s * v3", (3,)),
    ("v3 + 1", (3,)),
    ("c31 * r14", (3, 4)),
    ("c31 - v4", (3, 4)),
    ("m23 ** 2 / m23", (2, 3)),
    ("e0 * 1", (0,)),
    ("m23 @ m32", (2, 2)),
    ("matmul(m32, m23)", (3, 3)),
    ("b423 @ m32", (4, 2, 2)),
    ("reduce_sum(m23)", ()),
    ("reduce_sum(m23, 0)", (3,)),
    ("reduce_mean(m23, -1)", (2,)),
    ("reduce_max(b423, 1)", (4, 3)),
    ("transpose(b423)", (3, 2, 4)),
    ("transpose(s)", ()),
    ("where(c31 > 0, r14, s)", (3, 4)),
    ("pow(v3, s)", (3,)),
    ("maximum(c31, v4)", (3, 4)),
    ("sin(m23) * exp(-m23)", (2, 3)),
    ("stop_gradient(v3) * pi", (3,)),
    ("reduce_sum(c31 * r14, 1) + v3", (3,)),
]

REFUSE = [
    # expression, what the static refusal says
    ("v3 * v4", "shapes [3] and [4] do not broadcast in '*'"),
    ("m23 + m32", "shapes [2, 3] and [3, 2] do not broadcast in '+'"),
    ("v3 < v4", "shapes [3] and [4] do not broadcast in '<'"),
    ("m23 @ m23", "inner sizes 3 and 2 differ"),
    ("v3 @ v3", "both operands need rank 2 or more"),
    ("matmul(m23, v3)", "both operands need rank 2 or more"),
    ("b423 @ transpose(b423)", "inner sizes 3 and 2 differ"),
    ("reduce_sum(v3, 1)", "axis 1 is out of range for shape [3] (rank 1)"),
    ("reduce_sum(s, 0)", "axis 0 is out of range for shape [] (rank 0)"),
    ("reduce_sum(m23, -3)", "axis -3 is out of range"),
    ("where(v3 > 0, v4, s)", "shapes [3] and [4] and [] do not broadcast in 'where'"),
    ("maximum(v3, v4)", "do not broadcast in 'maximum'"),
    ("sin(v3) + reduce_sum(m23, 0) * v4", "shapes [3] and [4] do not broadcast in '*'"),
]


def _arrays():
    return {k: np.ones(shape, dtype=np.float32) for k, shape in POINTS.items()}


@functools.lru_cache(maxsize=1)
def _base():
    return function_config({}, {k: np.ones(s).tolist() if s else 1.0 for k, s in POINTS.items()}, [])


def _job(text):
    """The composed config of a job with one step `y: text` (composed once, then copied)."""
    cfg = copy.deepcopy(_base())
    cfg["function"]["steps"] = {"y": text}
    return cfg


@pytest.mark.parametrize("text, shape", AGREE, ids=[a[0] for a in AGREE])
def test_inferred_shape_is_tensorflows(text, shape):
    known = {k: tuple(v) for k, v in POINTS.items()}
    assert shapes.infer(ex.parse(text), known, text) == shape
    from runner.tape import program

    spec = specs.build(_job(text))
    assert spec.steps[0].name == "y"
    outcome = program.run(spec)  # no derivative requests: the forward pass on the tape
    assert outcome.error is None, outcome.error
    assert outcome.values["y"].shape == shape


@pytest.mark.parametrize("text, message", REFUSE, ids=[r[0] for r in REFUSE])
def test_refused_statically_and_by_tensorflow(text, message):
    known = {k: tuple(v) for k, v in POINTS.items()}
    with pytest.raises(shapes.ShapeError) as info:
        shapes.infer(ex.parse(text), known, text)
    assert message in str(info.value)
    # and build() refuses it naming the step, with a caret under the operation
    with pytest.raises(ConfigError) as refused:
        specs.build(_job(text))
    assert refused.value.key == "function.steps.y"
    assert refused.value.detail.splitlines()[0] == text
    # TensorFlow refuses it too: the static check is not stricter than TensorFlow
    import tensorflow as tf

    from runner.language.lowering import lower

    env = {k: tf.constant(v) for k, v in _arrays().items()}
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
        lower(ex.parse(text), tf.float32)(env)


def test_broadcast_follows_numpys_rules():
    import itertools

    dims = [(), (1,), (3,), (2, 1), (2, 3), (1, 3), (4, 1, 3), (0,), (2, 0)]
    for a, b in itertools.product(dims, repeat=2):
        try:
            want = np.broadcast_shapes(a, b)
        except ValueError:
            want = None
        assert shapes.broadcast([a, b]) == want, (a, b)


def test_memory_estimate_counts_every_value_twice():
    # x: 1000 float64, y and z the same: 3 values of 1000, held twice (derivatives: test_work_bounds.py)
    assert shapes.estimate_bytes({"x": (1000,), "y": (1000,), "z": (10, 100)}, 8) == 2 * 3 * 1000 * 8
