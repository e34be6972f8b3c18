"""The symbolic reference's pointwise derivatives over the whole grid at once (imports SymPy lazily).

An elementwise target's derivatives are formulas of the inputs at each grid point. Evaluating
them point by point with SymPy's `evalf` (17 digits, adaptive precision) costs ~0.1 ms a
point: fine for a few hundred, hopeless for a 10^7-point grid. Here each formula is turned
into a NumPy function (`sympy.lambdify`) and run over the whole grid in float64; then, as
float64 may not be enough where a formula cancels or overflows, a sample of points (the
extremes of every input, and evenly spread ones) and every point where float64 gives no
finite number are evaluated again by `evalf`. When the sample disagrees with float64 beyond
`AGREE`, float64 is not trusted for this formula: every point goes through `evalf` if there
are at most `MAX_EVALF_POINTS`, else the reference is not given (and the check says why).

A large grid is evaluated in chunks of `CHUNK` elements (they stay in cache, and no
grid-sized temporaries are made), on `workers()` threads (NumPy's ufuncs release the GIL),
each chunk's values written into the grid-sized result. `map_chunks` is shared with the
comparison (runner/verify/compare.py).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

# Points evaluated one by one with evalf: at most this many in all (~0.1 ms each).
MAX_EVALF_POINTS = 4096
# Points of the sample evalf checks float64 against.
SAMPLE = 64
# Relative agreement of float64 with evalf that lets float64 stand for every point.
AGREE = 1e-9
# Elements a chunk holds (its float64 temporaries stay in a core's cache); grids of fewer
# than PARALLEL_MIN elements are done in the calling thread.
CHUNK = 1 << 16
PARALLEL_MIN = 4 * CHUNK
# The key `evaluate` gives the finiteness of `value` under (a 0-d bool array).
FINITE = "finite"

Chunk = Tuple[Any, int, int]  # (a basic index: a view of any array of the shape, flat start, elements)


class NotEnough(Exception):
    """float64 is not enough for a formula and the grid is too large for evalf at every point."""


def chunks(shape: Tuple[int, ...], size: Optional[int] = None) -> List[Chunk]:
    """Pieces of about `size` (default `CHUNK`) elements covering a C-ordered array of `shape`, in order: each a
    basic index (so a view, of broadcast arrays too) of a contiguous range of flat positions."""
    size = size or CHUNK
    n = int(np.prod(shape, dtype=np.int64))
    if not shape or n <= size:
        return [(Ellipsis, 0, n)]
    k = next(k for k in range(len(shape)) if int(np.prod(shape[k + 1 :], dtype=np.int64)) <= size)
    inner = int(np.prod(shape[k + 1 :], dtype=np.int64))
    step = max(1, size // inner)
    out: List[Chunk] = []
    for lead_flat, lead in enumerate(np.ndindex(*shape[:k])):
        for lo in range(0, shape[k], step):
            hi = min(lo + step, shape[k])
            out.append((tuple(lead) + (slice(lo, hi),), (lead_flat * shape[k] + lo) * inner, (hi - lo) * inner))
    return out


def workers() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # no affinity on this platform
        return max(1, min(4, os.cpu_count() or 1))


def map_chunks(fn: Callable[[Any, int, int], Any], shape: Tuple[int, ...], size: Optional[int] = None) -> List[Any]:
    """`fn(index, start, count)` of every chunk of `shape`, in order; on threads when the grid is large."""
    pieces = chunks(shape, size)
    n = workers()
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < PARALLEL_MIN:
        return [fn(*p) for p in pieces]
    state = np.geterr()  # NumPy's error state is the calling thread's own: the workers take it

    def run(p: Chunk) -> Any:
        with np.errstate(**state):
            return fn(*p)

    with ThreadPoolExecutor(n, thread_name_prefix="runner-check") as pool:  # per call: safe across fork
        return list(pool.map(run, pieces))


def all_finite(a: np.ndarray) -> bool:
    """Whether every element of `a` is finite, in chunks."""
    a = np.asarray(a)
    return all(map_chunks(lambda key, _s, _n: bool(np.isfinite(a[key]).all()), a.shape))


def evaluate(
    wanted: Dict[Any, Any],
    frozen: Dict[Any, Any],
    sites: List[Tuple[str, Any]],
    grid: Dict[Any, np.ndarray],
    shape: Tuple[int, ...],
    value: Any = None,
) -> Tuple[Optional[str], Dict[Any, np.ndarray]]:
    """(a kink description, or None; each wanted formula's value at every grid point).

    `grid`: symbol -> its value broadcast to `shape`; `frozen`: a symbol standing for a
    held expression (stop_gradient), in dependency order; `sites`: where a kink switches.
    `value` (the target's own formula), when given, is evaluated in the same pass, and
    whether it is finite at every point is given under `FINITE`.
    """
    import sympy as sp

    from runner.language import symbolic

    symbols = list(grid)
    # float arrays as given (float32, say: widened exactly a chunk at a time by `_wide`)
    arrays: Dict[Any, np.ndarray] = {
        s: v if np.asarray(v).dtype.kind == "f" else np.asarray(v, dtype=np.float64) for s, v in grid.items()
    }
    size = int(np.prod(shape, dtype=np.int64))
    with np.errstate(all="ignore"):
        for dummy, expr in frozen.items():  # created inner first, so in dependency order
            arrays[dummy] = _grid(sp, {dummy: expr}, symbols, arrays, shape)[0][dummy]
            symbols.append(dummy)
        if sites:
            fn = sp.lambdify(symbols, [site for _, site in sites], modules="numpy")

            def zero(key: Any, _s: int, _n: int) -> List[bool]:
                return [bool(np.any(np.asarray(v) == 0.0)) for v in fn(*(_wide(arrays[s][key]) for s in symbols))]

            hits = map_chunks(zero, shape)
            for i, (desc, _) in enumerate(sites):
                if any(h[i] for h in hits):
                    return f"{desc} switches at this point", {}
        formulas = dict(wanted)
        if value is not None:
            formulas[FINITE] = value
        out, bad_at, finite = _grid(sp, formulas, symbols, arrays, shape)
    recheck = _sample(shape, grid)
    done: Dict[Any, np.ndarray] = {}
    for k, expr in wanted.items():
        values = out.get(k)
        if values is None:
            if size > MAX_EVALF_POINTS:
                raise NotEnough(f"a derivative NumPy cannot evaluate, on a grid of {size:,} points")
            done[k] = np.array([symbolic.evaluate(expr, _at(arrays, idx)) for idx in np.ndindex(*shape)]).reshape(shape)
            continue
        done[k] = values
        count, bad = bad_at[k]
        if count > MAX_EVALF_POINTS:
            raise NotEnough(f"float64 gives no finite value at {count:,} points of the grid")
        for idx in bad:
            values[idx] = symbolic.evaluate(expr, _at(arrays, idx))
        if not all(_agrees(values[idx], symbolic.evaluate(expr, _at(arrays, idx))) for idx in recheck):
            if size > MAX_EVALF_POINTS:
                raise NotEnough(
                    f"float64 is not precise enough for this formula and the grid has {size:,} points "
                    f"(exact evaluation takes at most {MAX_EVALF_POINTS:,})"
                )
            for idx in np.ndindex(*shape):
                values[idx] = symbolic.evaluate(expr, _at(arrays, idx))
    if value is not None:
        done[FINITE] = np.asarray(bool(finite.get(FINITE, False)))
    return None, done


def _grid(
    sp: Any, formulas: Dict[Any, Any], symbols: List[Any], arrays: Dict[Any, np.ndarray], shape: Tuple[int, ...]
) -> Tuple[Dict[Any, np.ndarray], Dict[Any, Tuple[int, List[Tuple[int, ...]]]], Dict[Any, bool]]:
    """Every formula at every grid point in float64 (NaN where complex or undefined), in one
    pass of chunks (common subexpressions shared); the points where each is not finite (at
    most MAX_EVALF_POINTS + 1), and whether each is finite everywhere. A formula NumPy cannot
    spell is left out of the values (evalf decides)."""
    keys = list(formulas)
    try:
        fn = sp.lambdify(symbols, [formulas[k] for k in keys], modules="numpy", cse=True)
        return _run_grid([(keys, fn)], symbols, arrays, shape)
    except Exception:  # one of them NumPy cannot spell (SymPy's complex infinity): each on its own
        out: Dict[Any, np.ndarray] = {}
        bad_at: Dict[Any, Tuple[int, List[Tuple[int, ...]]]] = {}
        finite: Dict[Any, bool] = {}
        for k in keys:
            try:
                one = sp.lambdify(symbols, [formulas[k]], modules="numpy")
                o, b, f = _run_grid([([k], one)], symbols, arrays, shape)
            except Exception:
                continue
            out.update(o)
            bad_at.update(b)
            finite.update(f)
        return out, bad_at, finite


def _run_grid(
    fns: List[Tuple[List[Any], Any]], symbols: List[Any], arrays: Dict[Any, np.ndarray], shape: Tuple[int, ...]
) -> Tuple[Dict[Any, np.ndarray], Dict[Any, Tuple[int, List[Tuple[int, ...]]]], Dict[Any, bool]]:
    # the target's own value (FINITE) is not kept: only whether it is finite
    out = {k: np.empty(shape) for keys, _ in fns for k in keys if k != FINITE}

    def piece(key: Any, start: int, n: int) -> Dict[Any, Tuple[int, np.ndarray]]:
        args = [_wide(arrays[s][key]) for s in symbols]
        bad: Dict[Any, Tuple[int, np.ndarray]] = {}  # formula -> (points not finite, the first of them)
        for keys, fn in fns:
            for k, v in zip(keys, fn(*args)):
                v = np.asarray(v)
                if np.iscomplexobj(v):
                    real = np.real(v)
                    v = np.where(np.abs(np.imag(v)) > 1e-12 * np.maximum(1.0, np.abs(real)), np.nan, real)
                if k == FINITE:
                    o = v
                else:
                    o = out[k][key]
                    o[...] = v
                if not np.isfinite(o).all():
                    where = np.flatnonzero(~np.isfinite(o))
                    bad[k] = (where.size, start + where[: MAX_EVALF_POINTS + 1])
        return bad

    with np.errstate(all="ignore"):
        found = map_chunks(piece, shape)
    bad_at: Dict[Any, Tuple[int, List[Tuple[int, ...]]]] = {}
    finite: Dict[Any, bool] = {}
    for k in (k for keys, _ in fns for k in keys):
        flat = [f[k] for f in found if k in f]
        finite[k] = not flat
        idx = np.concatenate([i for _, i in flat])[: MAX_EVALF_POINTS + 1] if flat else np.zeros(0, dtype=np.int64)
        points = [tuple(int(j) for j in np.unravel_index(i, shape)) for i in idx]
        bad_at[k] = (sum(n for n, _ in flat), points)
    return out, bad_at, finite


def _wide(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)  # no copy when float64 already


def _at(arrays: Dict[Any, np.ndarray], idx: Tuple[int, ...]) -> Dict[Any, float]:
    return {s: float(v[idx]) for s, v in arrays.items()}


def _agrees(fast: float, exact: float) -> bool:
    if np.isnan(exact) or np.isnan(fast):
        return bool(np.isnan(exact) and np.isnan(fast))
    if np.isinf(exact) or np.isinf(fast):
        return bool(fast == exact)
    return abs(fast - exact) <= AGREE * max(abs(exact), 1e-300) or abs(fast - exact) <= 1e-300


def _sample(shape: Tuple[int, ...], grid: Dict[Any, np.ndarray]) -> List[Tuple[int, ...]]:
    """The points evalf checks: each input's smallest and largest (by magnitude too), and
    evenly spread ones, at most SAMPLE + 4 per input in all (each extreme's first place)."""
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return []
    flat = np.unique(np.linspace(0, size - 1, num=min(SAMPLE, size)).astype(np.int64))
    picks = {int(i) for i in flat}
    for v in grid.values():
        full = np.broadcast_to(v, shape)

        found = map_chunks(functools.partial(_extremes, full), shape)
        for j, smallest in enumerate((True, False, True, False)):
            # the first place of the extreme, as NumPy's argmin/argmax over the whole grid
            best = min(found, key=lambda f: (f[j][0] if smallest else -f[j][0], f[j][1]))[j]
            picks.add(best[1])
    return [tuple(int(j) for j in np.unravel_index(i, shape)) for i in sorted(picks)]


def _extremes(full: np.ndarray, key: Any, start: int, _n: int) -> List[Tuple[float, int]]:
    """A chunk's smallest and largest finite value, smallest and largest magnitude (NaN and
    inf read as 0), each with its first flat position."""
    c = np.asarray(full[key]).ravel()
    finite = np.where(np.isfinite(c), c, 0.0)
    mag = np.abs(finite)
    picks = ((finite, np.argmin(finite)), (finite, np.argmax(finite)), (mag, np.argmin(mag)), (mag, np.argmax(mag)))
    return [(float(a[i]), start + int(i)) for a, i in picks]
