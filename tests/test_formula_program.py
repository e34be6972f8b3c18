"""runner/verify/formula_program.py: SymPy formulas as ufunc steps over reused buffers, against
SymPy's own lambdify on the same points (the path it replaces, kept for what it cannot spell)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sympy as sp

from runner.language import functions, symbolic
from runner.verify import formula_program

x, y = sp.symbols("x y", real=True)
X = np.linspace(0.05, 0.95, 37)  # inside every function's real domain (asin, acos, atanh, log)
Y = np.linspace(1.3, 0.2, 37)

# Language functions whose SymPy image or derivative NumPy has no ufunc for: lambdify (or evalf) does them.
NOT_SPELLED = {
    "sign": "its derivative is DiracDelta",
    "erf": "NumPy has no erf",
    "where": "a Piecewise: NumPy's where is no ufunc",
}


def _lambdified(formulas, args):
    out = sp.lambdify([x, y], formulas, modules="numpy")(*args)
    return [np.broadcast_to(np.asarray(v, dtype=np.float64), X.shape) for v in out]


def _run(formulas, args=(X, Y), symbols=(x, y)):
    program = formula_program.build(sp, formulas, list(symbols))
    assert program is not None, formulas
    outs = [np.full(np.shape(args[0]), np.nan) for _ in formulas]
    program.run(list(args), outs, formula_program.Scratch())
    return outs


def _elementwise_rows():
    table = symbolic.sympy_functions()
    return [(name, table[name]) for name, row in functions.TABLE.items() if name in table]


@pytest.mark.parametrize("name,build", _elementwise_rows(), ids=[n for n, _ in _elementwise_rows()])
def test_every_language_function_and_its_derivatives_run_as_a_program(name, build):
    """The extension rule: a language function whose SymPy image (or a derivative of it) has
    no rule here fails this test, unless NOT_SPELLED says why NumPy cannot compute it."""
    args = [x, y][: functions.TABLE[name].signature.tensors]
    f = build(y > 0.5, x, x * y) if name == "where" else build(*args)
    formulas = [f] + [sp.diff(f, a) for a in args]
    program = formula_program.build(sp, formulas, [x, y])
    if name in NOT_SPELLED:
        assert program is None, f"{name} now runs as a program: take it out of NOT_SPELLED"
        return
    assert program is not None, f"{name}: a node of {formulas} has no rule in formula_program.RULES"
    for got, want in zip(_run(formulas), _lambdified(formulas, (X, Y))):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize(
    "formulas",
    [
        [sp.diff(sp.sin(x) * x, x), sp.sin(x) * x],  # V1's pair, sin(x) shared
        [sp.sin(x), sp.sin(x) * x, sp.sin(x)],  # a formula's value read by another, and given twice
        [x, sp.Integer(3), sp.pi * y],  # an argument, a constant, a constant times one
        [sp.tanh(x * y) ** 2 + sp.exp(-x) / y, 1 / sp.sqrt(x + y), x**y, x ** sp.Rational(1, 3)],
        [sp.Max(0, x - y) + sp.Heaviside(x - 0.5), sp.Min(x, y, 0.4), sp.atan2(y, x) * sp.Abs(x - y)],
        [sp.diff(sp.log(1 + sp.exp(x * y)), x, y), sp.diff(sp.atan(x / y), y, 2)],
    ],
)
def test_a_program_gives_lambdify_values(formulas):
    for got, want in zip(_run(formulas), _lambdified(formulas, (X, Y))):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


def test_where_numpy_gives_nan_so_does_the_program():
    """Outside a function's real domain both give NaN (SymPy's evalf settles those points)."""
    formulas = [sp.log(x - 0.5), sp.sqrt(y - 1.0), x ** sp.Rational(1, 3)]
    args = (X - 0.5, Y)
    with np.errstate(all="ignore"):
        got, want = _run(formulas, args), _lambdified(formulas, args)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], rtol=1e-13)


@pytest.mark.parametrize(
    "formula",
    [sp.erf(x), sp.Piecewise((x, y > 0), (y, True)), sp.I * x, x + sp.Symbol("z", real=True), sp.zoo * x],
    ids=["no ufunc", "piecewise", "complex constant", "not an argument", "complex infinity"],
)
def test_what_it_cannot_compute_gives_no_program(formula):
    assert formula_program.build(sp, [formula], [x, y]) is None


def test_buffers_are_reused_and_the_chunks_give_the_whole():
    """Chunk after chunk through one Scratch (as a thread of the grid's pass does): the values
    equal one run over the whole array, and the buffers are made once."""
    formulas = [sp.diff(sp.sin(x) * sp.exp(-y) * x, x), sp.cos(x * y) + sp.sin(x * y) ** 2, x * y]
    a, b = np.linspace(-3, 3, 1000), np.linspace(2, -1, 1000)
    whole = _run(formulas, (a, b))
    program = formula_program.build(sp, formulas, [x, y])
    scratch = formula_program.Scratch()
    pieces = [np.empty(1000) for _ in formulas]
    made = set()
    for lo in range(0, 1000, 96):  # the last chunk is shorter
        hi = min(lo + 96, 1000)
        program.run([a[lo:hi], b[lo:hi]], [p[lo:hi] for p in pieces], scratch)
        made.update(id(v.base) for v in scratch.take(program.slots - program.inputs, (hi - lo,), "program"))
    assert len(made) == 1  # one block of buffers for every chunk
    for got, want in zip(pieces, whole):
        np.testing.assert_array_equal(got, want)
    assert program.slots - program.inputs <= 4  # freed buffers are taken again


def test_threads_have_their_own_buffers():
    scratch = formula_program.Scratch()
    mine = scratch.take(2, (8,), "program")
    theirs = []
    t = threading.Thread(target=lambda: theirs.extend(scratch.take(2, (8,), "program")))
    t.start()
    t.join()
    assert not any(np.shares_memory(m, o) for m in mine for o in theirs)
