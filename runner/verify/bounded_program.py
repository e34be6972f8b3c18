"""A formula program (runner/verify/formula_program.py) run over a chunk in float32, each value
carried with a bound on its distance from the exact value of its formula at the (exact) float32
inputs: |v - exact| <= r |v| + c at every element of the chunk, r and c two numbers per step.

float64's sin, cos, exp and log are scalar C library calls; float32's are NumPy's vector code,
several times faster. A float32 grid's derivative is judged with rtol 1e-4 (runner/verify/compare.py),
some 800 float32 ulps: a float32 reference whose error is known to be far smaller settles most
elements at a fraction of the cost (runner/verify/chunk_screen.py), float64 settling the rest.

The bound is a running error analysis over the chunk: each step's (r, c) is what its operands'
bounds can move its exact result (from the operands' extremes over the chunk, a reduction, not
an array of bounds) plus its own rounding: `BASIC` ulps of the result for arithmetic (IEEE
rounds it correctly), `ULPS` for a function (NumPy's and the C library's float32 functions claim
at most 4), and `FLOOR` absolutely (underflow, subnormals flushed). Where an operand's interval
may reach a pole, a branch cut or the edge of a domain anywhere in the chunk, c is infinite:
float64 decides the chunk. Bounds are taken in float64, the values' extremes read in float32.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from runner.verify.formula_program import Program, Scratch

F32 = np.float32
U = 2.0**-24  # float32's unit roundoff
BASIC = 2.0  # ulps of a correctly rounded operation's result (one of slack)
ULPS = 16.0  # ulps of a float32 function's result (4 times what NumPy and glibc claim)
FLOOR = 2.0**-60  # absolute, per rounded step
GROW = 1.0 + 2.0**-12  # a bound times this covers |exact operands' result| against |v| (ULPS ulps)
INF = math.inf

Bound = Tuple[float, float]  # (r, c): |v - exact| <= r |v| + c at every element
EXACT: Bound = (0.0, 0.0)
Operand = Tuple[Any, Bound]
# (operands) -> the step's bound before its own rounding; read before the step writes its value
Rule = Callable[[Sequence[Operand]], Bound]


def _top(x: Any) -> float:
    """max |x| over the chunk (NaN left out: those elements are never settled)."""
    a = np.asarray(x)
    return max(float(np.fmax.reduce(a, axis=None)), -float(np.fmin.reduce(a, axis=None)), 0.0) if a.size else 0.0


def _lowest(x: Any) -> float:
    """min x over the chunk (NaN left out)."""
    return float(np.fmin.reduce(np.asarray(x), axis=None))


def _least(x: Any) -> float:
    """min |x| over the chunk: 0 where it changes sign."""
    a = np.asarray(x)
    lo, hi = float(np.fmin.reduce(a, axis=None)), float(np.fmax.reduce(a, axis=None))
    return lo if lo > 0 else (-hi if hi < 0 else 0.0)


def _over(a: float, b: float) -> float:
    """a / b for a > 0, b >= 0: infinite at b = 0."""
    return a / b if b > 0.0 else INF


def _most(op: Operand) -> float:
    """The largest absolute error of an operand over the chunk: r max|x| + c."""
    x, (r, c) = op
    return r * _top(x) + c if r else c


def _inexact(op: Operand) -> bool:
    return op[1] != EXACT


def _signs(x: Any) -> int:
    """1 where every element of x is >= 0, -1 where every one is <= 0, else 0."""
    a = np.asarray(x)
    if float(np.fmin.reduce(a, axis=None)) >= 0.0:
        return 1
    return -1 if float(np.fmax.reduce(a, axis=None)) <= 0.0 else 0


def _adding(negate: bool) -> Rule:
    """a + b (a - b): where the terms share a sign over the chunk, |a| + |b| = |a + b| and the
    relative errors stay relative (max(ra, rb)); else each term's largest error adds."""

    def rule(ops: Sequence[Operand]) -> Bound:
        (a, (ra, ca)), (b, (rb, cb)) = ops
        if not (ra or rb):
            return 0.0, ca + cb
        sa, sb = _signs(a), _signs(b) * (-1 if negate else 1)
        if sa == sb != 0:
            return max(ra, rb) * GROW, ca + cb
        return 0.0, _most(ops[0]) + _most(ops[1])

    return rule


