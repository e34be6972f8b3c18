"""Lower a parsed expression to TensorFlow: each tree node becomes a closure over TF ops; imports no SymPy.

The closures are built once per step; evaluating a step is then a walk of plain function
calls on tensors. Every function name resolves through `TF_FUNCTIONS`, built from the
rows of :mod:`runner.language.functions`, a table written in code: config text chooses
among its entries, never reaches past them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import tensorflow as tf

from runner.language import expression as ex
from runner.language.functions import TABLE

Env = Dict[str, tf.Tensor]
Evaluator = Callable[[Env], Any]

# Resolved here, where TensorFlow is imported anyway, so a row naming no real op fails at import.
TF_FUNCTIONS: Dict[str, Callable] = {name: row.tf(tf) for name, row in TABLE.items()}

_BINARY: Dict[str, Callable] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
    "@": tf.linalg.matmul,
}
_COMPARE: Dict[str, Callable] = {
    "<": tf.math.less,
    "<=": tf.math.less_equal,
    ">": tf.math.greater,
    ">=": tf.math.greater_equal,
    "==": tf.math.equal,
    "!=": tf.math.not_equal,
}


def lower(expr: ex.Expr, constants_dtype: tf.DType) -> Evaluator:
    """A function env -> tensor computing `expr`, where env maps names to tensors."""
    return _Lowerer(constants_dtype).lower(expr)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float))


class _Lowerer:
    def __init__(self, dtype: tf.DType):
        self.dtype = dtype

    def literal(self, v: object, like: object = None) -> tf.Tensor:
        """A Python number as a tensor: of `like`'s dtype if given, else the constants dtype.

        Numbers never meet other numbers in Python arithmetic: `10 ** 10 ** 10 ** 10` is
        computed by TensorFlow (giving inf) instead of hanging the process.
        """
        dtype = like.dtype if isinstance(like, (tf.Tensor, tf.Variable)) and like.dtype != tf.bool else self.dtype
        if isinstance(v, int) and dtype.is_integer and not dtype.min <= v <= dtype.max:
            # TensorFlow would fail on it, or (int32, within int64) wrap it around silently
            digits = str(v) if len(str(v)) <= 24 else f"{str(v)[:12]}... ({len(str(v))} digits)"
            raise ValueError(f"the number {digits} does not fit {dtype.name}, the type it meets here")
        if isinstance(v, int) and not -(2**63) <= v < 2**63:
            v = float(v)  # TensorFlow reads a Python int through int64 for bfloat16, and fails
        return tf.constant(v, dtype=dtype)

    def lower(self, node: ex.Expr) -> Evaluator:
        if isinstance(node, ex.Num):
            value = node.value
            return lambda env: value
        if isinstance(node, ex.Name):
            name = node.id
            if name in ex.CONSTANTS:
                const = ex.CONSTANTS[name]
                return lambda env: const
            return lambda env: env[name]
        if isinstance(node, ex.Unary):
            operand = self.lower(node.operand)
            if node.op == "+":
                return operand
            return lambda env: self._negate(operand(env))
        if isinstance(node, ex.Binary):
            return self._binary(_BINARY[node.op], self.lower(node.left), self.lower(node.right))
        if isinstance(node, ex.Compare):
            return self._binary(_COMPARE[node.op], self.lower(node.left), self.lower(node.right))
        if isinstance(node, ex.Call):
            return self._call(node)
        raise TypeError(f"not an expression node: {node!r}")  # unreachable for parsed trees

    def _negate(self, v: Any) -> Any:
        return -self.literal(v) if _is_number(v) else -v

    def _binary(self, op: Callable, left: Evaluator, right: Evaluator) -> Evaluator:
        def run(env: Env) -> object:
            a, b = left(env), right(env)
            if _is_number(a) and _is_number(b):
                a = self.literal(a)
            if _is_number(a) and not _is_number(b):
                a = self.literal(a, like=b)
            elif _is_number(b):
                b = self.literal(b, like=a)
            return op(a, b)

        return run

    def _call(self, node: ex.Call) -> Evaluator:
        fn = TF_FUNCTIONS[node.func]
        args = [self.lower(a) for a in node.args]
        axis = node.axis

        def run(env: Env) -> object:
            values = [a(env) for a in args]
            like = next((v for v in values if not _is_number(v) and v.dtype != tf.bool), None)
            values = [self.literal(v, like) if _is_number(v) else v for v in values]
            if axis is not None:
                return fn(*values, axis=axis)
            return fn(*values)

        return run
