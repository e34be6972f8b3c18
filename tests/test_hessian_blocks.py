"""A hessian by several sources: every block (s, r) = d/dr of the gradient by s is checked,
the mixed partials included (issue 14, item 4), by SymPy and by finite differences.

Expected blocks are analytic formulas written out here (NumPy), TensorFlow's value comes from
the run; the check's `reference` must be the same nested mapping source -> source -> block.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

import numpy as np
import pytest

from runner.config import spec as specs
from runner.verify import check
from tests.helpers import Ran, function_config

F64 = {"dtype": "float64"}


def _run(run_job, steps, point, request, verify, inputs=None) -> Ran:
    cfg = function_config(
        steps, point, [{"name": "h", **request}], inputs=inputs or {k: F64 for k in point}, verify=verify
    )
    cfg["expect"] = None
    ran = run_job(cfg)
    assert ran.code == 0, ran.log.get("error")
    return ran


def _record(ran: Ran) -> Dict[str, Any]:
    (rec,) = [d for d in ran.log["derivatives"] if d["name"] == "h"]
    return rec


def _assert_blocks(got: Dict[str, Dict[str, Any]], want: Dict[str, Dict[str, Any]]) -> None:
    """Every block of `got` (TF's value or the check's reference) is the analytic one;
    None where `want` says TensorFlow gives None."""
    assert list(got) == list(want)
    for s in want:
        assert list(got[s]) == list(want[s]), s
        for r, block in want[s].items():
            if block is None:
                assert got[s][r] is None, (s, r)
            else:
                np.testing.assert_allclose(np.asarray(got[s][r]), block, rtol=1e-6, atol=1e-6, err_msg=f"({s}, {r})")


# ---- 1. elementwise with broadcasting: t = x*y**2 + sin(x)*z, x [3], y [2, 1], z scalar --------

X, Y, Z = np.array([0.5, -1.0, 2.0]), np.array([[1.5], [-0.5]]), 0.75
BROADCAST = {"t": "x * y ** 2 + sin(x) * z"}


def _broadcast_blocks() -> Dict[str, Dict[str, Any]]:
    """The Hessian of S = sum_ij x_j y_i^2 + sin(x_j) z (t is [2, 3]: each x_j is read by 2 rows)."""
    rows = Y.shape[0]
    return {
        "x": {
            "x": np.diag(-rows * np.sin(X) * Z),
            "y": np.broadcast_to(2 * Y[:, 0], (3, 2)).reshape(3, 2, 1),  # d/dy_i of sum_i y_i^2 + ...
            "z": rows * np.cos(X),
        },
        "y": {
            "x": np.broadcast_to(2 * Y, (2, 3)).reshape(2, 1, 3),
            "y": (2 * X.sum() * np.eye(2)).reshape(2, 1, 2, 1),
            "z": None,  # the gradient by y, 2 x y, has no path to z: TensorFlow gives None
        },
        "z": {"x": rows * np.cos(X), "y": None, "z": None},
    }


@pytest.mark.parametrize("verify", ["auto", "symbolic", "finite_difference"])
def test_every_block_of_an_elementwise_broadcast_hessian(run_job, verify):
    ran = _run(
        run_job,
        BROADCAST,
        {"x": X.tolist(), "y": Y.tolist(), "z": Z},
        {"target": "t", "sources": ["x", "y", "z"], "kind": "hessian"},
        verify,
    )
    rec = _record(ran)
    want = _broadcast_blocks()
    _assert_blocks(rec["value"], want)
    chk = rec["check"]
    assert chk["passed"] is True, chk
    assert chk["method"] == ("finite_difference" if verify == "finite_difference" else "symbolic")
    # every block checked: the reference is a block for every pair, zeros where TF gives None
    zeros = {
        s: {r: (np.zeros(np.shape(b)) if b is not None else None) for r, b in row.items()} for s, row in want.items()
    }
    zeros["y"]["z"], zeros["z"]["y"], zeros["z"]["z"] = np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(())
    ref = chk["reference"]
    _assert_blocks(
        ref, {s: {r: want[s][r] if want[s][r] is not None else zeros[s][r] for r in row} for s, row in want.items()}
    )
    assert "coverage" not in chk
    assert "does not depend on z" in chk["note"]  # the (y, z) block: TF's None, the reference 0


# ---- 2. not elementwise (matmul, reduce_sum): finite differences decide -----------------------

XM = np.array([[0.5, -1.0, 0.25], [1.5, 0.75, -0.5]])  # [2, 3]
YM = np.array([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.5]])  # [3, 2]
ZM = np.array([[0.5, -1.0], [2.0, 0.25]])  # [2, 2]
MATMUL = {"f": "reduce_sum(matmul(x, y) ** 2 * z)"}


def _matmul_blocks() -> Dict[str, Dict[str, Any]]:
    """f = sum_ab z_ab M_ab^2 with M = x y, its nine blocks by hand."""
    x, y, z = XM, YM, ZM
    m = x @ y
    i2, i3 = np.eye(2), np.eye(3)
    h_xy = 2 * (np.einsum("ae,ad,ce->acde", z, x, y) + np.einsum("ae,ae,cd->acde", z, m, i3))
    h_xz = 2 * np.einsum("ap,ab,cb->acpb", i2, m, y)
    h_yz = 2 * np.einsum("eb,ae,ad->deab", i2, m, x)
    return {
        "x": {"x": 2 * np.einsum("ap,ab,cb,qb->acpq", i2, z, y, y), "y": h_xy, "z": h_xz},
        "y": {
            "x": h_xy.transpose(2, 3, 0, 1),
            "y": 2 * np.einsum("eq,ae,ad,ap->depq", i2, z, x, x),
            "z": h_yz,
        },
        "z": {"x": h_xz.transpose(2, 3, 0, 1), "y": h_yz.transpose(2, 3, 0, 1), "z": None},
    }


@pytest.mark.parametrize("verify", ["auto", "finite_difference"])
def test_every_block_of_a_matmul_hessian_by_finite_differences(run_job, verify):
    ran = _run(
        run_job,
        MATMUL,
        {"x": XM.tolist(), "y": YM.tolist(), "z": ZM.tolist()},
        {"target": "f", "sources": ["x", "y", "z"], "kind": "hessian"},
        verify,
    )
    rec = _record(ran)
    want = _matmul_blocks()
    _assert_blocks(rec["value"], want)
    chk = rec["check"]
    assert chk["passed"] is True, chk
    assert chk["method"] == "finite_difference"
    want["z"]["z"] = np.zeros((2, 2, 2, 2))  # TF's None; the differences find 0
    for s, row in want.items():
        for r, block in row.items():
            np.testing.assert_allclose(chk["reference"][s][r], block, rtol=1e-4, atol=1e-4, err_msg=f"({s}, {r})")


# ---- 3. a wrong mixed block fails, naming the block and the element ----------------------------


def _spec_and_point(steps, point, request, verify):
    cfg = function_config(steps, point, [request], inputs={k: F64 for k in point}, verify=verify)
    spec = specs.build(cfg)
    return spec, {k: np.asarray(v, dtype=np.float64) for k, v in spec.point.items()}


@pytest.mark.parametrize(
    "steps, point, verify, method",
    [
        (BROADCAST, {"x": X.tolist(), "y": Y.tolist(), "z": Z}, "auto", "symbolic"),
        (MATMUL, {"x": XM.tolist(), "y": YM.tolist(), "z": ZM.tolist()}, "auto", "finite_difference"),
    ],
    ids=["symbolic", "finite_difference"],
)
def test_a_corrupted_mixed_block_fails_naming_it(steps, point, verify, method):
    target = next(iter(steps))
    want = _broadcast_blocks() if steps is BROADCAST else _matmul_blocks()
    spec, values = _spec_and_point(
        steps, point, {"target": target, "sources": ["x", "y", "z"], "kind": "hessian"}, verify
    )
    (req,) = spec.requests
    right = {s: {r: (None if b is None else np.array(b)) for r, b in row.items()} for s, row in want.items()}
    (ok,) = check.check_all(spec, values, [(req, right)])
    assert ok["passed"] is True, ok
    wrong = copy.deepcopy(right)
    at = (1, 0, 0) if steps is BROADCAST else (1, 2, 0, 1)
    wrong["x"]["y"][at] += 0.5
    (bad,) = check.check_all(spec, values, [(req, wrong)])
    assert bad["passed"] is False and bad["method"] == method
    reason = bad["reason"]
    assert reason.startswith("block (x, y): mismatched elements: 1 / "), reason
    assert "TF gives" in reason
    assert f"at [{', '.join(map(str, at))}]" in reason
    assert "(y, x)" not in reason and "coverage" not in bad  # the transpose is right, and every block was checked
    assert bad["max_abs_error"] == pytest.approx(0.5, rel=1e-3)


def test_a_block_none_where_the_reference_is_not_zero_fails():
    spec, values = _spec_and_point(
        BROADCAST,
        {"x": X.tolist(), "y": Y.tolist(), "z": Z},
        {"target": "t", "sources": ["x", "y", "z"], "kind": "hessian"},
        "auto",
    )
    (req,) = spec.requests
    got = copy.deepcopy(_broadcast_blocks())
    got["x"]["z"] = None
    (rec,) = check.check_all(spec, values, [(req, got)])
    assert rec["passed"] is False
    assert (
        "block (x, z): TensorFlow gives None: the gradient by x does not depend on z, but the reference"
        in rec["reason"]
    )


# ---- 4. unconnected sources, a single source kept as it was -----------------------------------


def test_a_block_tf_gives_as_none_is_checked_against_zero(run_job):
    ran = _run(
        run_job,
        {"t": "x * y ** 2"},
        {"x": [0.5, 2.0], "y": [1.5, -1.0]},
        {"target": "t", "sources": ["x", "y"], "kind": "hessian"},
        "auto",
    )
    rec = _record(ran)
    y = np.array([1.5, -1.0])
    # t = x*y^2: f_xx = 0 (TF: None, the gradient y^2 has no path to x), f_xy = 2y, f_yy = 2x
    assert rec["value"]["x"]["x"] is None
    np.testing.assert_allclose(rec["value"]["x"]["y"], np.diag(2 * y))
    chk = rec["check"]
    assert chk["passed"] is True, chk
    np.testing.assert_allclose(chk["reference"]["y"]["x"], np.diag(2 * y))
    np.testing.assert_allclose(chk["reference"]["y"]["y"], np.diag([1.0, 4.0]))


def test_an_unconnected_source_gives_none_blocks_and_the_rest_are_checked(run_job):
    ran = _run(
        run_job,
        {"t": "x ** 2 * stop_gradient(y) ** 2"},
        {"x": [0.5, 2.0], "y": [1.5, -1.0]},
        {"target": "t", "sources": ["x", "y"], "kind": "hessian"},
        "auto",
    )
    rec = _record(ran)
    y = np.array([1.5, -1.0])
    want = {"x": {"x": np.diag(2 * y**2), "y": None}, "y": {"x": None, "y": None}}
    _assert_blocks(rec["value"], want)
    chk = rec["check"]
    assert chk["passed"] is True and chk["method"] == "symbolic", chk
    _assert_blocks(chk["reference"], want)
    assert "blocks (x, y), (y, x), (y, y): TensorFlow gives None: the tape records no path from y to t" in chk["note"]


def test_a_single_source_hessian_keeps_its_record():
    spec, values = _spec_and_point(
        {"t": "x ** 3"}, {"x": [1.0, -2.0]}, {"target": "t", "sources": "x", "kind": "hessian"}, "auto"
    )
    (req,) = spec.requests
    (rec,) = check.check_all(spec, values, [(req, np.diag([6.0, -12.0]))])
    assert rec["passed"] is True and rec["method"] == "symbolic"
    np.testing.assert_allclose(rec["reference"], np.diag([6.0, -12.0]))


# ---- 5. the user's code: a hessian by two inputs ---------------------------------------------


def test_a_user_code_hessian_by_two_inputs(run_job, monkeypatch):
    monkeypatch.setenv("RUNNER_TRUST", "tests.helpers.user_functions")
    x, w = np.array([0.5, 1.5, -0.7]), 1.25
    cfg = function_config(
        {}, {"x": x.tolist(), "w": w}, [{"name": "h", "target": "y", "sources": ["x", "w"], "kind": "hessian"}]
    )
    cfg["function"] = {"callable": "tests.helpers.user_functions.scaled", "inputs": {"x": F64, "w": F64}, "steps": {}}
    cfg["expect"] = None
    ran = run_job(cfg)
    assert ran.code == 0, ran.log.get("error")
    rec = _record(ran)
    # y = w sin(x) x^2: d2/dx2 = w (2 sin x + 4 x cos x - x^2 sin x), d2/dxdw = x^2 cos x + 2 x sin x
    mixed = x**2 * np.cos(x) + 2 * x * np.sin(x)
    want = {
        "x": {"x": np.diag(w * (2 * np.sin(x) + 4 * x * np.cos(x) - x**2 * np.sin(x))), "w": mixed},
        "w": {"x": mixed, "w": None},  # the gradient by w, sum(sin(x) x^2), has no path to w
    }
    _assert_blocks(rec["value"], want)
    chk = rec["check"]
    assert chk["passed"] is True and chk["method"] == "finite_difference", chk
    for s, r in (("x", "x"), ("x", "w"), ("w", "x")):
        np.testing.assert_allclose(chk["reference"][s][r], want[s][r], rtol=1e-4, atol=1e-5)
    assert abs(float(np.asarray(chk["reference"]["w"]["w"]))) < 1e-4


# ---- 6. jvp and hvp by several sources ---------------------------------------------------------


@pytest.mark.parametrize("verify", ["auto", "finite_difference"])
def test_an_hvp_by_two_sources_moves_both(run_job, verify):
    """H v by [x, y] of the elementwise t = x*y**2 (SymPy under auto): the block of x is
    f_xx vx + f_xy vy, so the reference must move y too."""
    ran = _run(
        run_job,
        {"t": "x * y ** 2"},
        {"x": [1.0, 2.0], "y": [3.0, -1.0]},
        {"target": "t", "sources": ["x", "y"], "kind": "hvp", "tangents": {"x": 1.0, "y": 0.5}},
        verify,
    )
    rec = _record(ran)
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    np.testing.assert_allclose(rec["value"]["x"], 2 * y * 0.5)
    np.testing.assert_allclose(rec["value"]["y"], 2 * y * 1.0 + 2 * x * 0.5)
    assert rec["check"]["passed"] is True, rec["check"]


@pytest.mark.parametrize("verify", ["auto", "finite_difference"])
def test_a_jvp_by_two_sources_is_checked_as_one_value(run_job, verify):
    ran = _run(
        run_job,
        {"t": "x * y ** 2"},
        {"x": [1.0, 2.0], "y": [3.0, -1.0]},
        {"target": "t", "sources": ["x", "y"], "kind": "jvp", "tangents": {"x": 1.0, "y": 0.5}},
        verify,
    )
    rec = _record(ran)
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    want = y**2 * 1.0 + 2 * x * y * 0.5
    np.testing.assert_allclose(rec["value"], want)
    chk = rec["check"]
    assert chk["passed"] is True, chk
    np.testing.assert_allclose(chk["reference"], want, rtol=1e-6)