def _multiply(ops: Sequence[Operand]) -> Bound:
    """|a b - a* b*| <= (ra + rb + ra rb) |a b| + cb |a| (1 + ra) + ca |b| (1 + rb) + ca cb."""
    (a, (ra, ca)), (b, (rb, cb)) = ops
    c = (cb * _top(a) * (1 + ra) if cb else 0.0) + (ca * _top(b) * (1 + rb) if ca else 0.0) + ca * cb
    return (ra + rb + ra * rb) * GROW, c


def _divide(ops: Sequence[Operand]) -> Bound:
    """(|da| + |a/b| |db|) / |b*|, |b*| >= |b| (1 - rb - cb / min|b|)."""
    (a, (ra, ca)), (b, (rb, cb)) = ops
    if not (ca or cb or rb):
        return ra * GROW, 0.0
    least = _least(b)
    q = _over(cb, least) if cb else 0.0
    den = 1.0 - rb - q
    if not den > 0.0:
        return 0.0, INF
    return (ra + rb + q) / den * GROW, (_over(ca, least) / den if ca else 0.0)


def _relative_power(q: float) -> Rule:
    """a**q, q a constant: a* = a (1 + e), |e| <= ra + ca / min|a|, moves it by |a**q| |(1 + e)**q - 1|.
    Where min|a| is too small for that: for 0 < q < 1, at most ea**q (Hoelder); for q >= 1 the
    slope |q| x**(q - 1) at the largest |a| + ea; for q < 0, unbounded (a pole)."""

    def rule(ops: Sequence[Operand]) -> Bound:
        a, (ra, ca) = ops[0]
        if not _inexact(ops[0]) or q == 0.0:
            return EXACT
        if q == 2.0:
            return _multiply([ops[0], ops[0]])
        eps = ra + (_over(ca, _least(a)) if ca else 0.0)
        if eps < 1.0:  # a* has a's sign
            return max(abs((1 + eps) ** q - 1), abs((1 - eps) ** q - 1)) * GROW, 0.0
        ea = _most(ops[0])
        if q != int(q) and not _lowest(a) - ea >= 0.0:
            return 0.0, INF  # a* may be negative, where a fractional power is not real
        if 0.0 < q < 1.0:
            return 0.0, ea**q * GROW
        return (0.0, abs(q) * (_top(a) + ea) ** (q - 1) * ea * GROW) if q >= 1.0 else (0.0, INF)

    return rule


def _constant_power(q: float, dq: float, op: Operand) -> Bound:
    """a**q32, q32 the exponent as float32 holds it, dq its distance from the exact q: a*^q =
    a*^q32 a*^(q - q32), a further relative |a*^(q - q32) - 1| <= e**(dq max|log a*|) - 1."""
    r, c = _relative_power(q)([op])
    if not dq:
        return r, c
    a, (ra, ca) = op
    eps = ra + (_over(ca, _least(a)) if ca else 0.0)
    least, top = _least(a) * (1 - eps), _top(a) * (1 + eps)
    if c or not (eps < 1.0 and least > 0.0):
        return 0.0, INF
    grow = math.expm1(dq * max(abs(math.log(least)), abs(math.log(top))))
    return (r + grow + r * grow) * GROW, 0.0


def _power(ops: Sequence[Operand]) -> Bound:
    """a**q for a constant q; a**b = exp(b log a) where a > 0 over the chunk: b log a moves by
    at most w = eb max|log a| + (max|b| + eb) dlog, dlog = -log(1 - ra - ca / min a), so a**b
    by |a**b| (e**w - 1)."""
    (a, (ra, ca)), (b, (_, dq)) = ops
    if np.ndim(b) == 0:
        return _constant_power(float(b), dq, ops[0])
    if not any(_inexact(o) for o in ops):
        return EXACT
    lo, hi = _lowest(a), float(np.fmax.reduce(np.asarray(a), axis=None))
    eps = ra + (_over(ca, lo) if ca else 0.0) if lo > 0.0 else INF
    if not eps < 1.0:
        return 0.0, INF
    dlog, eb = -math.log1p(-eps), _most(ops[1])
    w = eb * max(abs(math.log(lo)), abs(math.log(hi))) + (_top(b) + eb) * dlog
    return (math.expm1(w) * GROW, 0.0) if w < 700.0 else (0.0, INF)


