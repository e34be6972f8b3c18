"""SymPy formulas run over a chunk of the grid as NumPy ufunc calls into reused buffers.

`sympy.lambdify` writes formulas as Python source, and each operation of it makes a new
array: over a 10^7-point grid in chunks that is a fresh allocation per operation per chunk
(which the C library hands back to the system and faults in again) and a copy of each result
into the grid. Here the formulas, their common subexpressions shared (`sympy.cse`), become a
list of steps (a ufunc, its arguments, where it writes) over a few buffers each thread reuses
chunk after chunk; a formula's last step writes straight into its place in the grid. No
source is generated or run. A formula with a node that RULES (or the constant, Add, Mul and
Pow rules of `_value`) do not know gives no program: the caller uses lambdify then.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

# SymPy's function (by class name) -> the ufunc that computes it elementwise in float64, each
# n-ary one folded left to right. Extension point: a language function whose SymPy image or
# derivative uses a class not here is computed by lambdify (slower; tests/test_formula_program.py
# lists the ones NumPy can spell and fails when a row is missing).
RULES: Dict[str, np.ufunc] = {
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "exp": np.exp,
    "log": np.log,
    "Abs": np.absolute,
    "sign": np.sign,
    "atan2": np.arctan2,
    "Max": np.maximum,
    "Min": np.minimum,
    "Heaviside": np.heaviside,
}
# Heaviside(x) without its value at 0: SymPy's default, 1/2
HEAVISIDE_AT_0 = 0.5


class Unsupported(Exception):
    """A node the program cannot compute (lambdify is used)."""


Operand = Tuple[bool, Any]  # (True, slot) or (False, a float constant)


@dataclass(frozen=True)
class Step:
    ufunc: np.ufunc
    operands: Tuple[Operand, ...]
    slot: int  # where it writes: a buffer, or with `result` set that formula's output
    result: Optional[int] = None


@dataclass(frozen=True)
class Program:
    """Steps over `slots` buffers (slots below `inputs` are the arguments); `results[i]` is
    formula i's value when no step writes it into its output (then copied there)."""

    inputs: int
    slots: int
    steps: Tuple[Step, ...]
    results: Tuple[Optional[Operand], ...]

    def run(self, args: Sequence[np.ndarray], outs: Sequence[np.ndarray], scratch: "Scratch") -> None:
        """Formula i's values into `outs[i]` (each of the chunk's shape), `args` in the order
        of the symbols the program was built for."""
        shape = outs[0].shape if outs else np.shape(args[0])
        vals: List[Any] = list(args) + scratch.take(self.slots - self.inputs, shape, "program")
        for st in self.steps:
            dest = outs[st.result] if st.result is not None else vals[st.slot]
            st.ufunc(*(vals[v] if is_slot else v for is_slot, v in st.operands), out=dest)
        for i, r in enumerate(self.results):
            if r is not None:
                np.copyto(outs[i], vals[r[1]] if r[0] else r[1])


class Scratch:
    """Buffers (float64 unless `dtype` says) each thread reuses from chunk to chunk (no
    allocation per chunk), one set per purpose."""

    def __init__(self) -> None:
        self._local = threading.local()

    def take(self, count: int, shape: Tuple[int, ...], purpose: str, dtype: Any = np.float64) -> List[np.ndarray]:
        n = int(np.prod(shape, dtype=np.int64))
        held: Dict[str, np.ndarray] = self._local.__dict__.setdefault("held", {})
        flat = held.get(purpose)
        if flat is None or flat.shape[0] < count or flat.shape[1] < n or flat.dtype != dtype:
            flat = held[purpose] = np.empty((count, n), dtype=dtype)
        return [flat[i, :n].reshape(shape) for i in range(count)]


def build(sp: Any, formulas: Sequence[Any], symbols: Sequence[Any]) -> Optional[Program]:
    """The program computing `formulas` of `symbols`, or None when a node is not known."""
    try:
        return _Builder(sp, symbols).program(formulas)
    except Exception:  # Unsupported, or what SymPy raises (cse of AccumBounds, an int too large): lambdify's path
        return None


