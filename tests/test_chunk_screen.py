"""runner/verify/chunk_screen.py: a float32 grid judged against a float32 reference with a bound,
float64 deciding what the bound cannot settle, gives the float64 pass's verdicts: the same
outcome, the same disagreeing elements named, errors that are upper bounds of float64's.

The grid is made small here (monkeypatch): MIN_ELEMENTS and the chunk shrink so that a few
hundred elements take the screened, chunked, threaded path; `float64` turns the screen off."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from runner.config import spec as specs
from runner.verify import chunk_screen, compare, grid_sample, pointwise
from runner.verify.chunk_compare import Against
from runner.verify.finite_differences import Reference

SMALL = 64
N = 7 * SMALL + 5
x = sp.Symbol("x", real=True)


@pytest.fixture
def small(monkeypatch):
    monkeypatch.setattr(pointwise, "CHUNK", SMALL)
    monkeypatch.setattr(pointwise, "PARALLEL_MIN", 2 * SMALL)
    monkeypatch.setattr(chunk_screen, "MIN_ELEMENTS", 4 * SMALL)
    return monkeypatch


def _request():
    cfg = {"function": {"inputs": ["x"], "steps": {"y": "sin(x) * x"}}, "point": {"x": [1.0]}}
    return specs.build({**cfg, "derivatives": [{"target": "y", "sources": "x"}]}).requests[0]


def _judged(f, grid, got):
    """(compare's record, the pointwise values) of TF's `got` for d f/dx over `grid`."""
    d = sp.diff(f, x)
    against = Against("d", got, compare.DTYPE_RTOL[str(got.dtype)])
    _, values = pointwise.evaluate({"d": d}, {}, [], {x: grid}, grid.shape, value=f, against=against)
    ref = Reference(values["d"], "symbolic", stats=values.get(pointwise.STATS))
    return compare.compare(got, ref, _request()), values


def _both(small, f, grid, got):
    screened = _judged(f, grid, got)
    small.setattr(chunk_screen, "MIN_ELEMENTS", 1 << 60)
    whole = _judged(f, grid, got)
    small.setattr(chunk_screen, "MIN_ELEMENTS", 4 * SMALL)
    return screened, whole


def _exact(f, grid):
    fn = sp.lambdify(x, sp.diff(f, x), modules="numpy")
    return np.broadcast_to(fn(grid.astype(np.float64)), grid.shape)


FORMULAS = [
    sp.sin(x) * x,
    sp.exp(-(x**2) / 8) * sp.cos(3 * x),
    sp.log(x**2 + 1) * x,
    sp.tanh(x) / (1 + x**2),
    sp.atan(x) ** 3 - sp.cosh(x / 4),
]


@pytest.mark.parametrize("f", FORMULAS, ids=str)
def test_a_right_gradient_passes_with_upper_bounds_of_float64_s_errors(small, f):
    grid = np.linspace(-10.0, 10.0, N, dtype=np.float32)
    got = _exact(f, grid).astype(np.float32)  # what a right tape gives, to float32's rounding
    (screened, values), (whole, _) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"] == "passed"
    assert screened["mismatched"] == whole["mismatched"] == 0 and screened["elements"] == N
    assert screened["reference_float32"] >= 0.9 * N and "reference_float32" not in whole
    assert whole["max_abs_error"] <= screened["max_abs_error"] <= 100 * whole["max_abs_error"] + 1e-5
    assert whole["max_rel_error"] <= screened["max_rel_error"] * (1 + 1e-12)
    # the reference kept is float64's to float32's precision, and float64's own where evalf samples it
    np.testing.assert_allclose(values["d"], _exact(f, grid), rtol=1e-5, atol=1e-5 * np.abs(got).max())


def test_the_sample_evalf_checks_holds_float64_s_own_values(small):
    """Where more than a sample's worth of elements are not settled by the bound (SAMPLE 0
    here), evalf's sample judges float64 as on the float64 path: at float64's own values."""
    small.setattr(grid_sample, "SAMPLE", 0)
    f = sp.sin(x) * x
    grid = np.linspace(-10.0, 10.0, N, dtype=np.float32)
    got = _exact(f, grid).astype(np.float32)
    (_, screened), (_, whole) = _both(small, f, grid, got)
    found = [pointwise.map_chunks(lambda key, start, _n: grid_sample.extremes(grid[key], start), grid.shape)]
    for (i,) in grid_sample.sample(grid.shape, found):
        assert screened["d"][i] == whole["d"][i]


def test_the_few_elements_no_bound_settles_are_evaluated_exactly(small, monkeypatch):
    """Near a zero of the derivative the bound cannot tell its sign: those elements alone go to
    float64, and evalf checks each of them (no sample is needed: the rest is proven)."""
    from runner.language import symbolic

    f = sp.sin(x) * x
    grid = np.linspace(-10.0, 10.0, N, dtype=np.float32)
    grid[N // 2] = 0.0  # d/dx (x sin x) = 0 there exactly
    d = _exact(f, grid)
    got = d.astype(np.float32)
    seen = []
    real = symbolic.evaluate
    monkeypatch.setattr(symbolic, "evaluate", lambda expr, at: seen.append(at) or real(expr, at))
    rec, values = _judged(f, grid, got)
    points = {p[x] for p in seen}
    assert rec["outcome"] == "passed" and rec["reference_float32"] == N - len(points)
    assert 0.0 in points and len(points) < grid_sample.SAMPLE
    assert values["d"][N // 2] == 0.0


@pytest.mark.parametrize("at", [0, SMALL + 3, N // 2, N - 1])
@pytest.mark.parametrize("by", [3.0, 1e-2])
def test_a_wrong_element_anywhere_is_caught_and_named_as_float64_names_it(small, at, by):
    """A test-only corruption of one element: 3 off, or 1e-2 (about ten times the tolerance
    there) is caught, named, with float64's reference beside it."""
    f = sp.sin(x) * x
    grid = np.linspace(-10.0, 10.0, N, dtype=np.float32)
    got = _exact(f, grid).astype(np.float32)
    got[at] += np.float32(by)
    (screened, _), (whole, _) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"] == "failed"
    assert screened["mismatched"] == whole["mismatched"] == 1
    assert screened["reason"] == whole["reason"] and f" at [{at}]: " in screened["reason"]


