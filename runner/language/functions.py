"""The table of expression functions, one row each with all its rules; imports neither TensorFlow nor SymPy.

A row says everything the interpreters need to know about one function, as JAX keeps a
primitive's rules together: its arity (`Signature`, for the parser), its shape rule (a
tag, for :mod:`runner.language.shapes`), its TensorFlow op (for
:mod:`runner.language.lowering`), its SymPy form and kink (for :mod:`runner.language.symbolic`).
Each interpreter builds its own table from these rows, so adding a function is adding a
row, and `tests/test_functions_table.py` checks that every interpreter can read it.

The TensorFlow and SymPy members are lazy references, functions of the module that
return the op (``tf=lambda tf: tf.math.sin``): the config path imports the language,
and must not pay for either import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Literal, Optional, Tuple, get_args

# How a function's result shape follows from its arguments'; shapes.py has one rule per tag.
ShapeRule = Literal["elementwise", "reduction", "matmul", "transpose"]
SHAPE_RULES: Tuple[ShapeRule, ...] = get_args(ShapeRule)

# Where the derivative has a kink (or an infinite slope): the zero of the argument, or of
# the difference of the two arguments. The verifier hands a point on one to finite differences.
Kink = Literal["argument", "difference"]
KINKS: Tuple[Kink, ...] = get_args(Kink)

# Functions whose SymPy meaning is code in symbolic.py rather than a form in the table:
# stop_gradient freezes its argument as a fresh symbol; where builds a Piecewise from a
# relation; pow folds a power of two numbers in float64, as TensorFlow does.
Special = Literal["freeze", "piecewise", "bounded_pow"]
SPECIALS: Tuple[Special, ...] = get_args(Special)

Module = Any  # tensorflow or sympy, handed in by the interpreter that imported it
LazyOp = Callable[[Module], Callable[..., Any]]


@dataclass(frozen=True)
class Signature:
    """An allowlisted function: how many tensor arguments, and whether an int axis may follow."""

    tensors: int
    axis: bool = False  # a trailing optional integer literal: the reduction axis

    def describe(self, name: str) -> str:
        args = ", ".join(["t"] * self.tensors + (["axis"] if self.axis else []))
        return f"{name}({args})"


@dataclass(frozen=True)
class Function:
    """One row: a function of the language and every rule about it."""

    name: str
    signature: Signature
    shape: ShapeRule
    tf: LazyOp
    sympy: Optional[LazyOp] = None  # elementwise functions only, unless `special`
    special: Optional[Special] = None
    kink: Optional[Kink] = None


def _row(
    name: str,
    tensors: int,
    shape: ShapeRule,
    tf: LazyOp,
    sympy: Optional[LazyOp] = None,
    *,
    axis: bool = False,
    special: Optional[Special] = None,
    kink: Optional[Kink] = None,
) -> Function:
    return Function(name, Signature(tensors, axis), shape, tf, sympy, special, kink)


# The rows. The order is the allowlist's, which error messages list sorted anyway.
_ROWS = (
    _row("sin", 1, "elementwise", lambda tf: tf.math.sin, lambda sp: sp.sin),
    _row("cos", 1, "elementwise", lambda tf: tf.math.cos, lambda sp: sp.cos),
    _row("tan", 1, "elementwise", lambda tf: tf.math.tan, lambda sp: sp.tan),
    _row("asin", 1, "elementwise", lambda tf: tf.math.asin, lambda sp: sp.asin),
    _row("acos", 1, "elementwise", lambda tf: tf.math.acos, lambda sp: sp.acos),
    _row("atan", 1, "elementwise", lambda tf: tf.math.atan, lambda sp: sp.atan),
    _row("sinh", 1, "elementwise", lambda tf: tf.math.sinh, lambda sp: sp.sinh),
    _row("cosh", 1, "elementwise", lambda tf: tf.math.cosh, lambda sp: sp.cosh),
    _row("tanh", 1, "elementwise", lambda tf: tf.math.tanh, lambda sp: sp.tanh),
    _row("exp", 1, "elementwise", lambda tf: tf.math.exp, lambda sp: sp.exp),
    # the exact forms: SymPy has no expm1/log1p, and its derivatives are the same
    _row("expm1", 1, "elementwise", lambda tf: tf.math.expm1, lambda sp: lambda u: sp.exp(u) - 1),
    _row("log", 1, "elementwise", lambda tf: tf.math.log, lambda sp: sp.log),
    _row("log1p", 1, "elementwise", lambda tf: tf.math.log1p, lambda sp: lambda u: sp.log(1 + u)),
    _row("sqrt", 1, "elementwise", lambda tf: tf.math.sqrt, lambda sp: sp.sqrt, kink="argument"),
    _row("square", 1, "elementwise", lambda tf: tf.math.square, lambda sp: lambda u: u**2),
    _row("abs", 1, "elementwise", lambda tf: tf.math.abs, lambda sp: sp.Abs, kink="argument"),
    _row("sign", 1, "elementwise", lambda tf: tf.math.sign, lambda sp: sp.sign, kink="argument"),
    _row("erf", 1, "elementwise", lambda tf: tf.math.erf, lambda sp: sp.erf),
    _row("sigmoid", 1, "elementwise", lambda tf: tf.math.sigmoid, lambda sp: lambda u: 1 / (1 + sp.exp(-u))),
    _row("softplus", 1, "elementwise", lambda tf: tf.math.softplus, lambda sp: lambda u: sp.log(1 + sp.exp(u))),
    _row("relu", 1, "elementwise", lambda tf: tf.nn.relu, lambda sp: lambda u: sp.Max(0, u), kink="argument"),
    _row("pow", 2, "elementwise", lambda tf: tf.math.pow, special="bounded_pow"),
    _row("maximum", 2, "elementwise", lambda tf: tf.math.maximum, lambda sp: sp.Max, kink="difference"),
    _row("minimum", 2, "elementwise", lambda tf: tf.math.minimum, lambda sp: sp.Min, kink="difference"),
    _row("atan2", 2, "elementwise", lambda tf: tf.math.atan2, lambda sp: sp.atan2),
    _row("reduce_sum", 1, "reduction", lambda tf: tf.math.reduce_sum, axis=True),
    _row("reduce_mean", 1, "reduction", lambda tf: tf.math.reduce_mean, axis=True),
    _row("reduce_prod", 1, "reduction", lambda tf: tf.math.reduce_prod, axis=True),
    _row("reduce_max", 1, "reduction", lambda tf: tf.math.reduce_max, axis=True),
    _row("reduce_min", 1, "reduction", lambda tf: tf.math.reduce_min, axis=True),
    _row("matmul", 2, "matmul", lambda tf: tf.linalg.matmul),
    _row("transpose", 1, "transpose", lambda tf: tf.transpose),
    _row("stop_gradient", 1, "elementwise", lambda tf: tf.stop_gradient, special="freeze"),
    _row("where", 3, "elementwise", lambda tf: tf.where, special="piecewise"),
)

TABLE: Dict[str, Function] = {row.name: row for row in _ROWS}
if len(TABLE) != len(_ROWS):  # a second row of a name would silently replace the first
    raise ValueError("runner.language.functions: two rows share a name")
