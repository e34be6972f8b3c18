"""The check of large grids in chunks (runner/verify/pointwise.py, compare.py): the same
record as one whole-array pass, on sizes around a chunk's edge, threads included; a wrong
element in any chunk caught and named; and no float64 re-run where nothing needs it.

The chunk is made small here (monkeypatch) so that a few hundred elements span many chunks
and the threaded path; `unchunked` makes it larger than any array, the whole-array pass.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from runner.config import spec as specs
from runner.verify import check, compare, grid_sample, pointwise
from runner.verify.finite_differences import Reference

SMALL = 64  # elements a chunk holds in these tests


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(pointwise, "CHUNK", SMALL)
    monkeypatch.setattr(pointwise, "PARALLEL_MIN", 2 * SMALL)  # threads from 128 elements on


def config(steps, point, derivatives):
    return {"function": {"inputs": list(point), "steps": steps}, "point": point, "derivatives": derivatives}


def _request():
    return specs.build(config({"y": "sin(x) * x"}, {"x": [1.0]}, [{"target": "y", "sources": "x"}])).requests[0]


def _tf_gradient(x0):
    """d/dx of sin(x) * x by TensorFlow itself, in float32 as a run computes it."""
    import tensorflow as tf

    x = tf.constant(x0, dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.sin(x) * x
    return tape.gradient(y, x).numpy()


def _analytic(x0):
    x = np.asarray(x0, dtype=np.float32).astype(np.float64)
    return x * np.cos(x) + np.sin(x)


def _both(monkeypatch, got, ref_value):
    """compare's record in small chunks and in one whole-array pass."""
    req = _request()
    monkeypatch.setattr(pointwise, "CHUNK", SMALL)
    monkeypatch.setattr(pointwise, "PARALLEL_MIN", 2 * SMALL)
    chunked = compare.compare(got, Reference(ref_value, "symbolic"), req)
    monkeypatch.setattr(pointwise, "CHUNK", 1 << 40)
    whole = compare.compare(got, Reference(ref_value, "symbolic"), req)
    return chunked, whole


def _same(a, b):
    assert {k: v for k, v in a.items() if k != "reference"} == {k: v for k, v in b.items() if k != "reference"}


SIZES = [SMALL - 1, SMALL, SMALL + 1, 2 * SMALL - 1, 2 * SMALL, 2 * SMALL + 1, 5 * SMALL + 7]


@pytest.mark.parametrize("n", SIZES)
def test_chunks_cover_every_element_once_in_order(n):
    for shape in [(n,), (3, n), (n, 3), (2, 3, n)]:
        seen = np.zeros(shape, dtype=int)
        starts = []
        for key, start, count in pointwise.chunks(shape, SMALL):
            seen[key] += 1
            assert np.ravel_multi_index(np.unravel_index(start, shape), shape) == start
            assert seen[key].size == count and np.flatnonzero(np.ravel(seen == 1))[-1] == start + count - 1
            starts.append(start)
        assert (seen == 1).all() and starts == sorted(starts)


@pytest.mark.parametrize("n", SIZES)
def test_a_right_gradient_gives_the_whole_array_record_in_chunks(monkeypatch, n):
    x0 = np.linspace(-10.0, 10.0, n)
    chunked, whole = _both(monkeypatch, _tf_gradient(x0), _analytic(x0))
    _same(chunked, whole)
    assert chunked["outcome"] == "passed" and chunked["elements"] == n and chunked["mismatched"] == 0


@pytest.mark.parametrize("n", SIZES)
def test_a_wrong_element_in_the_last_chunk_is_caught_and_named(monkeypatch, n):
    x0 = np.linspace(-10.0, 10.0, n)
    got = _tf_gradient(x0)
    got[n - 1] += 1.0  # a test-only corruption of the very last element
    chunked, whole = _both(monkeypatch, got, _analytic(x0))
    _same(chunked, whole)
    assert chunked["outcome"] == "failed" and chunked["mismatched"] == 1, chunked
    assert chunked["reason"].startswith(f"mismatched elements: 1 / {n} (")
    assert f" at [{n - 1}]: error " in chunked["reason"]