def test_an_element_just_inside_the_tolerance_passes_as_in_float64(small):
    f = sp.sin(x) * x
    grid = np.linspace(-10.0, 10.0, N, dtype=np.float32)
    exact = _exact(f, grid)
    got = exact.astype(np.float32)
    atol = 1e-4 * max(1.0, np.abs(exact).max())
    got[N // 3] = np.float32(exact[N // 3] + 0.9 * (atol + 1e-4 * abs(exact[N // 3])))
    (screened, _), (whole, _) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"] == "passed"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_tensorflow_value_is_judged_as_float64_judges_it(small, bad):
    f = sp.sin(x) * x
    grid = np.linspace(-10.0, 10.0, N, dtype=np.float32)
    got = _exact(f, grid).astype(np.float32)
    got[2 * SMALL + 1] = bad
    (screened, _), (whole, _) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"] == "failed"
    assert screened["non_finite"] == whole["non_finite"] and screened["reason"] == whole["reason"]


def test_a_pole_on_the_grid_goes_to_float64_and_evalf(small):
    """d/dx 1/x is not finite at x = 0: that chunk's bound is infinite, float64 and evalf decide."""
    f = 1 / x
    grid = np.linspace(-3.0, 0.0, N, dtype=np.float32)
    with np.errstate(all="ignore"):
        got = _exact(f, grid).astype(np.float32)
    (screened, _), (whole, _) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"]
    assert screened.get("reason") == whole.get("reason")


def test_where_the_target_is_not_finite_float64_says_so(small):
    """log(x) is NaN for x < 0: the target's own value is not finite there in either path."""
    f = sp.log(x) + x
    grid = np.linspace(-1.0, 3.0, N, dtype=np.float32)
    with np.errstate(all="ignore"):
        got = _exact(f, grid).astype(np.float32)
    (_, screened), (_, whole) = _both(small, f, grid, got)
    assert bool(screened[pointwise.FINITE]) is bool(whole[pointwise.FINITE]) is False


def test_float64_inputs_and_float64_tapes_are_not_screened(small):
    f = sp.sin(x) * x
    grid = np.linspace(-10.0, 10.0, N)
    narrow = grid.astype(np.float32)
    for g, got in [(grid, _exact(f, grid).astype(np.float32)), (narrow, _exact(f, narrow))]:
        rec, _ = _judged(f, g, got)
        assert rec["outcome"] == "passed" and "reference_float32" not in rec


def test_a_fractional_power_s_domain_edge_on_the_grid_is_judged_as_float64_judges_it(small):
    """F32(0.7) < 0.7: the first point's (x - 7/10)**(1/2) is NaN in float64, TF's 1000 fails
    there, and the target is not finite (review: the screen passed it)."""
    f = (x - sp.Rational(7, 10)) ** sp.Rational(3, 2) + 1000 * x
    grid = np.linspace(0.7, 1.5, N, dtype=np.float32)
    with np.errstate(all="ignore"):
        got = (1.5 * np.sqrt(np.maximum(grid.astype(np.float64) - 0.7, 0)) + 1000).astype(np.float32)
    (screened, s_values), (whole, w_values) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"] == "failed" and screened["reason"] == whole["reason"]
    assert bool(s_values[pointwise.FINITE]) is bool(w_values[pointwise.FINITE]) is False


def test_an_exponent_float32_cannot_hold_does_not_hide_a_wrong_element(small):
    """d = x**(21/10) at 2e12: one element 0.4% beyond its tolerance fails in both paths."""
    f = x ** sp.Rational(31, 10) * sp.Rational(10, 31)
    grid = np.linspace(2.0e12, 2.2e12, N).astype(np.float32)
    d64 = grid.astype(np.float64) ** 2.1
    got = d64.astype(np.float32)
    got[-1] = np.float32(d64[-1] - 1.004 * (1e-4 * d64[-1] + 1e-4 * d64.max()))
    (screened, _), (whole, _) = _both(small, f, grid, got)
    assert screened["outcome"] == whole["outcome"] == "failed" and screened["mismatched"] == whole["mismatched"] == 1
