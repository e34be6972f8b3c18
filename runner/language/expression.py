"""The expression language of `function.steps`: parsed from an allowlist, never executed; imports no TF or SymPy.

A step such as ``z: y * sin(x) ** 2`` is read by Python's parser into a syntax tree, and
the tree is then copied, node by node, into the small typed tree defined here (`Num`,
`Name`, `Unary`, `Binary`, `Compare`, `Call`). Only the constructs listed below are copied;
anything else (attribute access, subscripts, lambdas, comprehensions, strings, keyword
arguments, calls of anything but an allowlisted function name) is refused with an
`ExpressionError` that names the column. Nothing is evaluated here: `ast.parse` does no
constant folding, so ``10 ** 10 ** 10 ** 10`` parses instantly, and the numbers are only
ever computed by TensorFlow, on tensors.

The language:
  numbers (int or float literals), names (inputs, earlier steps, the constants `pi`, `e`),
  binary ``+ - * / ** @``, unary ``-`` and ``+``, parentheses, one comparison
  ``< <= > >= == !=`` (for `where`), and calls of the functions in `FUNCTIONS`.

This module imports neither TensorFlow nor anything heavy; the TensorFlow meaning of each
construct lives in :mod:`runner.language.lowering`, and everything about a function in
:mod:`runner.language.functions`.
"""

from __future__ import annotations

import ast
import math
import warnings
from dataclasses import dataclass
from typing import Dict, FrozenSet, Iterator, Tuple, Union

from runner.language.functions import TABLE, Signature

# Bounds that keep parsing cheap whatever a config holds.
MAX_LENGTH = 2000
MAX_DEPTH = 64


# The allowlist, one entry per row of the table (runner/language/functions.py): add a function there.
FUNCTIONS: Dict[str, Signature] = {name: row.signature for name, row in TABLE.items()}

CONSTANTS: Dict[str, float] = {"pi": math.pi, "e": math.e}

BINARY_OPS: Dict[type, str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.Pow: "**",
    ast.MatMult: "@",
}
COMPARE_OPS: Dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
UNARY_OPS: Dict[type, str] = {ast.USub: "-", ast.UAdd: "+"}

# Words of the language that a user's input or step may not take as its name.
RESERVED: FrozenSet[str] = frozenset(FUNCTIONS) | frozenset(CONSTANTS)

# What a refused construct is called in an error message.
_FORBIDDEN: Dict[type, str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.Lambda: "lambdas",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.IfExp: "conditional expressions (use where(cond, a, b))",
    ast.BoolOp: "'and'/'or' (use where)",
    ast.NamedExpr: "assignment expressions",
    ast.Starred: "starred arguments",
    ast.List: "list literals (declare tensors as points)",
    ast.Tuple: "tuples",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slices",
}


# What a call of something other than a name calls, in an error message.
_CALLEES: Dict[type, str] = {
    ast.Attribute: "an attribute (a method)",
    ast.Subscript: "a subscript",
    ast.Lambda: "a lambda",
    ast.Call: "the result of a call",
}


