"""Finite differences of a whole grid in a few runs (runner/verify/batched_differences.py):
a target elementwise in its source has every source element moved at once; a batch Jacobian
moves one position of every batch row at once. Every element is checked, kinks are still told
from harmless switching points, and a wrong value still fails, naming its element.

TensorFlow is real throughout: jobs run in-process (`runner.job.run`), or the program runs and
its real derivative is checked (`check.check`) by a `Forward` that counts its runs.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import numpy as np
import pytest

from runner.config import spec as specs
from runner.verify import check
from runner.verify.forward_pass import Forward
from runner.verify.tape_graph import not_elementwise, tracked_names
from tests.helpers import composed, function_config, run_steps

# ---- the structural test: which targets are elementwise in a source (no TensorFlow) -------

POINT = {"x": [[1.0, 2.0]], "w": [1.0, 3.0]}
# id, steps, why not (None: elementwise)
STRUCTURE = [
    ("elementwise", {"y": "sin(x) * x"}, None),
    ("broadcast_and_where", {"u": "x * w", "y": "where(u > 1, relu(u), -u) + maximum(x, 0.5)"}, None),
    ("reduction_of_another_input", {"u": "reduce_sum(w)", "y": "x * u"}, None),
    ("reduction_held_by_stop_gradient", {"y": "x * stop_gradient(reduce_sum(x))"}, None),
    ("reduction", {"y": "reduce_sum(x) * x"}, "step y applies reduce_sum to values computed from x"),
    ("reduction_on_the_way", {"u": "reduce_mean(x * x)", "y": "sin(u)"}, "step u applies reduce_mean"),
    ("matmul", {"y": "x @ transpose(x)"}, "step y applies matmul (@)"),
    ("transpose", {"y": "transpose(x) * 2"}, "step y applies transpose"),
]


@pytest.mark.parametrize("steps, why", [s[1:] for s in STRUCTURE], ids=[s[0] for s in STRUCTURE])
def test_the_structural_test_says_which_targets_are_elementwise(steps, why):
    spec = specs.build(function_config(steps, dict(POINT), [{"target": "y", "sources": "x"}]))
    found = not_elementwise(spec, "y", "x")
    assert found is None if why is None else (found or "").startswith(why), found


def test_the_user_s_code_on_the_way_is_never_elementwise(monkeypatch):
    monkeypatch.setenv("RUNNER_TRUST", "tests.helpers.user_functions")
    cfg = composed(["~experiment"])
    cfg["function"] = {"callable": "tests.helpers.user_functions.sin_x2", "inputs": ["x"], "steps": {"z": "y * 2"}}
    cfg.update(point={"x": [1.0, 2.0]}, derivatives=[{"target": "z", "sources": "x"}])
    assert not_elementwise(specs.build(cfg), "z", "x") == "the target is computed by the user's code"


# ---- whole jobs: kinks, harmless switching points, smooth grids, broadcasting ---------------


GRID = {"linspace": [-1.0, 1.0, 100_001]}  # holds 0 at [50000] and 0.5 at [75000], exactly
SMALL = {"linspace": [-1.0, 1.0, 10_001]}  # 0 at [5000], 0.5 at [7500]
KINK_AT_0 = "non-differentiable point at x[50000]: left slope -1, right slope 1"
# id, steps, point, verify, outcome, reason (a part of it), elements
JOBS = [
    ("abs_real_kink", {"y": "abs(x)"}, {"x": GRID}, "auto", "failed", KINK_AT_0, 100_001),
    ("abs_by_differences", {"y": "abs(x)"}, {"x": GRID}, "finite_difference", "failed", KINK_AT_0, 100_001),
    ("relu_times_x_harmless", {"y": "relu(x) * x"}, {"x": GRID}, "auto", "passed", "", 100_001),
    (
        "maximum_real_kink",
        {"y": "maximum(x, 0.5)"},
        {"x": SMALL},
        "auto",
        "failed",
        "non-differentiable point at x[7500]: left slope 0, right slope 1",
        10_001,
    ),
    ("float32_grid", {"y": "sin(x) * exp(x)"}, {"x": SMALL}, "finite_difference", "passed", "", 10_001),
]


@pytest.mark.parametrize(
    "steps, point, verify, outcome, reason, elements", [j[1:] for j in JOBS], ids=[j[0] for j in JOBS]
)
def test_a_grid_is_checked_in_every_element(tmp_path, steps, point, verify, outcome, reason, elements):
    dtype = "float32" if "exp" in steps["y"] else "float64"
    code, log = run_steps(tmp_path, steps, point, [{"target": "y", "sources": "x"}], verify, dtype)
    rec = log["derivatives"][0]["check"]
    assert code == 0
    assert (rec["method"], rec["outcome"], rec["elements"]) == ("finite_difference", outcome, elements), rec
    assert reason in rec.get("reason", ""), rec


def test_broadcasting_sources_are_checked_in_every_element(tmp_path):
    """x [N] against c [M, 1] gives y [M, N]; a scalar a feeds every element of y."""
    n, m = 20_000, 3
    point = {"x": {"linspace": [-3.0, 3.0, n]}, "c": [[1.0], [2.0], [-0.5]], "a": 1.5}
    steps = {"y": "sin(x * a) * c"}
    derivatives = [
        {"target": "y", "sources": ["x", "a", "c"], "name": "grad"},
        {"target": "y", "sources": "x", "name": "weighted", "output_gradients": {"random": {"shape": [m, n]}}},
        {"target": "y", "sources": "x", "kind": "hvp", "tangents": {"linspace": [0.0, 1.0, n]}, "name": "hvp"},
    ]
    code, log = run_steps(tmp_path, steps, point, derivatives, "finite_difference")
    recs = {d["name"]: d["check"] for d in log["derivatives"]}
    assert code == 0
    for name, elements in {"grad": n + 1 + m, "weighted": n, "hvp": n}.items():
        assert (recs[name]["outcome"], recs[name]["elements"]) == ("passed", elements), (name, recs[name])


# ---- the real derivative checked by a Forward that counts its runs --------------------------


class CountingForward(Forward):
    """The float64 pass, counting the runs the check makes (`target` calls)."""

    runs = 0

    def target(self, target: str, overrides: Mapping[str, np.ndarray]) -> np.ndarray:
        self.runs += 1
        return super().target(target, overrides)


def _checked(steps, point, request, corrupt=None, dtype="float64") -> Tuple[Dict[str, Any], int, Any]:
    """The check of TensorFlow's own derivative (with `corrupt(value)` applied), the runs it took."""
    from runner.tape import program

    inputs = {k: {"dtype": dtype} for k in point}
    spec = specs.build(function_config(steps, point, [request], inputs=inputs, verify="finite_difference"))
    outcome = program.run(spec)
    got = np.array(outcome.derivatives[0].value)
    if corrupt is not None:
        corrupt(got)
    fwd = CountingForward(spec, outcome.values)
    with np.errstate(all="ignore"):
        rec = check.check(spec, spec.requests[0], got, fwd, tracked_names(spec))
    return rec, fwd.runs, outcome.values


