"""`Forward`'s runs (runner/verify/forward_pass.py): a run copies out of TensorFlow only the
values asked for, the inputs' float64 tensors are made once, moves are built in place
(`Forward.moved`) and given to TensorFlow without a copy where it can read them.

Expected numbers are analytic formulas in NumPy float64, or TensorFlow's own ops computed
here; the meaning of a run is unchanged: held names (`tape.stop_recording`) and
`stop_gradient` arguments keep their values at the point, the user's variables are assigned
and put back, moves of a narrow dtype are rounded as `Move.snap` rounds them.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from runner import job
from runner.config import spec as specs
from runner.tape import program
from runner.verify.forward_pass import SHARED, Forward, Move, _as_tensor, empty
from tests.helpers import function_config

X = np.linspace(-2.0, 3.0, 7)
# id -> (steps, tape options, the target at a moved x (xm) with x0 the point, in NumPy)
CASES = {
    "plain": ({"y": "sin(x) * x"}, {}, lambda xm, x0: np.sin(xm) * xm),
    "stop_gradient": ({"y": "sin(x) * stop_gradient(x * x)"}, {}, lambda xm, x0: np.sin(xm) * x0 * x0),
    "held_step": ({"s": "x * 3", "y": "s * x"}, {"stop_recording": ["s"]}, lambda xm, x0: 3 * x0 * xm),
}


def _forward(steps, tape=None, x=X, dtype="float64"):
    cfg = function_config(steps, {"x": x.tolist()}, [{"target": "y", "sources": "x"}], inputs={"x": {"dtype": dtype}})
    if tape:
        cfg["tape"] = {**cfg["tape"], **tape}
    spec = specs.build(cfg)
    outcome = program.run(spec)
    assert outcome.error is None, outcome.error
    return Forward(spec, outcome.values)


@pytest.mark.parametrize("case", list(CASES))
def test_a_run_gives_the_target_alone_with_the_same_numbers_as_every_value(case):
    steps, tape, formula = CASES[case]
    fwd = _forward(steps, tape)
    xm = X + 0.125
    alone = fwd.run({"x": xm}, ("y",))
    assert set(alone) == {"y"}  # nothing else copied out of TensorFlow
    every = fwd.values({"x": xm})
    assert set(every) >= {"x", "y"}
    np.testing.assert_array_equal(alone["y"], every["y"])
    np.testing.assert_array_equal(fwd.target("y", {"x": xm}), every["y"])
    np.testing.assert_allclose(alone["y"], formula(xm, X), rtol=1e-15)
    np.testing.assert_allclose(fwd.base["y"], formula(X, X), rtol=1e-15)


def test_the_inputs_tensors_are_made_once_and_the_base_is_read_only():
    fwd = _forward(CASES["plain"][0])
    assert fwd.tensor("x") is fwd.tensor("x")
    assert fwd.tensor("x").dtype == tf.float64
    fwd.target("y", {"x": X + 1.0})
    assert fwd.tensor("x") is fwd._tensors["x"]  # a run with x moved leaves its tensor alone
    np.testing.assert_array_equal(fwd.tensor("x").numpy(), X)
    base = fwd.base["x"]
    assert not base.flags.writeable


@pytest.mark.parametrize("dtype, rounded", [("float64", False), ("float32", True)])
def test_moved_is_x_plus_h_d_rounded_as_move_snap_in_a_reused_buffer(dtype, rounded):
    n = SHARED + 5  # large enough to be given to TensorFlow without a copy
    x = np.linspace(-3.0, 3.0, n)
    fwd = _forward(CASES["plain"][0], x=x, dtype=dtype)
    d = np.where(np.arange(n) % 2, 1, -1).astype(np.int8)
    if rounded:  # a narrow precision, as the user's code in float32 gets it
        fwd.precision = Move("float32", np.float32)
    move = fwd.move("x")
    assert (move.dtype is not None) == rounded
    x0 = fwd.base["x"]
    first = fwd.moved("x", [(1e-3, d)])
    np.testing.assert_array_equal(first, move.snap(x0 + 1e-3 * d))
    y = fwd.target("y", {"x": first})
    np.testing.assert_allclose(y, np.sin(first) * first, rtol=1e-15)
    second = fwd.moved("x", [(-1e-3, d), (2e-3, d)])
    assert second is first  # the same buffer, overwritten
    np.testing.assert_array_equal(second, move.snap(x0 + (-1e-3) * d + 2e-3 * d))
    # the run's value was copied out of TensorFlow: the next move leaves it alone
    np.testing.assert_allclose(y, np.sin(move.snap(x0 + 1e-3 * d)) * move.snap(x0 + 1e-3 * d), rtol=1e-15)


def test_only_an_aligned_array_is_shared_with_tensorflow_others_are_copied():
    aligned = empty((SHARED,))
    aligned[:] = np.arange(SHARED)
    shared = _as_tensor(tf, aligned)
    aligned[0] = -7.0
    assert shared.numpy()[0] == -7.0  # no copy
    # 8 bytes past an alignment: TensorFlow's kernels would abort on it, so it is copied
    raw = empty((SHARED + 1,))
    raw[:] = np.arange(SHARED + 1)
    unaligned = raw[1:]
    assert unaligned.ctypes.data % 64 != 0
    copied = _as_tensor(tf, unaligned)
    unaligned[0] = -7.0
    assert copied.numpy()[0] == 1.0
    np.testing.assert_array_equal(tf.reduce_sum(tf.reshape(copied, [1, -1]) * 2.0).numpy(), 2.0 * np.sum(raw[1:]) + 16)
    small = np.arange(10.0)
    assert _as_tensor(tf, small).numpy()[0] == 0.0 and _as_tensor(tf, shared) is shared


def test_a_users_variable_moved_is_assigned_for_the_run_and_put_back(monkeypatch):
    monkeypatch.setenv("RUNNER_TRUST", "runner.examples")
    cfg = function_config({"loss": "reduce_sum(y)"}, {"x": [[1.0, 2.0, 3.0]]}, [])
    cfg["function"] = {
        "callable": {"_target_": "runner.examples.layers.make_dense", "units": 2, "seed": 3},
        "inputs": ["x"],
        "steps": {"loss": "reduce_sum(y)"},
    }
    cfg["derivatives"] = [{"target": "loss", "sources": "trainable_variables"}]
    spec, code, failure = job._user_code(specs.build(cfg))
    assert failure is None
    outcome = program.run(spec, code)
    fwd = Forward(spec, outcome.values, code)
    kernel = fwd.base["dense/kernel"]
    bias = fwd.base["dense/bias"]
    x = np.array([[1.0, 2.0, 3.0]])
    moved = kernel + 0.5
    got = fwd.target("loss", {"dense/kernel": moved})
    # the layer computes in its variables' dtype (float32): the moved kernel as it rounds
    k32 = fwd.move("dense/kernel").snap(moved)
    np.testing.assert_allclose(got, np.sum(x @ k32 + bias), rtol=1e-6)
    np.testing.assert_array_equal(code.variables["dense/kernel"].numpy(), kernel.astype(np.float32))  # put back
    np.testing.assert_allclose(fwd.target("loss", {}), np.sum(x @ kernel + bias), rtol=1e-6)