class _Builder:
    def __init__(self, sp: Any, symbols: Sequence[Any]) -> None:
        self.sp = sp
        self.values: Dict[Any, Operand] = {s: (True, i) for i, s in enumerate(symbols)}
        self.inputs = len(symbols)
        self.ops: List[Tuple[np.ufunc, Tuple[Operand, ...]]] = []  # node k is slot inputs + k

    def program(self, formulas: Sequence[Any]) -> Program:
        shared, reduced = self.sp.cse(list(formulas))
        for name, expr in shared:
            self.values[name] = self._value(expr)
        finals = [self._value(e) for e in reduced]
        return _allocate(self.inputs, self.ops, finals)

    def _emit(self, ufunc: np.ufunc, *operands: Operand) -> Operand:
        self.ops.append((ufunc, operands))
        return True, self.inputs + len(self.ops) - 1

    def _fold(self, ufunc: np.ufunc, operands: List[Operand]) -> Operand:
        acc = operands[0]
        for o in operands[1:]:
            acc = self._emit(ufunc, acc, o)
        return acc

    def _value(self, e: Any) -> Operand:
        if e in self.values:
            return self.values[e]
        if not e.free_symbols:
            try:
                c = complex(e)
            except (TypeError, ValueError):
                raise Unsupported(str(e)) from None
            if c.imag != 0.0:
                raise Unsupported(str(e))
            return False, c.real
        if e.is_Symbol:
            raise Unsupported(f"the symbol {e} is not an argument")
        if e.is_Add:  # terms and factors in the order lambdify prints them (the same roundings)
            v = self._fold(np.add, [self._value(a) for a in e.as_ordered_terms()])
        elif e.is_Mul:
            v = self._product(e.as_ordered_factors())
        elif e.is_Pow:
            v = self._power(e.base, e.exp)
        else:
            ufunc = RULES.get(type(e).__name__)
            if ufunc is None or (ufunc.nin == 1 and len(e.args) != 1):
                raise Unsupported(type(e).__name__)
            operands = [self._value(a) for a in e.args]
            if ufunc is np.heaviside and len(operands) == 1:
                operands.append((False, HEAVISIDE_AT_0))
            v = self._emit(ufunc, *operands) if ufunc.nin == len(operands) else self._fold(ufunc, operands)
        self.values[e] = v
        return v

    def _product(self, factors: List[Any]) -> Operand:
        """As lambdify prints a product: a / (b * c) for a * b**-1 * c**-1 (one rounding, and
        no overflow of 1/c where a / c is finite)."""
        num = [f for f in factors if not (f.is_Pow and f.exp.is_Rational and f.exp.is_negative)]
        den = [f.base if f.exp == -1 else self.sp.Pow(f.base, -f.exp, evaluate=False) for f in factors if f not in num]
        top = self._fold(np.multiply, [self._value(f) for f in num]) if num else (False, 1.0)
        return self._emit(np.divide, top, self._fold(np.multiply, [self._value(f) for f in den])) if den else top

    def _power(self, base: Any, exponent: Any) -> Operand:
        b = self._value(base)
        if exponent.free_symbols:
            return self._emit(np.power, b, self._value(exponent))
        if not exponent.is_real:  # a complex exponent: lambdify's complex numbers
            raise Unsupported(str(exponent))
        q = float(exponent)
        if q == -0.5:  # lambdify's 1/sqrt(b): at -inf and -0.0 NaN and -inf, where b**-0.5 gives 0 and inf
            return self._emit(np.divide, (False, 1.0), self._emit(np.sqrt, b))
        if q == 2.0:
            return self._emit(np.square, b)
        if q == 0.5:
            return self._emit(np.sqrt, b)
        if q == -1.0:
            return self._emit(np.divide, (False, 1.0), b)
        return self._emit(np.power, b, (False, q))


def _allocate(inputs: int, ops: List[Tuple[np.ufunc, Tuple[Operand, ...]]], finals: List[Operand]) -> Program:
    """Buffers for the nodes, reused once a node's last reader has run; a node that is one
    formula's value and read by nothing else is written into that formula's output."""
    last: Dict[int, int] = {}
    for k, (_, operands) in enumerate(ops):
        for is_slot, v in operands:
            if is_slot:
                last[v] = k
    direct: Dict[int, int] = {}  # node slot -> the formula it is written into
    for i, f in enumerate(finals):
        if f[0] and f[1] >= inputs and f[1] not in last and [g for g in finals if g == f] == [f]:
            direct[f[1]] = i
    kept = {f[1] for f in finals if f[0] and f[1] not in direct}
    free: List[int] = []
    where: Dict[int, int] = {i: i for i in range(inputs)}  # a node's slot -> its buffer
    slots = inputs
    steps: List[Step] = []
    for k, (ufunc, operands) in enumerate(ops):
        node = inputs + k
        mapped = tuple((True, where[v]) if is_slot else (False, v) for is_slot, v in operands)
        for is_slot, v in operands:  # read for the last time here: its buffer may take the result
            if is_slot and v >= inputs and last.get(v) == k and v not in kept and where[v] not in free:
                free.append(where[v])
        if node in direct:
            steps.append(Step(ufunc, mapped, -1, direct[node]))
            continue
        if free:
            where[node] = free.pop()
        else:
            where[node], slots = slots, slots + 1
        steps.append(Step(ufunc, mapped, where[node]))
    results = tuple(None if f[0] and f[1] in direct else ((True, where[f[1]]) if f[0] else f) for f in finals)
    return Program(inputs, slots, tuple(steps), results)
