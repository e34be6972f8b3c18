"""Large dense derivatives checked by projection (issue 14, item 3): u^T J v from TensorFlow's
value against a directional difference of the float64 re-run, along seeded random directions.

Every source here has more than MAX_FD_ELEMENTS (4096) elements, which element-wise finite
differences leave alone. The values are TensorFlow's own (`program.run`); a wrong value is
TensorFlow's real one with one element changed.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest

from runner.config import spec as specs
from runner.config.kinds import MAX_FD_ELEMENTS, PROJECTION_DIRECTIONS
from runner.errors import ConfigError
from tests.helpers import function_config

W = {"random": {"shape": [80, 80], "seed": 0}}  # 6,400 elements
V = {"random": {"shape": [80, 1], "seed": 1}}
SUM = "reduce_sum(tanh(matmul(W, v) / 10))"
# id -> (steps, point, request)
CASES: Dict[str, Any] = {
    "gradient": ({"y": SUM}, {"W": W, "v": V}, {}),
    "gradient_weighted": (
        {"y": "tanh(matmul(W, v) / 10)"},
        {"W": W, "v": V},
        {"output_gradients": {"random": {"shape": [80, 1], "seed": 4}}},
    ),
    "gradient_order_2": ({"y": SUM}, {"W": W, "v": V}, {"order": 2}),
    "jacobian": ({"y": "tanh(matmul(W, v) / 10)"}, {"W": W, "v": V}, {"kind": "jacobian"}),
    # 4,200 positions in a batch row: more than differences by position take (runner/verify/batched_differences.py)
    "batch_jacobian": (
        {"y": "tanh(matmul(X, M) / 10)"},
        {"X": {"random": {"shape": [2, 4200], "seed": 2}}, "M": {"random": {"shape": [4200, 3], "seed": 3}}},
        {"kind": "batch_jacobian", "sources": "X"},
    ),
    "hessian": (
        {"y": "reduce_sum(tanh(matmul(W, v) / 10))"},
        {"W": {"random": {"shape": [41, 100], "seed": 0}}, "v": {"random": {"shape": [100, 1], "seed": 1}}},
        {"kind": "hessian"},
    ),
    "hvp": ({"y": SUM}, {"W": W, "v": V}, {"kind": "hvp", "tangents": {"random": {"shape": [80, 80], "seed": 5}}}),
}


def _job(case: str, seed: int = 0):
    steps, point, extra = CASES[case]
    request = {
        "target": "y",
        "sources": extra.get("sources", "W"),
        **{k: v for k, v in extra.items() if k != "sources"},
    }
    return specs.build(function_config(steps, point, [request], seed=seed))


def _tf(spec):
    from runner.tape import program

    outcome = program.run(spec)
    assert outcome.error is None, outcome.error
    return outcome


def _check(spec, outcome, value=None):
    from runner.verify import check as verify

    fwd = verify.Forward(spec, outcome.values)
    got = outcome.derivatives[0].value if value is None else value
    return verify.check(spec, spec.requests[0], got, fwd, verify.tracked_names(spec))


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_large_derivative_of_each_kind_passes_by_projection_and_says_so(case):
    spec = _job(case)
    outcome = _tf(spec)
    rec = _check(spec, outcome)
    assert (rec["outcome"], rec["passed"]) == ("passed", True), rec.get("reason")
    assert rec["method"] == "projection"
    proj = rec["projection"]
    assert proj["directions"] == PROJECTION_DIRECTIONS and proj["seed"] == [0, 0, 0]
    assert len(proj["values"]) == PROJECTION_DIRECTIONS
    assert "4 random directions of +-1" in rec["coverage"] and "not every element" in rec["coverage"]
    assert proj["kind"] == "rademacher"
    assert f"elements, more than element-wise finite differences take ({MAX_FD_ELEMENTS})" in rec["note"]
    # the two sides agree far inside the bound: the projections are real numbers, not zeros
    # (relative to the largest: one projection may be small by chance, a sum of +-J_ij)
    tf_p, ref_p = np.array(proj["values"]).T
    assert np.max(np.abs(tf_p)) > 1e-3, proj
    np.testing.assert_allclose(tf_p, ref_p, rtol=1e-3, atol=1e-3 * np.max(np.abs(tf_p)))
    assert np.all(np.abs(tf_p - ref_p) < 0.1 * np.array(rec["tolerance"]["allowed"]))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["gradient", "jacobian", "batch_jacobian", "hessian", "hvp"])
def test_one_wrong_element_fails_and_the_reason_names_the_direction(case):
    spec = _job(case)
    outcome = _tf(spec)
    good = np.array(outcome.derivatives[0].value)
    passed = _check(spec, outcome, good)
    assert passed["outcome"] == "passed", passed.get("reason")
    # one element, the middle one, off by 50 times the largest error the passing check allowed
    delta = 50 * max(passed["tolerance"]["allowed"])
    bad = good.copy()
    bad.reshape(-1)[bad.size // 2] += delta
    rec = _check(spec, outcome, bad)
    assert (rec["outcome"], rec["passed"]) == ("failed", False), rec
    assert rec["reason"].startswith("along direction "), rec["reason"]
    assert "of 4 (seed [0, 0, 0]): TF's projection u^T J v is" in rec["reason"]
    assert "the directional difference" in rec["reason"] and "> allowed" in rec["reason"]


@pytest.mark.slow
def test_the_gradient_by_a_large_W_of_a_hessian_by_several_sources_is_projected_block_by_block():
    steps, point, _ = CASES["gradient"]
    request = {"target": "y", "sources": ["W", "v"], "kind": "hessian"}
    spec = specs.build(function_config(steps, point, [request]))
    rec = _check(spec, _tf(spec))
    assert rec["outcome"] == "passed", rec.get("reason")
    assert rec["method"] == "finite_difference+projection"
    # every block touching W by projection, with its own directions; (v, v) element by element
    assert set(rec["projection"]) == {"(W, W)", "(W, v)", "(v, W)"}
    assert rec["projection"]["(W, v)"]["seed"] == [0, 0, 0, 1]
    assert "(W, W): a projection" in rec["coverage"]


def test_the_same_seed_draws_the_same_directions_another_seed_others():
    spec = _job("gradient")
    outcome = _tf(spec)
    first, again = _check(spec, outcome), _check(spec, outcome)
    assert first["projection"] == again["projection"]
    other = _job("gradient", seed=7)
    moved = _check(other, _tf(other))
    assert moved["projection"]["seed"] == [7, 0, 0]
    assert moved["projection"]["values"] != first["projection"]["values"]
    # the recorded seed and kind draw them again: direction 0's TF side, by hand from the seed
    from runner.verify.projection import _signs

    assert first["projection"]["kind"] == "rademacher"

    v = _signs(np.random.default_rng(first["projection"]["seed"]), PROJECTION_DIRECTIONS, (80, 80))
    g = np.asarray(outcome.derivatives[0].value, dtype=np.float64)
    assert set(np.unique(v)) == {-1, 1}  # every element +-1: each element's weight in u^T J v is 1
    assert first["projection"]["values"][0][0] == pytest.approx(float(np.sum(g * v[0])), rel=1e-12)


CODE_X = {"random": {"shape": [5000], "seed": 0}}


def _code_job(run_job, fn: str):
    cfg = function_config({}, {"x": CODE_X}, [{"target": "y", "sources": "x"}])
    cfg["function"] = {"callable": fn, "inputs": {"x": {"dtype": "float32"}}, "steps": {}}
    return run_job(cfg)


@pytest.mark.slow
def test_users_code_on_a_large_source_is_checked_by_projection(run_job, monkeypatch):
    monkeypatch.setenv("RUNNER_TRUST", "runner.examples")
    ran = _code_job(run_job, "runner.examples.custom_gradients.log1pexp")
    rec = ran.log["derivatives"][0]["check"]
    assert (rec["outcome"], rec["method"]) == ("passed", "projection"), rec.get("reason")
    # the code's differences are taken twice to measure their error: the bound says so
    assert len(rec["tolerance"]["allowed"]) == PROJECTION_DIRECTIONS
    # a custom gradient that forgets a factor 2: wrong in every element, caught
    ran = _code_job(run_job, "runner.examples.custom_gradients.wrong_square")
    rec = ran.log["derivatives"][0]["check"]
    assert (rec["outcome"], rec["method"]) == ("failed", "projection"), rec
    assert rec["reason"].startswith("along direction ")


def test_the_memory_bound_still_holds_and_a_projection_costs_no_element_limit():
    steps, point, _ = CASES["gradient"]
    big = {"W": {"random": {"shape": [1024, 1024], "seed": 0}}, "v": {"random": {"shape": [1024, 1], "seed": 1}}}
    request = [{"target": "y", "sources": "W"}]
    specs.build(function_config(steps, big, request))  # 2^20 elements: within the default bounds
    with pytest.raises(ConfigError) as err:
        specs.build(function_config(steps, big, request, limits={"memory": "4MiB"}))
    assert err.value.key == "limits.memory" or "memory" in str(err.value)


def test_a_projection_with_the_wrong_shape_of_value_does_not_crash():
    spec = _job("gradient")
    outcome = _tf(spec)
    rec = _check(spec, outcome, np.zeros((3,)))
    assert (rec["outcome"], rec["reason"]) == ("failed", "shape [3] differs from the derivative's [80, 80]")