def _lipschitz(ops: Sequence[Operand]) -> Bound:
    """A function whose slope is at most 1 everywhere (sin, cos, atan, tanh, asinh)."""
    return 0.0, _most(ops[0])


def _growing(sinh: bool) -> Rule:
    """exp and cosh: moved by at most |v| (e**ea - 1); sinh by that plus sinh(ea)."""

    def rule(ops: Sequence[Operand]) -> Bound:
        if not _inexact(ops[0]):
            return EXACT
        ea = _most(ops[0])
        if not ea < 700.0:
            return 0.0, INF
        return math.expm1(ea) * GROW, (math.sinh(ea) * GROW if sinh else 0.0)

    return rule


def _log(ops: Sequence[Operand]) -> Bound:
    """|log(a*) - log(a)| <= -log(1 - e), |e| <= ra + ca / min a (a > 0 over the chunk)."""
    a, (ra, ca) = ops[0]
    if not _inexact(ops[0]):
        return EXACT
    lo = _lowest(a)
    eps = ra + (_over(ca, lo) if ca else 0.0) if lo > 0 else INF
    return (0.0, -math.log1p(-eps) * GROW) if eps < 1.0 else (0.0, INF)


def _slope(bound: Callable[[Any, float], float]) -> Rule:
    """A function whose slope over the chunk's intervals is at most `bound(a, ea)` (inf: unknown)."""

    def rule(ops: Sequence[Operand]) -> Bound:
        if not _inexact(ops[0]):
            return EXACT
        ea = _most(ops[0])
        slope = bound(ops[0][0], ea)
        return 0.0, (ea * slope * GROW if slope < INF else INF)

    return rule


def _inverse_sqrt(den: float) -> float:
    return 1.0 / math.sqrt(den) if den > 0.0 else INF


def _unit_slope(a: Any, ea: float) -> float:  # asin, acos: 1 / sqrt(1 - x^2)
    return _inverse_sqrt(1.0 - (_top(a) + ea) ** 2)


def _atanh_slope(a: Any, ea: float) -> float:  # 1 / (1 - x^2)
    den = 1.0 - (_top(a) + ea) ** 2
    return 1.0 / den if den > 0.0 else INF


def _acosh_slope(a: Any, ea: float) -> float:  # 1 / sqrt(x^2 - 1), x > 1
    lo = _lowest(a) - ea
    return _inverse_sqrt(lo * lo - 1.0) if lo > 1.0 else INF


def _tan_slope(a: Any, ea: float) -> float:  # 1 / cos^2
    least = _least(np.cos(a)) - ea - ULPS * U
    return 1.0 / (least * least) if least > 0.0 else INF


def _absolute(ops: Sequence[Operand]) -> Bound:
    return ops[0][1]  # |.| moves nothing further


def _extreme(ops: Sequence[Operand]) -> Bound:
    """maximum, minimum: moved at most by the larger of the operands' errors."""
    return (0.0, max(_most(o) for o in ops)) if any(_inexact(o) for o in ops) else EXACT


def _step(jump: float) -> Rule:
    """sign (a jump of 2 at 0) and heaviside (1): exact unless an operand's interval reaches 0."""

    def rule(ops: Sequence[Operand]) -> Bound:
        if not _inexact(ops[0]):
            return EXACT
        return EXACT if _least(ops[0][0]) > _most(ops[0]) else (0.0, jump)

    return rule


def _atan2(ops: Sequence[Operand]) -> Bound:
    """atan2(y, x): slope 1 / r; infinite where a box may reach the origin or the branch cut
    (y = 0, x < 0)."""
    (y, _), (x, _) = ops
    if not any(_inexact(o) for o in ops):
        return EXACT
    ey, ex = _most(ops[0]), _most(ops[1])
    s = ey + ex
    den = _least(np.hypot(y, x)) - s
    cut = _lowest(x) - ex < 0.0 and _least(y) <= ey
    return (0.0, _over(s, den) * GROW) if not cut else (0.0, INF)


