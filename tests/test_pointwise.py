"""The symbolic reference over the whole grid (runner/verify/pointwise.py): float64 where it
is enough, SymPy's evalf where it is not, and every element of a large grid checked."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner import job
from runner.verify import pointwise


def _run(tmp_path, steps, point, derivatives=None, **extra):
    cfg = {
        "function": {"inputs": {"x": {"dtype": "float64"}}, "steps": steps},
        "point": {"x": point},
        "derivatives": derivatives or [{"target": "y", "sources": "x"}],
        "log": {"tensorboard": False, "plots": False},
        **extra,
    }
    code = job.run(cfg, tmp_path, echo=False)
    return code, json.loads((tmp_path / "results.json").read_text())


def test_a_million_point_grid_is_checked_in_every_element(tmp_path):
    code, log = _run(tmp_path, {"y": "sin(x) * x"}, {"linspace": [-10.0, 10.0, 1_000_000]})
    check = log["derivatives"][0]["check"]
    assert code == 0
    assert check["method"] == "symbolic" and check["outcome"] == "passed", check
    assert check["elements"] == 1_000_000 and check["mismatched"] == 0


def test_the_vectorized_values_are_evalf_s(tmp_path):
    """Each point's pointwise derivative equals SymPy's evalf at that point."""
    import sympy as sp

    from runner.language import symbolic

    x = sp.Symbol("x", real=True)
    formulas = {"a": sp.sin(x) * x, "b": sp.exp(-(x**2)) / (1 + x**2), "c": sp.log(1 + x**2) * sp.cos(3 * x)}
    grid = {x: np.linspace(-3.0, 3.0, 101)}
    kink, values = pointwise.evaluate(formulas, {}, [], grid, (101,))
    assert kink is None
    for k, f in formulas.items():
        exact = [symbolic.evaluate(f, {x: float(v)}) for v in grid[x]]
        assert values[k] == pytest.approx(exact, rel=1e-12, abs=1e-15)


def test_where_float64_is_not_enough_evalf_decides(tmp_path):
    """(1 - cos x) / x**2 near 0: float64 cancels to garbage, evalf does not."""
    import sympy as sp

    from runner.language import symbolic

    x = sp.Symbol("x", real=True)
    f = sp.diff((1 - sp.cos(x)) / x**2, x)
    grid = {x: np.linspace(1e-6, 2e-6, 50)}
    _, values = pointwise.evaluate({"d": f}, {}, [], grid, (50,))
    exact = [symbolic.evaluate(f, {x: float(v)}) for v in grid[x]]
    assert values["d"] == pytest.approx(exact, rel=1e-9)
    with np.errstate(all="ignore"):
        naive = sp.lambdify([x], f, "numpy")(grid[x])
    assert not np.allclose(naive, exact, rtol=1e-3)  # the float64 formula alone would be wrong


def test_a_large_grid_float64_cannot_serve_is_left_to_finite_differences(tmp_path, monkeypatch):
    monkeypatch.setattr(pointwise, "MAX_EVALF_POINTS", 10)
    code, log = _run(tmp_path, {"y": "(1 - cos(x)) / x ** 2"}, {"linspace": [1e-6, 2e-6, 50]})
    check = log["derivatives"][0]["check"]
    assert check["method"] == "finite_difference"
    assert "float64 is not precise enough" in check["note"], check


def test_one_corrupted_element_of_a_large_grid_fails_naming_it(tmp_path):
    from runner.config import spec as specs
    from runner.verify import check

    cfg = {
        "function": {"inputs": {"x": {"dtype": "float64"}}, "steps": {"y": "sin(x) * x"}},
        "point": {"x": {"linspace": [-10.0, 10.0, 100_000]}},
        "derivatives": [{"target": "y", "sources": "x"}],
    }
    spec = specs.build(cfg)
    x = spec.point["x"]
    got = np.sin(x) + x * np.cos(x)
    got[31_337] += 1e-3
    (rec,) = check.check_all(spec, {"x": x}, [(spec.requests[0], got)])
    assert rec["method"] == "symbolic" and rec["outcome"] == "failed"
    assert rec["mismatched"] == 1 and rec["elements"] == 100_000
    assert "at [31337]" in rec["reason"], rec["reason"]


@pytest.mark.parametrize("text", ["x + log(0.0)", "log(0.0) - x ** 2 * 0 + x"])
def test_a_formula_sympy_folds_to_an_infinity_is_left_to_finite_differences(tmp_path, text):
    """log(0) is SymPy's complex infinity: x + zoo folds to zoo, whose derivative SymPy calls
    0 (TensorFlow's is 1), and NumPy has no spelling for it. The symbolic reference steps aside."""
    code, log = _run(tmp_path, {"y": text}, 2.0)
    check = log["derivatives"][0]["check"]
    assert check["method"] == "finite_difference"
    assert "not finite here" in check["note"], check


def test_a_derivative_numpy_cannot_spell_is_evaluated_by_evalf():
    import sympy as sp

    x = sp.Symbol("x", real=True)
    grid = {x: np.array([1.0, 2.0])}
    _, values = pointwise.evaluate({"d": x * sp.zoo}, {}, [], grid, (2,))
    assert np.isnan(values["d"]).all()  # undefined, as SymPy's evalf says
