"""Property: on random expression trees and points, TensorFlow's gradient agrees with the
exact SymPy derivative of the same parsed tree, wherever both are finite.

Trees are drawn as text and go through the real parser (`runner.language.expression`), the real
tape program (float64 inputs, so the tolerance can be tight) and the real SymPy lowering.
One process, one TensorFlow: the examples reuse it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runner.config import spec as specs

UNARY = ["sin", "cos", "tanh", "atan", "exp", "log", "sqrt", "square", "sigmoid", "softplus", "abs", "relu", "erf"]
BINARY = ["+", "-", "*", "/"]

# Points and constants on a grid of step 0.05 in [-2, 2]: 0 (and so every kink) is hit
# often, while quotients stay far from the 1e249 where float64 sin() itself loses every
# digit (conditioning, not a bug of either side).
grid = st.integers(min_value=-40, max_value=40).map(lambda k: k / 20)
leaves = st.one_of(
    st.sampled_from(["x", "y"]),
    st.integers(min_value=1, max_value=3).map(str),
    grid.map(lambda v: f"{v:.2f}"),
)


def _extend(children):
    unary = st.tuples(st.sampled_from(UNARY), children).map(lambda t: f"{t[0]}({t[1]})")
    binary = st.tuples(children, st.sampled_from(BINARY), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    power = st.tuples(children, st.integers(min_value=2, max_value=3)).map(lambda t: f"({t[0]}) ** {t[1]}")
    two = st.tuples(st.sampled_from(["maximum", "minimum", "pow"]), children, children).map(
        lambda t: f"{t[0]}({t[1]}, {t[2]})"
    )
    return st.one_of(unary, binary, power, two)


trees = st.recursive(leaves, _extend, max_leaves=8)
coordinates = grid


def _close(got: float, ref: float) -> bool:
    return abs(got - ref) <= 1e-6 * max(1.0, abs(ref))


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=trees, x=coordinates, y=coordinates)
def test_tf_gradient_agrees_with_sympy(text, x, y):
    from runner.tape import program
    from runner.verify import check as verify

    cfg = {
        "function": {
            "inputs": {"x": {"dtype": "float64"}, "y": {"dtype": "float64"}},
            "steps": {"z": f"x * 0 + y * 0 + {text}"},
        },
        "point": {"x": x, "y": y},
        "derivatives": [{"target": "z", "sources": ["x", "y"]}],
        "tape": {"persistent": False},
    }
    spec = specs.build(cfg)
    outcome = program.run(spec)
    assume(outcome.error is None)
    fwd = verify.Forward(spec, outcome.values)
    got = outcome.derivatives[0].value
    for source in ("x", "y"):
        ref = verify.symbolic_reference(spec, spec.requests[0], source, fwd)
        assume(ref.value is not None)  # a kink site switches exactly here: finite differences' job
        tf_value, ref_value = float(got[source]), float(ref.value)
        if math.isfinite(tf_value) and math.isfinite(ref_value):
            assert _close(tf_value, ref_value), (
                f"d/d{source} of {text} at x={x}, y={y}: TF {tf_value}, SymPy {ref_value}"
            )


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=trees, x=coordinates, y=coordinates)
def test_sympy_lowering_computes_what_tensorflow_computes(text, x, y):
    import sympy as sp

    from runner.language import expression, symbolic
    from runner.verify import check as verify

    cfg = {
        "function": {"inputs": {"x": {"dtype": "float64"}, "y": {"dtype": "float64"}}, "steps": {"z": text}},
        "point": {"x": x, "y": y},
        "derivatives": [],
    }
    spec = specs.build(cfg)
    fwd = verify.Forward(spec, {"x": np.float64(x), "y": np.float64(y)})
    sx, sy = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    lowered = symbolic.SymbolicLowerer({"x": sx, "y": sy}).lower(expression.parse(text))
    value = symbolic.evaluate(lowered, {sx: x, sy: y})
    tf_value = float(fwd.base["z"])
    if math.isfinite(value) and math.isfinite(tf_value):
        assert _close(tf_value, value), f"{text} at x={x}, y={y}: TF {tf_value}, SymPy {value}"


@pytest.mark.parametrize(
    "text", ["sigmoid(x)", "softplus(x)", "expm1(x)", "log1p(x)", "square(x)", "atan2(x, 2.0)", "sign(x) * x"]
)
def test_table_functions_match_tensorflow(text):
    """Functions the random trees leave out, once each."""
    test_sympy_lowering_computes_what_tensorflow_computes.hypothesis.inner_test(text=text, x=0.37, y=1.0)