def test_the_worst_of_equal_errors_is_the_first_as_numpy_names_it(monkeypatch):
    x0 = np.linspace(-1.0, 1.0, 5 * SMALL)
    got = _tf_gradient(x0)
    ref = got.astype(np.float64)
    got[[SMALL + 3, 4 * SMALL + 1]] = ref[[SMALL + 3, 4 * SMALL + 1]] + 2.0  # exactly 2 off, twice
    ref[[SMALL + 3, 4 * SMALL + 1]] = ref[SMALL + 3]
    got[4 * SMALL + 1] = got[SMALL + 3]
    chunked, whole = _both(monkeypatch, got, ref)
    _same(chunked, whole)
    assert chunked["mismatched"] == 2 and f" at [{SMALL + 3}]: " in chunked["reason"], chunked


def test_a_matrix_names_the_row_and_column(monkeypatch):
    x0 = np.linspace(-3.0, 3.0, 3 * 50).reshape(3, 50)
    got = _tf_gradient(x0)
    got[2, 49] *= -3.0
    chunked, whole = _both(monkeypatch, got, _analytic(x0))
    _same(chunked, whole)
    assert chunked["outcome"] == "failed" and " at [2, 49]: " in chunked["reason"], chunked


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["tensorflow", "reference"])
def test_a_non_finite_value_in_one_chunk_takes_the_general_path(monkeypatch, bad, where):
    n = 3 * SMALL + 5
    x0 = np.linspace(-10.0, 10.0, n)
    got, ref = _tf_gradient(x0), _analytic(x0)
    (got if where == "tensorflow" else ref)[2 * SMALL + 1] = bad
    chunked, whole = _both(monkeypatch, got, ref)
    _same(chunked, whole)
    assert chunked["outcome"] == "failed" and chunked["non_finite"][where] == 1, chunked


def test_the_pointwise_values_are_the_same_in_chunks(monkeypatch):
    """Every formula at every point, and its non-finite points handed to evalf, as in one pass."""
    import sympy as sp

    x = sp.Symbol("x", real=True)
    n = 5 * SMALL + 3
    grid = {x: np.linspace(-3.0, 0.0, n)}  # 1/x: not finite at the last point only
    formulas = {"a": sp.sin(x) * x, "b": 1 / x, "c": sp.exp(-(x**2)) * sp.cos(3 * x)}
    monkeypatch.setattr(pointwise, "CHUNK", SMALL)
    monkeypatch.setattr(pointwise, "PARALLEL_MIN", 2 * SMALL)
    _, chunked = pointwise.evaluate(formulas, {}, [], grid, (n,), value=1 / x)
    monkeypatch.setattr(pointwise, "CHUNK", 1 << 40)
    _, whole = pointwise.evaluate(formulas, {}, [], grid, (n,), value=1 / x)
    assert bool(chunked.pop(pointwise.FINITE)) is bool(whole.pop(pointwise.FINITE)) is False
    for k in formulas:
        np.testing.assert_array_equal(chunked[k], whole[k])
    xs = grid[x]
    np.testing.assert_allclose(chunked["a"], np.sin(xs) * xs, rtol=1e-15)
    assert np.isnan(chunked["b"][-1]) or np.isinf(chunked["b"][-1])  # evalf's verdict at 0


def pointwise_sample(shape, values):
    """The sample of a grid whose extremes no formula pass found: each chunk's, on threads."""
    found = pointwise.map_chunks(functools.partial(grid_sample.chunk_extremes, values), shape)
    return grid_sample.sample(shape, [found])


def test_the_sample_takes_each_extreme_s_first_place_as_numpy_does(small_chunks):
    values = np.tile([3.0, -2.0, 0.0, 5.0, -2.0, 5.0], 60)  # each extreme in many chunks
    values[200] = np.nan  # read as 0
    picks = set(pointwise_sample(values.shape, values))
    finite = np.where(np.isfinite(values), values, 0.0)
    for i in (np.argmin(finite), np.argmax(finite), np.argmin(np.abs(finite)), np.argmax(np.abs(finite))):
        assert (int(i),) in picks