def test_a_million_points_by_differences_take_a_few_runs():
    n = 1_000_000
    rec, runs, values = _checked(
        {"y": "sin(x) * x"}, {"x": {"linspace": [-10.0, 10.0, n]}}, {"target": "y", "sources": "x"}
    )
    assert (rec["method"], rec["outcome"], rec["elements"], rec["mismatched"]) == ("finite_difference", "passed", n, 0)
    assert runs <= 4  # up and down, and a second look at suspect kinks
    x = np.asarray(values["x"], dtype=np.float64)
    np.testing.assert_allclose(rec["reference"], np.sin(x) + x * np.cos(x), rtol=1e-6, atol=1e-6)


def test_a_corrupted_element_fails_naming_it():
    def corrupt(got):
        got[12_345] += 1e-3

    rec, runs, _ = _checked(
        {"y": "sin(x) * x"}, {"x": {"linspace": [-10.0, 10.0, 100_000]}}, {"target": "y", "sources": "x"}, corrupt
    )
    assert (rec["outcome"], rec["mismatched"], rec["elements"]) == ("failed", 1, 100_000), rec
    assert rec["reason"].startswith("mismatched elements: 1 / 100000 (0.001%); TF gives "), rec["reason"]
    assert " at [12345]: error " in rec["reason"]


