"""Every row of the function table (runner/language/functions.py) is complete: each interpreter
has what it needs, and TensorFlow and SymPy compute the same value.

A new row that lacks a rule (no SymPy form, a shape tag shapes.py has no rule for, a kink
tag the SymPy lowerer does not know) fails here, naming the function, instead of failing
in a user's run. Real TensorFlow and real SymPy throughout.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp
import tensorflow as tf

from runner.language import expression as ex
from runner.language import functions, lowering, shapes, symbolic

ROWS = list(functions.TABLE.values())
ELEMENTWISE = [r for r in ROWS if r.shape == "elementwise"]
KINKED = [r for r in ROWS if r.kink is not None]


def by_name(rows):
    return pytest.mark.parametrize("row", rows, ids=[r.name for r in rows])


# The sample point: in the domain of every function of the table (asin and acos need
# |x| < 1; log and sqrt, x > 0; pow, a positive base) and off every kink (x, y, x - y != 0).
POINT = {"x": 0.3, "y": 0.7, "z": -0.4}
# A function whose arguments cannot be x, y, z in order (a condition first; a domain that
# excludes the sample point) gives them here.
ARGUMENTS = {"where": "x < y, y, z"}


def call_text(row: functions.Function) -> str:
    return f"{row.name}({ARGUMENTS.get(row.name, ', '.join('xyz'[: row.signature.tensors]))})"


# ---- each row resolves in each interpreter --------------------------------------------


@by_name(ROWS)
def test_tf_op_is_a_callable_of_real_tensorflow(row):
    op = row.tf(tf)
    assert callable(op)
    assert op.__module__.startswith("tensorflow."), f"{row.name}: {op!r} is not a TensorFlow op"
    assert lowering.TF_FUNCTIONS[row.name] is op


@by_name(ELEMENTWISE)
def test_elementwise_function_has_a_sympy_form_or_a_special_case(row):
    assert (row.sympy is None) != (row.special is None), (
        f"{row.name}: an elementwise row needs exactly one of a SymPy form (sympy=lambda sp: ...) "
        f"or a special case handled in runner/language/symbolic.py (special=...); it has "
        f"sympy={row.sympy!r}, special={row.special!r}"
    )
    if row.sympy is not None:
        form = row.sympy(sp)
        args = sp.symbols("x y z", real=True)[: row.signature.tensors]
        assert isinstance(form(*args), sp.Basic), f"{row.name}: its SymPy form does not build a SymPy expression"
    else:
        assert row.special in functions.SPECIALS
        assert row.special == symbolic.FREEZE or row.special in symbolic.special_forms(), (
            f"{row.name}: runner/language/symbolic.py has no code for the special case {row.special!r}"
        )


@by_name([r for r in ROWS if r.shape != "elementwise"])
def test_other_functions_have_no_sympy_meaning(row):
    """The symbolic check leaves reductions, matmul and transpose to finite differences."""
    assert row.sympy is None and row.special is None and row.kink is None
    tree = ex.parse(call_text(row))
    assert not symbolic.is_elementwise(tree)
    with pytest.raises(ValueError, match="has no elementwise SymPy meaning"):
        symbolic.SymbolicLowerer({k: sp.Symbol(k, real=True) for k in POINT}).lower(tree)


@by_name(ROWS)
def test_shape_tag_has_a_rule_that_agrees_with_tensorflow(row):
    assert row.shape in shapes.RULES, f"{row.name}: runner/language/shapes.py has no rule for shape tag {row.shape!r}"
    texts = [call_text(row)] + ([call_text(row)[:-1] + ", 1)"] if row.signature.axis else [])
    for text in texts:
        batch = (4, 3, 3)  # a batch of square matrices: every rule applies, and transpose is seen
        inferred = shapes.infer(ex.parse(text), {k: batch for k in POINT}, text)
        env = {k: tf.fill(batch, tf.constant(v, tf.float64)) for k, v in POINT.items()}
        got = lowering.lower(ex.parse(text), tf.float64)(env)
        assert inferred == tuple(got.shape), f"{text}: shapes.py infers {inferred}, TensorFlow gives {tuple(got.shape)}"


@by_name(ROWS)
def test_kink_tag_is_valid(row):
    if row.kink is None:
        return
    assert row.kink in functions.KINKS, f"{row.name}: unknown kink tag {row.kink!r}"
    assert row.shape == "elementwise", f"{row.name}: only an elementwise function has a kink the SymPy check sees"
    if row.kink == "difference":
        assert row.signature.tensors == 2, f"{row.name}: a kink at the difference of two arguments needs two"


@by_name(KINKED)
def test_sympy_lowering_records_the_kink_site(row):
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    lowerer = symbolic.SymbolicLowerer({"x": x, "y": y, "z": sp.Symbol("z", real=True)})
    lowerer.lower(ex.parse(call_text(row)))
    want = x if row.kink == "argument" else x - y
    assert [site for _, site in lowerer.kinks] == [want]


# ---- TensorFlow and SymPy agree -------------------------------------------------------


@by_name(ELEMENTWISE)
def test_sympy_lowering_computes_what_tensorflow_computes(row):
    """Through both lowerers, so a special case written in code is checked as a form is."""
    text = call_text(row)
    tree = ex.parse(text)
    env = {k: tf.constant(v, tf.float64) for k, v in POINT.items()}
    tf_value = float(lowering.lower(tree, tf.float64)(env))

    syms = {k: sp.Symbol(k, real=True) for k in POINT}
    lowerer = symbolic.SymbolicLowerer(syms)
    expr = lowerer.lower(tree).xreplace(lowerer.frozen)
    sympy_value = symbolic.evaluate(expr, {syms[k]: v for k, v in POINT.items()})

    assert math.isfinite(tf_value), f"{text}: the sample point {POINT} is outside the domain; give it in ARGUMENTS"
    assert math.isclose(sympy_value, tf_value, rel_tol=1e-12, abs_tol=1e-15), (
        f"{text} at {POINT}: TensorFlow {tf_value!r}, SymPy {sympy_value!r}"
    )


# ---- every interpreter accepts exactly the functions of the table ---------------------


def test_the_parser_accepts_exactly_the_table():
    assert set(ex.FUNCTIONS) == set(functions.TABLE)
    assert set(functions.TABLE) <= ex.RESERVED
    for row in ROWS:
        assert ex.FUNCTIONS[row.name] == row.signature
        call = ex.parse(call_text(row))
        assert isinstance(call, ex.Call) and call.func == row.name
    with pytest.raises(ex.ExpressionError, match="unknown function 'cbrt'"):
        ex.parse("cbrt(x)")


def test_tensorflow_lowering_accepts_exactly_the_table():
    assert set(lowering.TF_FUNCTIONS) == set(functions.TABLE)


def test_sympy_lowering_accepts_exactly_the_elementwise_functions():
    elementwise = {r.name for r in ELEMENTWISE}
    frozen = {r.name for r in ROWS if r.special == symbolic.FREEZE}
    assert symbolic.ELEMENTWISE == elementwise
    assert set(symbolic.sympy_functions()) == elementwise - frozen
    assert symbolic._KINKED == {r.name: r.kink for r in KINKED}


def test_every_shape_tag_has_exactly_one_rule():
    assert set(shapes.RULES) == set(functions.SHAPE_RULES)