class ExpressionError(ValueError):
    """A step's expression is not in the language; `column` is 1-based, or None."""

    def __init__(self, message: str, text: str, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.text = text
        self.column = column

    def __str__(self) -> str:
        where = f" (column {self.column})" if self.column else ""
        return f"{self.message}{where}"

    def pointer(self, width: int = 80) -> str:
        """The expression with a caret under the fault, for a second line of an error; a
        longer one is shown as the `width` characters around the fault, cut ends marked '...'."""
        col = (self.column or 1) - 1
        start = max(0, min(col - width // 2, len(self.text) - width))
        shown = self.text[start : start + width]
        lead, tail = ("..." if start else ""), ("..." if start + width < len(self.text) else "")
        line = lead + shown + tail
        return line if not self.column else f"{line}\n{' ' * (len(lead) + col - start)}^"


# ---- the typed tree -------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: Union[int, float]
    column: int


@dataclass(frozen=True)
class Name:
    id: str
    column: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: "Expr"
    column: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: "Expr"
    right: "Expr"
    column: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: "Expr"
    right: "Expr"
    column: int


@dataclass(frozen=True)
class Call:
    func: str
    args: Tuple["Expr", ...]
    axis: int | None
    column: int


Expr = Union[Num, Name, Unary, Binary, Compare, Call]


# ---- parsing --------------------------------------------------------------------------


def parse(text: str) -> Expr:
    """Parse one expression into the typed tree, or raise `ExpressionError`."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be a string, not {type(text).__name__}", str(text))
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}", text[:60] + "..."
        )
    if not text.strip():
        raise ExpressionError("empty expression", text)
    _check_bracket_depth(text)
    try:
        # Python's tokenizer warns, and parses on, where a literal runs into a name (`1if x
        # else 2`, `1x`: "invalid decimal literal"): here that is a syntax error, not a
        # warning printed to stderr. (catch_warnings is the parse's alone: configs are read
        # in the main thread.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", SyntaxWarning)
            warnings.simplefilter("error", DeprecationWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        col = err.offset if err.offset else None
        raise ExpressionError(f"syntax error: {err.msg}", text.strip(), col) from None
    except (MemoryError, RecursionError, ValueError) as err:
        raise ExpressionError(f"cannot parse: {type(err).__name__}", text.strip()) from None
    return _Converter(text.strip()).convert(tree.body, depth=0)


def _check_bracket_depth(text: str) -> None:
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionError(f"brackets nested deeper than {MAX_DEPTH} levels", text[:80], i + 1)
        elif ch in ")]}":
            depth -= 1


class _Converter:
    def __init__(self, text: str):
        self.text = text

    def fail(self, message: str, node: ast.AST) -> ExpressionError:
        col = getattr(node, "col_offset", None)
        return ExpressionError(message, self.text, None if col is None else col + 1)

    def convert(self, node: ast.AST, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise self.fail(
                f"nesting deeper than {MAX_DEPTH} levels (each operation of a chain such as a + b + c counts one)", node
            )
        col = getattr(node, "col_offset", 0) + 1
        d = depth + 1
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                what = "string literals are" if isinstance(v, (str, bytes)) else f"the literal {v!r} is"
                raise self.fail(f"{what} not allowed; only numbers", node)
            if isinstance(v, int) and not _fits_float(v):  # TensorFlow fails on it; a float gives inf
                digits = str(abs(v))
                raise self.fail(
                    f"the number {digits[:12]}... ({len(digits)} digits) is too large for any float type", node
                )
            return Num(v, col)
        if isinstance(node, ast.Name):
            return Name(node.id, col)
        if isinstance(node, ast.UnaryOp):
            op = UNARY_OPS.get(type(node.op))
            if op is None:
                raise self.fail(f"operator {_op_text(node.op)!r} is not allowed", node)
            return Unary(op, self.convert(node.operand, d), col)
        if isinstance(node, ast.BinOp):
            op = BINARY_OPS.get(type(node.op))
            if op is None:
                raise self.fail(f"operator {_op_text(node.op)!r} is not allowed; use + - * / ** @", node)
            return Binary(op, self.convert(node.left, d), self.convert(node.right, d), col)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.fail("chained comparisons are not allowed", node)
            op = COMPARE_OPS.get(type(node.ops[0]))
            if op is None:
                raise self.fail(f"comparison {_op_text(node.ops[0])!r} is not allowed", node)
            return Compare(op, self.convert(node.left, d), self.convert(node.comparators[0], d), col)
        if isinstance(node, ast.Call):
            return self.convert_call(node, d, col)
        what = _FORBIDDEN.get(type(node), type(node).__name__)
        raise self.fail(f"{what} not allowed in expressions", node)

    def convert_call(self, node: ast.Call, depth: int, col: int) -> Call:
        if not isinstance(node.func, ast.Name):
            what = _CALLEES.get(type(node.func), "this expression")
            raise self.fail(f"only allowlisted functions can be called, by name; calling {what} is not allowed", node)
        fname = node.func.id
        sig = FUNCTIONS.get(fname)
        if sig is None:
            raise self.fail(f"unknown function {fname!r}; allowed: {', '.join(sorted(FUNCTIONS))}", node)
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed; call {sig.describe(fname)}", node.keywords[0].value)
        args = list(node.args)
        axis = None
        if sig.axis and len(args) == sig.tensors + 1:
            axis = _int_literal(args.pop())
            if axis is None:
                raise self.fail(f"the axis of {fname} must be an integer literal", node.args[-1])
        if len(args) != sig.tensors:
            raise self.fail(f"{fname} takes {sig.describe(fname)}, got {len(node.args)} argument(s)", node)
        return Call(fname, tuple(self.convert(a, depth) for a in args), axis, col)


def _fits_float(v: int) -> bool:
    """Whether an int rounds to a float64: 2**1024 - 1 does not, though its 1024 bits look as
    if it did (anything from 2**1024 - 2**970 rounds up to 2**1024, which overflows)."""
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _int_literal(node: ast.AST) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _int_literal(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _op_text(op: ast.AST) -> str:
    return {
        ast.FloorDiv: "//",
        ast.Mod: "%",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.Invert: "~",
        ast.Not: "not",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
    }.get(type(op), type(op).__name__)


# ---- queries on the tree --------------------------------------------------------------


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of the expression, the root first (depth first)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Unary):
            stack.append(node.operand)
        elif isinstance(node, (Binary, Compare)):
            stack.extend((node.left, node.right))
        elif isinstance(node, Call):
            stack.extend(node.args)


def names(expr: Expr) -> Dict[str, int]:
    """Every name the expression uses (not functions), with the column of its first use."""
    found: Dict[str, int] = {}
    for node in walk(expr):
        if isinstance(node, Name) and node.column < found.get(node.id, node.column + 1):
            found[node.id] = node.column
    return found