# id, steps, point, request, the shape of the value, the most runs
KINDS = [
    ("order_3", {"y": "sin(x) * x"}, {"x": {"linspace": [-2.0, 2.0, 5000]}}, {"order": 3}, (5000,), 8),
    ("hessian", {"y": "sin(x) * x"}, {"x": {"linspace": [-2.0, 2.0, 300]}}, {"kind": "hessian"}, (300, 300), 4),
    (
        "jacobian_broadcast",  # x [200] against c [3, 1]: y [3, 200]
        {"y": "tanh(x) * c"},
        {"x": {"linspace": [-2.0, 2.0, 200]}, "c": [[1.0], [3.0], [-2.0]]},
        {"kind": "jacobian"},
        (3, 200, 200),
        4,
    ),
    (
        "batch_jacobian_elementwise",
        {"y": "sin(x) * x"},
        {"x": {"random": {"shape": [64, 128], "seed": 1}}},
        {"kind": "batch_jacobian"},
        (64, 128, 128),
        4,
    ),
    (
        "batch_jacobian_by_position",  # 2 runs per position of a row, whatever the batch
        {"y": "tanh(x @ w)"},
        {"x": {"random": {"shape": [64, 32], "seed": 1}}, "w": {"random": {"shape": [32, 8], "seed": 2}}},
        {"kind": "batch_jacobian"},
        (64, 8, 32),
        2 * 32 + 2 * 8,
    ),
]


@pytest.mark.parametrize("steps, point, request_, shape, most", [k[1:] for k in KINDS], ids=[k[0] for k in KINDS])
def test_each_kind_is_checked_in_every_element_in_a_few_runs(steps, point, request_, shape, most):
    rec, runs, _ = _checked(steps, point, {"target": "y", "sources": "x", **request_})
    assert (rec["outcome"], np.shape(rec["reference"])) == ("passed", shape), rec
    assert rec["elements"] == int(np.prod(shape))
    assert runs <= most, runs


def test_a_batch_jacobian_of_512_positions_by_differences():
    point = {"x": {"random": {"shape": [64, 512], "seed": 1}}, "w": {"random": {"shape": [512, 4], "seed": 2}}}
    rec, runs, _ = _checked({"y": "tanh(x @ w / 20)"}, point, {"target": "y", "sources": "x", "kind": "batch_jacobian"})
    assert (rec["outcome"], np.shape(rec["reference"])) == ("passed", (64, 4, 512)), rec
    assert 2 * 512 <= runs <= 2 * 512 + 16


def test_a_corrupted_batch_jacobian_fails_naming_the_element():
    def corrupt(got):
        got[5, 2, 7] *= 1.01

    point = {"x": {"random": {"shape": [16, 8], "seed": 1}}, "w": {"random": {"shape": [8, 3], "seed": 2}}}
    rec, _, _ = _checked(
        {"y": "tanh(x @ w)"}, point, {"target": "y", "sources": "x", "kind": "batch_jacobian"}, corrupt
    )
    assert (rec["outcome"], rec["mismatched"]) == ("failed", 1), rec
    assert " at [5, 2, 7]: error " in rec["reason"]


def test_a_kink_in_a_batch_row_is_named_by_row_and_position():
    point = {"x": [[0.5, -1.0], [3.0, -1.0]], "w": [[1.0, 2.0], [3.0, 4.0]]}  # row 1 of x @ w: [0, 2]
    rec, _, _ = _checked({"y": "abs(x @ w)"}, point, {"target": "y", "sources": "x", "kind": "batch_jacobian"})
    assert rec["outcome"] == "failed"
    assert "non-differentiable point at x[1, 0]: left slope -1, right slope 1" in rec["reason"], rec


def test_a_reduction_is_not_batched_and_a_large_one_is_projected():
    rec, runs, _ = _checked(
        {"y": "reduce_sum(sin(x) * x)"}, {"x": {"linspace": [-1.0, 1.0, 5000]}}, {"target": "y", "sources": "x"}
    )
    # not elementwise: beyond 4,096 elements the projection (runner/verify/projection.py) decides,
    # in a few runs along its random directions, not two per element
    assert (rec["outcome"], rec["method"]) == ("passed", "projection"), rec
    assert rec["projection"]["directions"] == 4 and runs <= 8
