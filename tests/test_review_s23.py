"""Review of the faster derivative checks (issue 14): the formula program (runner/verify/
formula_program.py) must give the numbers of the lambdify path it replaced (b665e55), so that a
check's record does not change.

Found: a product with a denominator (x / y, as SymPy holds it: x * y**-1) was computed as
x * (1 / y), two roundings where lambdify's x / y makes one (a float64 check's max_rel_error
changed), and 1 / (1 / y) overflowed where y is subnormal (every point then non-finite: a
grid left unverified); y**-1/2 was NumPy's power, where lambdify writes 1 / sqrt(y) (+0 at
-inf instead of NaN, +inf at -0.0 instead of -inf); a complex exponent made the build raise
instead of leaving the formulas to lambdify.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from runner.config import spec as specs
from runner.tape import program
from runner.verify import check, formula_program, pointwise
from tests.helpers import function_config

x, y = sp.symbols("x y", real=True)


def _program(formulas, args):
    program = formula_program.build(sp, formulas, [x, y])
    assert program is not None, formulas
    outs = [np.full(np.shape(args[0]), -1.0) for _ in formulas]
    program.run(list(args), outs, formula_program.Scratch())
    return outs


def _lambdified(formulas, args):
    with np.errstate(all="ignore"):
        out = sp.lambdify([x, y], formulas, modules="numpy", cse=True)(*args)
    return [np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(args[0])) for v in out]


SPECIAL = np.array([-np.inf, -3.0, -1e-310, -0.0, 0.0, 1e-310, 1e-300, 0.7, 2.5, 1e300, np.inf, np.nan])
FORMULAS = {
    "quotient": x / y,
    "scaled_quotient": -2 * x / y**2,
    "several_denominators": sp.sin(x) * sp.cos(y) / (x * y),
    "reciprocal_root": 1 / sp.sqrt(y),
    "negated_reciprocal_root": -1 / sp.sqrt(x),
    "over_a_root": x / sp.sqrt(y),
    "over_a_power": x * y ** sp.Rational(-3, 2),
    "derivative_of_a_quotient": sp.diff(sp.sin(x) / (1 + x * y), x),
}


@pytest.mark.parametrize("name", list(FORMULAS))
def test_the_program_gives_lambdify_s_numbers_bit_for_bit(name):
    xs, ys = (a.ravel() for a in np.meshgrid(SPECIAL, SPECIAL))
    rng = np.random.default_rng(3)
    xs = np.concatenate([xs, rng.uniform(-5, 5, 2000)])
    ys = np.concatenate([ys, rng.uniform(-5, 5, 2000)])
    with np.errstate(all="ignore"):
        got = _program([FORMULAS[name]], (xs, ys))[0]
    want = _lambdified([FORMULAS[name]], (xs, ys))[0]
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    bad = np.flatnonzero(~same)
    assert bad.size == 0, [(xs[i], ys[i], got[i], want[i]) for i in bad[:5]]


def test_a_quotient_of_subnormal_numbers_is_finite_on_a_large_grid():
    """x / y with both 1e-310: 1.0 (lambdify), not 1e-310 * inf at every point (NotEnough)."""
    n = 5000
    grid = {x: np.full(n, 1e-310), y: np.linspace(1e-310, 2e-310, n)}
    _, done = pointwise.evaluate({"d": x / y}, {}, [], grid, (n,))
    np.testing.assert_array_equal(done["d"], grid[x] / grid[y])


@pytest.mark.parametrize(
    "formulas",
    [
        [x ** (sp.Rational(6, 5) * sp.I), x, sp.Integer(0)],
        [sp.atan2(y**x, x**-3) + sp.AccumBounds(-sp.pi / 2, sp.pi / 2)],
    ],
    ids=["complex_exponent", "accumulation_bounds"],
)
def test_formulas_the_program_cannot_spell_are_left_to_lambdify(formulas):
    assert formula_program.build(sp, formulas, [x, y]) is None


def test_a_float64_grid_check_keeps_the_record_of_lambdify_s_reference():
    """The real check of TensorFlow's own float64 gradient (`program.run`): the recorded errors
    are those against the derivative as lambdify computes it (b665e55), to the last bit."""
    spec = specs.build(
        function_config(
            {"y": "sin(x) / (1 + x * x)"},
            {"x": {"linspace": [-3.0, 3.0, 20001]}},
            [{"target": "y", "sources": "x"}],
            inputs={"x": {"dtype": "float64"}},
        )
    )
    outcome = program.run(spec)
    assert outcome.error is None, outcome.error
    got = np.asarray(outcome.derivatives[0].value, dtype=np.float64)
    rec = check.check(
        spec,
        spec.requests[0],
        outcome.derivatives[0].value,
        check.Forward(spec, outcome.values),
        check.tracked_names(spec),
    )
    xs = np.asarray(outcome.values["x"], dtype=np.float64)
    t = sp.Symbol("x", real=True, finite=True)  # as runner/language/symbolic.py makes an input's
    with np.errstate(all="ignore"):
        # with the target's own formula (whether it is finite), their subexpressions shared
        f = sp.sin(t) / (1 + t * t)
        ref = sp.lambdify([t], [sp.diff(f, t), f], modules="numpy", cse=True)(xs)[0]
    err = np.abs(got - ref)
    assert rec["outcome"] == "passed" and rec["method"] == "symbolic"
    assert rec["max_abs_error"] == float(err.max())
    assert rec["max_rel_error"] == float(np.max(err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)))


def _check_of(folder, steps, point, derivatives, dtype):
    from tests.helpers.configs import run_steps

    code, log = run_steps(folder, steps, point, derivatives, dtype=dtype)
    assert code == 0, log.get("derivatives")
    return [d["check"] for d in log["derivatives"]]


def test_jobs_in_one_process_give_the_records_they_give_alone(tmp_path):
    """The buffers kept from job to job (the projection's pool, the grid's per-thread scratch)
    change no number: jobs of different shapes run in turns in one process give, the second
    time, exactly the records they gave the first."""
    jobs = {
        "projection 96x96": (
            {"y": "reduce_sum(tanh(matmul(W, v)))"},
            {"W": {"random": {"shape": [96, 96], "seed": 0}}, "v": {"random": {"shape": [96, 1], "seed": 1}}},
            [{"target": "y", "sources": "W"}],
            "float32",
        ),
        "projection 128x64, two sources": (
            {"y": "reduce_sum(sin(matmul(W, v)) * matmul(W, v))"},
            {"W": {"random": {"shape": [128, 64], "seed": 2}}, "v": {"random": {"shape": [64, 1], "seed": 3}}},
            [{"target": "y", "sources": ["W", "v"]}],
            "float64",
        ),
        "grid": (
            {"y": "sin(x) * x / (1 + x * x)"},
            {"x": {"linspace": [-5.0, 5.0, 300_001]}},
            [{"target": "y", "sources": "x"}],
            "float32",
        ),
    }
    first = {name: _check_of(tmp_path / f"a-{i}", *job) for i, (name, job) in enumerate(jobs.items())}
    again = {name: _check_of(tmp_path / f"b-{i}", *job) for i, (name, job) in enumerate(reversed(jobs.items()))}
    keys = ("outcome", "method", "max_abs_error", "max_rel_error", "tolerance", "mismatched", "elements", "projection")
    for name in jobs:
        assert [{k: c.get(k) for k in keys} for c in again[name]] == [{k: c.get(k) for k in keys} for c in first[name]]
        assert all(c["outcome"] == "passed" for c in first[name]), (name, first[name])
    assert {c["method"] for name in jobs for c in first[name]} >= {"projection", "symbolic"}
