"""A float32 grid's derivative judged against a float32 reference with a bound on its error,
float64 deciding only the elements the bound cannot settle.

On a grid of at least `MIN_ELEMENTS` float32 (or float16) inputs, where TensorFlow's value is
float32 and the formulas are the derivative compared in the pass (chunk_compare's `Against`)
and the target's own value, each chunk runs the formulas in float32 with a running error bound
(runner/verify/bounded_program.py). An element is settled when, for every exact reference d
the bound allows,

    |got - d| <= rtol |d| + atol

holds: |got - v| + e <= rtol (|v| - e) + rtol max(1, the chunk's largest |v| - e), with |v| > e
(atol's scale, the grid's largest |d|, is at least the chunk's). Every other element (near a
zero of d, where v or e is not finite, or where got may disagree) is evaluated again in float64
by the formula program at that element alone, as the float64 pass would. The reference kept is
v widened there, float64's value elsewhere; the errors reported are upper bounds (|got - v| + e).
Same verdicts as the float64 pass; float32's vector sin, cos, exp and log instead of float64's
scalar ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from runner.verify import bounded_program
from runner.verify.chunk_compare import Against
from runner.verify.formula_program import Program, Scratch

# Grids smaller than this are judged in float64 (cheap, and their records exact).
MIN_ELEMENTS = 1 << 20
NARROW = (np.float32, np.float16)  # inputs float32 holds exactly
F32 = np.float32


@dataclass(frozen=True)
class Screen:
    """How to screen a pass: the float64 program (for what the bound cannot settle), which of
    its formulas is compared (`at`) and which is the target's own value (`value`, or None)."""

    program: Program
    against: Against
    at: int
    value: Optional[int]


def plan(
    keys: List[Any], program: Any, arrays: Sequence[np.ndarray], against: Optional[Against], value_key: Any, size: int
) -> Optional[Screen]:
    """The screen for a pass computing `keys` by `program` over `arrays` (the symbols' values),
    or None where it does not apply (float64 judges every element)."""
    if against is None or size < MIN_ELEMENTS or not isinstance(program, Program):
        return None
    if against.got.dtype != np.float32 or against.key not in keys or set(keys) - {against.key, value_key}:
        return None
    if any(np.asarray(a).dtype.type not in NARROW for a in arrays) or not bounded_program.supports(program):
        return None
    value = keys.index(value_key) if value_key in keys else None
    return Screen(program, against, keys.index(against.key), value)


# (per formula: the points float64 gives no finite value at; the comparison, as
# chunk_compare.compared gives it, or None; the elements settled by the bound; the flat places
# of the others, at most `KEEP` of them)
Found = Tuple[Dict[Any, Tuple[int, np.ndarray]], Optional[Tuple[float, float, float, float]], int, np.ndarray]
KEEP = 65


def piece(
    screen: Screen,
    keys: List[Any],
    views: Sequence[Any],
    outs: Dict[Any, np.ndarray],
    key: Any,
    start: int,
    n: int,
    scratch: Scratch,
) -> Found:
    """A chunk screened: each formula's reference written into `outs[k][key]` (the derivative's;
    the target's own value is not kept), and what `Found` says."""
    if n == 0:
        return {}, (-1.0, 0.0, 0.0, -np.inf), 0, NONE
    here = np.shape(views[0])
    args = [v if v.dtype == F32 else _narrowed(v, scratch, i) for i, v in enumerate(views)]
    results = bounded_program.run(screen.program, args, scratch)
    rtol = screen.against.rtol
    got = screen.against.got[key]
    v, (r, c) = results[screen.at]
    d, av, t = scratch.take(3, here, "screen", F32)
    np.abs(v, out=av)
    top = float(np.fmax.reduce(av, axis=None))
    out = outs.get(screen.against.key)
    if out is not None:
        np.copyto(out[key], v)
    ok: Any = None
    if np.isfinite(top) and np.isfinite(c) and r < 0.5:
        # |got - v| + r |v| + c <= rtol (|v| (1 - r) - c) + atol, with |v| (1 - r) > c:
        # |got - v| - alpha |v| <= beta, both shrunk for float32's roundings of the two sides
        atol = rtol * max(1.0, top * (1 - r) - c)
        alpha, beta = rtol * (1 - r) - r, atol - c * (1 + rtol)
        alpha, beta = alpha - abs(alpha) * SHRINK, beta - abs(beta) * SHRINK
        least = c / (1 - r) * (1 + SHRINK)  # |v| above it: the reference's sign is known
        np.subtract(got, v, out=d)
        np.abs(d, out=d)
        np.multiply(av, F32(alpha), out=t)
        np.subtract(d, t, out=t)
        value = True
        if screen.value is not None:  # the target's own value, known finite
            fv, (_, fc) = results[screen.value]
            value = bool(np.isfinite(fc) and np.isfinite(np.max(fv)) and np.isfinite(np.min(fv)))
        # the chunk at once where it can (reductions; NaN fails them), else element by element
        small = float(np.min(av))
        if value and float(np.max(t)) <= beta and small > least:
            return {}, _bounds(d, av, t, r, c, rtol, None, (top, small)), n, NONE
        ok = t <= F32(beta)
        ok &= av > F32(least)
        if not value:
            ok &= np.isfinite(fv) if np.isfinite(fc) else False
    settled = int(np.count_nonzero(ok)) if ok is not None else 0
    bounds = _bounds(d, av, t, r, c, rtol, ok) if settled else None
    rest = np.flatnonzero(~ok) if ok is not None else np.arange(n)
    return _exact(screen, keys, args, got, outs, key, start, rest, bounds, scratch) + (settled, start + rest[:KEEP])


