"""Lower a parsed expression to SymPy, node by node, for exact derivatives; imports no TensorFlow.

The same typed tree that :mod:`runner.language.lowering` turns into TensorFlow ops is turned here
into a SymPy expression, through `sympy_functions()`, built from the rows of
:mod:`runner.language.functions` (a table written in code) and the special cases below. No string
ever reaches SymPy's parser (`sympify`/`parse_expr` evaluate Python): every node is built
by calling a SymPy constructor on already-built children.

Only elementwise functions have a SymPy meaning here (`ELEMENTWISE`); a tree that uses a
reduction, `matmul`, `@` or `transpose` is not lowered (`is_elementwise` says so first),
and the finite-difference check covers it instead.

The lowering also records *kink sites*: for the functions whose row has a kink (`abs`, `relu`,
`sign`, `maximum`, `minimum`, `sqrt`), the expression whose zero is a point where the function is not differentiable
(or, for `sqrt`, has an infinite slope). The verifier evaluates them at the point and
hands a hit to the finite-difference check, which tells a real kink from a harmless one.

SymPy is imported lazily, so nothing on the `--help` or config-error path pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Tuple

from runner.language import expression as ex
from runner.language.functions import TABLE, Kink, Special

# Functions of the language that act on each element on its own: those with the elementwise shape rule.
ELEMENTWISE = frozenset(name for name, row in TABLE.items() if row.shape == "elementwise")
# Functions whose derivative has a kink (or an infinite slope) where the argument, or the
# difference of the two arguments, is 0.
_KINKED: Dict[str, Kink] = {name: row.kink for name, row in TABLE.items() if row.kink is not None}
# The special case of a row (`Function.special`) that `SymbolicLowerer.lower` handles itself: a
# fresh symbol with the argument's value and no derivative. The others are in `special_forms()`.
FREEZE: Special = "freeze"


def is_elementwise(expr: ex.Expr) -> bool:
    """True when every operation in `expr` acts elementwise (no reductions, matmul, @, transpose)."""
    return not any(
        (isinstance(node, ex.Binary) and node.op == "@") or (isinstance(node, ex.Call) and node.func not in ELEMENTWISE)
        for node in ex.walk(expr)
    )


def sympy_functions() -> Dict[str, Callable[..., Any]]:
    """The table: function name of the language -> a function building its SymPy expression.

    Built from the rows' SymPy forms, plus the special cases written here in code
    (`special_forms`); `stop_gradient` is not in it, `SymbolicLowerer` freezes it.
    """
    import sympy as sp

    forms = special_forms()
    table: Dict[str, Callable[..., Any]] = {}
    for name, row in TABLE.items():
        if row.sympy is not None:
            table[name] = row.sympy(sp)
        elif row.special is not None and row.special in forms:
            table[name] = forms[row.special]
    return table


def special_forms() -> Dict[str, Callable[..., Any]]:
    """Special tag -> the function building its SymPy expression (all but `FREEZE`)."""
    import sympy as sp

    return {
        "bounded_pow": bounded_pow,
        "piecewise": lambda c, a, b: sp.Piecewise((a, c), (b, True)),
    }


def bounded_pow(a: Any, b: Any) -> Any:
    """`a ** b`, with a power of two numbers computed in float64, as TensorFlow would.

    SymPy folds Integer ** Integer exactly: `10 ** 10 ** 10 ** 10` would never finish.
    The run itself computes it in floating point (giving inf), and so does its check.
    """
    import numpy as np
    import sympy as sp

    if not (getattr(a, "is_Number", False) and getattr(b, "is_Number", False)):
        return a**b
    with np.errstate(all="ignore"):
        v = float(np.power(np.float64(float(a)), np.float64(float(b))))
    if np.isnan(v):
        return sp.nan
    if np.isinf(v):
        return sp.oo if v > 0 else -sp.oo
    return sp.Float(v, 17)


def _binary_ops() -> Dict[str, Callable[[Any, Any], Any]]:
    import sympy as sp

    return {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        # a * b**-1, not a / b: SymPy raises ZeroDivisionError on Float(1) / Float(0)
        "/": lambda a, b: sp.Mul(a, sp.Pow(b, -1)),
        "**": bounded_pow,
        "<": sp.StrictLessThan,
        "<=": sp.LessThan,
        ">": sp.StrictGreaterThan,
        ">=": sp.GreaterThan,
        "==": sp.Eq,
        "!=": sp.Ne,
    }


@dataclass
class Lowered:
    """A SymPy expression, its kink sites, and the stop_gradient arguments it froze."""

    expr: Any
    kinks: List[Tuple[str, Any]] = field(default_factory=list)  # (description, expression zero at a kink)
    frozen: Dict[Any, Any] = field(default_factory=dict)  # fresh symbol -> the expression it stands for


class SymbolicLowerer:
    """Lowers trees against `env` (name -> SymPy expression); `stop_gradient(u)` becomes a fresh symbol.

    A frozen symbol has the value of `u` at the point and no derivative, which is what
    TensorFlow's `stop_gradient` means for the tape.
    """

    def __init__(self, env: Mapping[str, Any]):
        import sympy as sp

        self.sp = sp
        self.env = dict(env)
        self.functions = sympy_functions()
        self.ops = _binary_ops()
        self.kinks: List[Tuple[str, Any]] = []
        self.frozen: Dict[Any, Any] = {}

    def lower(self, node: ex.Expr) -> Any:
        sp = self.sp
        if isinstance(node, ex.Num):
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value, 17)
        if isinstance(node, ex.Name):
            if node.id == "pi":
                return sp.pi
            if node.id == "e":
                return sp.E
            return self.env[node.id]
        if isinstance(node, ex.Unary):
            operand = self.lower(node.operand)
            return -operand if node.op == "-" else operand
        if isinstance(node, (ex.Binary, ex.Compare)):
            if node.op == "@":
                raise ValueError("matmul has no elementwise SymPy meaning")
            return self.ops[node.op](self.lower(node.left), self.lower(node.right))
        if isinstance(node, ex.Call):
            args = [self.lower(a) for a in node.args]
            if TABLE[node.func].special == FREEZE:
                sym = sp.Dummy(f"{node.func}{len(self.frozen)}", real=True)
                self.frozen[sym] = args[0]
                return sym
            if node.func not in self.functions:
                raise ValueError(f"{node.func} has no elementwise SymPy meaning")
            if node.func in _KINKED:
                site = args[0] if _KINKED[node.func] == "argument" else args[0] - args[1]
                self.kinks.append((f"{node.func} (column {node.column})", site))
            try:
                return self.functions[node.func](*args)
            except (TypeError, ValueError, ArithmeticError):
                # e.g. Max of a complex constant such as pow(-0.05, 0.05): undefined in the reals
                return sp.nan
        raise TypeError(f"not an expression node: {node!r}")

    def result(self, expr: Any) -> Lowered:
        return Lowered(expr, list(self.kinks), dict(self.frozen))


def evaluate(expr: Any, values: Mapping[Any, float]) -> float:
    """A SymPy expression at a point, as a float64 (NaN where it is complex or undefined)."""
    import sympy as sp

    try:
        v = expr.xreplace({s: sp.Float(float(x), 17) for s, x in values.items()})
        v = v.evalf(17) if not v.is_Number else v
        if v.has(sp.zoo) or v.has(sp.nan):
            return float("nan")
        c = complex(v)
    except (TypeError, ValueError, ArithmeticError):
        # undefined here: 0/0, Max of a complex infinity, a relation SymPy cannot decide
        return float("nan")
    if abs(c.imag) > 1e-12 * max(1.0, abs(c.real)):
        return float("nan")
    return c.real