# The ufunc -> (how a step's bound follows from its operands', its own rounding in ulps of the
# result). Extension point: a ufunc of formula_program (RULES, or the arithmetic its builder
# emits) with no row here runs no screen (float64 does every element); tests/test_bounded_program.py
# fails when a row is missing.
BOUNDS: Dict[np.ufunc, Tuple[Rule, float]] = {
    np.add: (_adding(False), BASIC),
    np.subtract: (_adding(True), BASIC),
    np.multiply: (_multiply, BASIC),
    np.divide: (_divide, BASIC),
    np.power: (_power, ULPS),
    np.square: (_relative_power(2.0), BASIC),
    np.sqrt: (_relative_power(0.5), BASIC),
    np.sin: (_lipschitz, ULPS),
    np.cos: (_lipschitz, ULPS),
    np.arctan: (_lipschitz, ULPS),
    np.tanh: (_lipschitz, ULPS),
    np.arcsinh: (_lipschitz, ULPS),
    np.tan: (_slope(_tan_slope), ULPS),
    np.arcsin: (_slope(_unit_slope), ULPS),
    np.arccos: (_slope(_unit_slope), ULPS),
    np.arctanh: (_slope(_atanh_slope), ULPS),
    np.arccosh: (_slope(_acosh_slope), ULPS),
    np.log: (_log, ULPS),
    np.exp: (_growing(False), ULPS),
    np.cosh: (_growing(False), ULPS),
    np.sinh: (_growing(True), ULPS),
    np.absolute: (_absolute, 0.0),
    np.sign: (_step(2.0), 0.0),
    np.heaviside: (_step(1.0), 0.0),
    np.maximum: (_extreme, 0.0),
    np.minimum: (_extreme, 0.0),
    np.arctan2: (_atan2, ULPS),
}


def supports(program: Program) -> bool:
    """Whether every step has a bound (a rule) and every constant a float32 value (else every
    element would go to float64)."""
    with np.errstate(over="ignore"):
        for st in program.steps:
            if st.ufunc not in BOUNDS:
                return False
            if any(not is_slot and np.isfinite(c) and not np.isfinite(F32(c)) for is_slot, c in st.operands):
                return False
    return True


def _constant(c: float) -> Operand:
    c32 = F32(c)
    err = abs(float(c) - float(c32)) if np.isfinite(c) else 0.0
    return c32, ((0.0, err * GROW) if err else EXACT)


def run(program: Program, args: Sequence[np.ndarray], scratch: Scratch) -> List[Operand]:
    """Each formula's float32 value over a chunk and its bound, `args` float32 arrays of the
    chunk's shape in the order of the program's symbols (exact); the values are scratch
    buffers the thread's next run overwrites. A step's bound is taken before it writes its
    value, which may go into the buffer of an operand read for the last time."""
    shape = np.shape(args[0])
    vals: List[Any] = list(args) + scratch.take(program.slots - program.inputs, shape, "bounded", F32)
    outs = scratch.take(len(program.results), shape, "bounded-results", F32)
    bounds: List[Bound] = [EXACT] * program.slots
    final: Dict[int, Operand] = {}
    for st in program.steps:
        ops = [(vals[v], bounds[v]) if is_slot else _constant(v) for is_slot, v in st.operands]
        rule, ulps = BOUNDS[st.ufunc]
        try:
            r, c = rule(ops)
        except (OverflowError, ValueError, ZeroDivisionError):  # Python's floats: no bound, float64 decides
            r, c = 0.0, INF
        if ulps:
            r, c = r + ulps * U, c + FLOOR
        dest = outs[st.result] if st.result is not None else vals[st.slot]
        st.ufunc(*(x for x, _ in ops), out=dest)
        if st.result is not None:
            final[st.result] = (dest, (r, c))
        else:
            bounds[st.slot] = (r, c)
    for i, res in enumerate(program.results):
        if res is not None:
            final[i] = (vals[res[1]], bounds[res[1]]) if res[0] else _constant(res[1])
    return [final[i] for i in range(len(program.results))]