NONE = np.zeros(0, dtype=np.int64)
# float32's rounding of either side of the comparison: a few ulps of it, far below this
SHRINK = 2.0**-16


def _narrowed(v: np.ndarray, scratch: Scratch, i: int) -> np.ndarray:
    buf = scratch.take(i + 1, v.shape, "screen-arguments", F32)[i]
    np.copyto(buf, v)  # float16 -> float32: exact
    return buf


def _bounds(
    d: np.ndarray,
    av: np.ndarray,
    t: np.ndarray,
    r: float,
    c: float,
    rtol: float,
    ok: Any,
    extremes: Optional[Tuple[float, float]] = None,
) -> Tuple[float, float, float, float]:
    """Over the settled elements (`ok`, or all): (a lower bound of the largest |reference|,
    upper bounds of the largest error, relative error and error - rtol |reference|), from
    d = |got - v|, av = |v|, t = d - alpha |v| (alpha <= rtol (1 - r) - r) and the bound r |v| + c;
    `extremes`: av's largest and smallest, when known."""
    where = {} if ok is None else {"where": ok}
    big, small = extremes or (float(np.max(av, initial=0.0, **where)), float(np.min(av, initial=np.inf, **where)))
    excess = float(np.max(t, initial=-np.inf, **where)) + c * (1 + rtol)
    max_abs = float(np.max(d, initial=0.0, **where)) + r * big + c
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(d, av, out=t, **where)
    lo = small * (1 - r) - c  # > 0 where settled
    max_rel = (float(np.max(t, initial=0.0, **where)) * small + r * small + c) / lo if lo > 0 else np.inf
    return big * (1 - r) - c, max_abs, max_rel, excess


def _exact(
    screen: Screen,
    keys: List[Any],
    args: List[np.ndarray],
    got: Any,
    outs: Dict[Any, np.ndarray],
    key: Any,
    start: int,
    idx: np.ndarray,
    settled: Optional[Tuple[float, float, float, float]],
    scratch: Scratch,
) -> Tuple[Dict[Any, Tuple[int, np.ndarray]], Optional[Tuple[float, float, float, float]]]:
    """The elements at flat places `idx` of the chunk evaluated in float64, written into the
    references kept, and compared exactly; merged with the settled elements' bounds."""
    values = at_points(screen.program, args, idx, scratch)
    bad: Dict[Any, Tuple[int, np.ndarray]] = {}
    for k, r in zip(keys, values):
        out = outs.get(k)
        if out is not None:
            out[key].flat[idx] = r  # (a chunk's view: contiguous, but .flat writes through any view)
        where = np.flatnonzero(~np.isfinite(r))
        if where.size:
            bad[k] = (int(where.size), start + idx[where])
    r = values[screen.at]
    g = np.asarray(got, dtype=np.float64).reshape(-1)[idx]
    if screen.against.key in bad or not np.all(np.isfinite(g)):
        return bad, None  # compare decides (as chunk_compare.compared)
    err = np.abs(g - r)
    mag = np.abs(r)
    rtol = screen.against.rtol
    exact = (
        float(mag.max()),
        float(err.max()),
        float((err / np.maximum(mag, np.finfo(np.float64).tiny)).max()),
        float((err - rtol * mag).max()),
    )
    if settled is None:
        return bad, exact
    return bad, (
        max(settled[0], exact[0]),
        max(settled[1], exact[1]),
        max(settled[2], exact[2]),
        max(settled[3], exact[3]),
    )


def at_points(program: Program, args: Sequence[np.ndarray], idx: np.ndarray, scratch: Scratch) -> List[np.ndarray]:
    """Each formula in float64 at the flat places `idx` of the arguments (of one shape)."""
    picked = [np.asarray(a).flat[idx].astype(np.float64) for a in args]
    values = [np.empty(idx.size) for _ in program.results]
    if idx.size:
        program.run(picked, values, scratch)
    return values