@pytest.mark.parametrize(
    "chunk",
    [
        [0.5, 2.0, 0.5, 7.0, 7.0],  # one sign: the smallest magnitude is the minimum
        [-0.5, -2.0, -0.5, -7.0, -7.0],  # the other: the maximum
        [3.0, -3.0, 1.0, -0.25, 0.25, 3.0],  # both signs, and |min| == |max|: the first of them
        [-3.0, 3.0, 0.0, -0.0, 2.0],  # a zero, and the tie the other way round
        [-0.0, 0.0, -0.0],  # zeros only
        [4.0],
        [1.0, np.nan, -5.0],  # not finite: NaN read as 0
        [np.inf, 2.0, -1.0],
        [-np.inf, -2.0],
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_chunk_s_extremes_are_the_first_places_numpy_gives(chunk, dtype):
    """The argmin/argmax shortcut gives what the whole-array definition gives: each extreme's
    value and first place, with NaN and infinities read as 0."""
    c = np.array(chunk, dtype=dtype)
    finite = np.where(np.isfinite(c), c, 0.0)
    mag = np.abs(finite)
    want = [
        (float(a[i]), 100 + int(i))
        for a, i in (
            (finite, np.argmin(finite)),
            (finite, np.argmax(finite)),
            (mag, np.argmin(mag)),
            (mag, np.argmax(mag)),
        )
    ]
    assert grid_sample.extremes(c, 100) == want


def test_a_kink_site_in_a_late_chunk_is_found(small_chunks):
    import sympy as sp

    x = sp.Symbol("x", real=True)
    grid = {x: np.linspace(-3.0, 0.0, 5 * SMALL + 3)}  # x is exactly 0 at the last point only
    kink, values = pointwise.evaluate({"d": sp.sign(x)}, {}, [("abs in step y", x)], grid, grid[x].shape)
    assert kink == "abs in step y switches at this point" and values == {}


def _checked(steps, x0):
    from runner.tape import program

    spec = specs.build(config(steps, {"x": x0}, [{"target": "y", "sources": "x"}]))
    outcome = program.run(spec)
    fwd = check.Forward(spec, outcome.values)
    rec = check.check(spec, spec.requests[0], outcome.derivatives[0].value, fwd, check.tracked_names(spec))
    return rec, fwd


def test_a_symbolic_check_of_a_defined_function_makes_no_float64_rerun(small_chunks):
    rec, fwd = _checked({"y": "sin(x) * x"}, {"linspace": [-10.0, 10.0, 3 * SMALL + 1]})
    assert rec["method"] == "symbolic" and rec["outcome"] == "passed", rec
    assert fwd.base.ready is False  # the inputs, the formula and the run's own value sufficed


@pytest.mark.parametrize(
    "steps, x0, word", [({"y": "log(x)"}, [2.0, -1.0], "NaN"), ({"y": "1 / x"}, [1.0, 0.0], "infinite")]
)
def test_an_undefined_point_still_runs_float64_and_fails(steps, x0, word):
    rec, fwd = _checked(steps, x0)
    assert fwd.base.ready is True
    assert rec["outcome"] == "failed", rec
    assert f"the function is undefined here: y is {word} at this point (in float64)" in rec["reason"]


def test_a_float64_pass_that_fails_on_need_says_so_each_time():
    spec = specs.build(config({"y": "x @ transpose(x)"}, {"x": [[1.0, 2.0]]}, [{"target": "y", "sources": "x"}]))
    recs = check.check_all(spec, {"x": np.array([1.0, 2.0])}, [(spec.requests[0], np.zeros((1, 1)))] * 2)
    for rec in recs:
        assert rec["outcome"] == "unverified"
        assert rec["reason"].startswith("the float64 forward pass failed: InvalidArgumentError: ")


def test_the_base_gives_inputs_read_only_without_a_run():
    spec = specs.build(config({"y": "sin(x) * x"}, {"x": [1.0, 2.0]}, [{"target": "y", "sources": "x"}]))
    fwd = check.Forward(spec, {"x": np.array([1.0, 2.0], dtype=np.float32)})
    x = fwd.base["x"]
    assert x.dtype == np.float64 and not x.flags.writeable and fwd.base.ready is False
    np.testing.assert_array_equal(fwd.base["y"], np.sin([1.0, 2.0]) * np.array([1.0, 2.0]))
    assert fwd.base.ready is True
