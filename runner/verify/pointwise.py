"""The symbolic reference's pointwise derivatives over the whole grid at once (imports SymPy lazily).

An elementwise target's derivatives are formulas of the inputs at each grid point. Evaluating
them point by point with SymPy's `evalf` (17 digits, adaptive precision) costs ~0.1 ms a
point: fine for a few hundred, hopeless for a 10^7-point grid. Here the formulas become ufunc
steps over reused buffers (runner/verify/formula_program.py; `sympy.lambdify` for what it
cannot spell) and run over the whole grid in float64; then, as
float64 may not be enough where a formula cancels or overflows, a sample of points (the
extremes of every input, and evenly spread ones) and every point where float64 gives no
finite number are evaluated again by `evalf`. When the sample disagrees with float64 beyond
`AGREE`, float64 is not trusted for this formula: every point goes through `evalf` if there
are at most `MAX_EVALF_POINTS`, else the reference is not given (and the check says why).

A large grid is evaluated in chunks of `CHUNK` elements (no grid-sized temporaries are made),
on `workers()` threads (NumPy's ufuncs release the GIL), each formula's last step writing into
the grid-sized result, TensorFlow's value compared in the same pass
(runner/verify/chunk_compare.py). `map_chunks` is shared with compare's own passes.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runner.verify import chunk_compare, chunk_screen, formula_program, grid_sample
from runner.verify.chunk_compare import Against, Stats

# Points evaluated one by one with evalf: at most this many in all (~0.1 ms each).
MAX_EVALF_POINTS = 4096
# Relative agreement of float64 with evalf that lets float64 stand for every point.
AGREE = 1e-9
# Elements a chunk holds: 2^18 (2 MB of float64) measured best on 2 cores at 10^7 points
# (2^16 and less: the threads' per-chunk cost, Python's and the GIL's, shows); grids of fewer
# than PARALLEL_MIN elements are done in the calling thread.
CHUNK = 1 << 18
PARALLEL_MIN = 4 * CHUNK
# The key `evaluate` gives the finiteness of `value` under (a 0-d bool array).
FINITE = "finite"
# The key `evaluate` gives the comparison with `against` under (a `Stats`, or None).
STATS = "stats"


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
    """Whether every element of `a` is finite, over the whole array in the calling thread (a
    reduction reads memory faster than threads share it)."""
    return _finite(a)


def _finite(c: Any) -> bool:
    """Whether every element of `c` is finite. For floats one vectorized pass, no temporary of
    bools: a finite sum has only finite terms (NaN and infinities propagate); a sum that is not
    finite (an overflow, maybe) is settled by the min and max."""
    c = np.asarray(c)
    if c.size == 0:
        return True
    if c.dtype.kind != "f":
        return bool(np.isfinite(c).all())
    if np.isfinite(np.add.reduce(c, axis=None)):
        return True
    return bool(np.isfinite(c.min()) and np.isfinite(c.max()))


def evaluate(
    wanted: Dict[Any, Any],
    frozen: Dict[Any, Any],
    sites: List[Tuple[str, Any]],
    grid: Dict[Any, np.ndarray],
    shape: Tuple[int, ...],
    value: Any = None,
    against: Optional[Against] = None,
) -> Tuple[Optional[str], Dict[Any, Any]]:
    """(a kink description, or None; each wanted formula's value at every grid point).

    `grid`: symbol -> its value broadcast to `shape`; `frozen`: a symbol standing for a
    held expression (stop_gradient), in dependency order; `sites`: where a kink switches.
    `value` (the target's own formula), when given, is evaluated in the same pass, and
    whether it is finite at every point is given under `FINITE`. `against`, when given, is
    compared with its formula's final values in the same pass: a `Stats` under `STATS`, or
    None where some value is not finite or evalf changed any (compare then does it all).
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
        out, bad_at, finite, stats, extremes, unsettled = _grid(
            sp, formulas, symbols, arrays, shape, against, list(grid)
        )
    if extremes is None:  # no pass was made
        extremes = [
            map_chunks(functools.partial(grid_sample.chunk_extremes, np.broadcast_to(v, shape)), shape)
            for v in grid.values()
        ]
    # where a float32 bound settled all but a few elements, those few are the sample: float64
    # stands for the exact value only there
    recheck = unsettled if unsettled is not None else grid_sample.sample(shape, extremes)
    done: Dict[Any, Any] = {}
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
            stats = None
        if not all(_agrees(values[idx], symbolic.evaluate(expr, _at(arrays, idx))) for idx in recheck):
            if size > MAX_EVALF_POINTS:
                raise NotEnough(
                    f"float64 is not precise enough for this formula and the grid has {size:,} points "
                    f"(exact evaluation takes at most {MAX_EVALF_POINTS:,})"
                )
            for idx in np.ndindex(*shape):
                values[idx] = symbolic.evaluate(expr, _at(arrays, idx))
            stats = None
    if value is not None:
        done[FINITE] = np.asarray(bool(finite.get(FINITE, False)))
    if against is not None:
        done[STATS] = stats if against.key in done else None
    return None, done


Grid = Tuple[
    Dict[Any, np.ndarray],
    Dict[Any, Tuple[int, List[Tuple[int, ...]]]],
    Dict[Any, bool],
    Optional[Stats],
    Optional[List[List[List[Tuple[float, int]]]]],
    Optional[List[Tuple[int, ...]]],
]


def _grid(
    sp: Any,
    formulas: Dict[Any, Any],
    symbols: List[Any],
    arrays: Dict[Any, np.ndarray],
    shape: Tuple[int, ...],
    against: Optional[Against] = None,
    inputs: Optional[List[Any]] = None,
) -> Grid:
    """Every formula at every grid point in float64 (NaN where complex or undefined), in one
    pass of chunks (common subexpressions shared); the points where each is not finite (at
    most MAX_EVALF_POINTS + 1), and whether each is finite everywhere. A formula NumPy cannot
    spell is left out of the values (evalf decides). In the same pass: the comparison with
    `against` (`Stats`, None where a value is not finite) and each of `inputs`' extremes per
    chunk (for `grid_sample.sample`; None when no pass was made)."""
    keys = list(formulas)
    try:
        program = formula_program.build(sp, [formulas[k] for k in keys], symbols)
        if program is not None:
            return _run_grid([(keys, program)], symbols, arrays, shape, against, inputs or [])
        fn = sp.lambdify(symbols, [formulas[k] for k in keys], modules="numpy", cse=True)
        return _run_grid([(keys, fn)], symbols, arrays, shape, against, inputs or [])
    except Exception:  # one of them NumPy cannot spell (SymPy's complex infinity): each on its own
        out: Dict[Any, np.ndarray] = {}
        bad_at: Dict[Any, Tuple[int, List[Tuple[int, ...]]]] = {}
        finite: Dict[Any, bool] = {}
        stats: Optional[Stats] = None
        extremes = None
        for k in keys:
            try:
                one = formula_program.build(sp, [formulas[k]], symbols) or sp.lambdify(
                    symbols, [formulas[k]], modules="numpy"
                )
                mine = against if against is not None and against.key == k else None
                o, b, f, st, ex, _ = _run_grid([([k], one)], symbols, arrays, shape, mine, inputs or [], few=False)
            except Exception:
                continue
            out.update(o)
            bad_at.update(b)
            finite.update(f)
            stats = st if mine is not None else stats
            extremes = extremes or ex
        return out, bad_at, finite, stats, extremes, None


def _run_grid(
    fns: List[Tuple[List[Any], Any]],
    symbols: List[Any],
    arrays: Dict[Any, np.ndarray],
    shape: Tuple[int, ...],
    against: Optional[Against],
    inputs: List[Any],
    few: bool = True,
) -> Grid:
    """`_grid`'s pass; `few`: where a float32 bound settles all but at most SAMPLE elements,
    those are given (for evalf), else None and the float64 values at the sample's points."""
    # the target's own value (FINITE) is not kept: only whether it is finite
    out = {k: np.empty(shape) for keys, _ in fns for k in keys if k != FINITE}
    ext_at = [symbols.index(s) for s in inputs]  # the inputs' places among the arguments
    size = int(np.prod(shape, dtype=np.int64))
    screen = chunk_screen.plan(fns[0][0], fns[0][1], [arrays[s] for s in symbols], against, FINITE, size)

    scratch = formula_program.Scratch()

    def piece(key: Any, start: int, n: int) -> Tuple[Any, Any, int, Any, Any]:
        here = np.broadcast_to(np.float64(0.0), shape)[key].shape  # the chunk's
        views = [arrays[s][key] for s in symbols]
        ext = [grid_sample.extremes(arrays[symbols[i]][key], start) for i in ext_at]
        if screen is not None:  # float32 with a bound, float64 where it cannot settle an element
            return chunk_screen.piece(screen, fns[0][0], views, out, key, start, n, scratch) + (ext,)
        wide = scratch.take(len(views), here, "arguments")
        args = [v if v.dtype == np.float64 else _widen(v, w) for v, w in zip(views, wide)]
        bad: Dict[Any, Tuple[int, np.ndarray]] = {}  # formula -> (points not finite, the first of them)
        compared = None
        for keys, fn in fns:
            if isinstance(fn, formula_program.Program):
                values = [out[k][key] if k != FINITE else scratch.take(1, here, "finite")[0] for k in keys]
                fn.run(args, values, scratch)
            else:
                values = [_kept(out, k, key, v) for k, v in zip(keys, fn(*args))]
            for k, o in zip(keys, values):
                if against is not None and k == against.key:
                    compared = chunk_compare.compared(o, against.got[key], against.rtol, n, scratch)
                    if compared is not chunk_compare.NOT_FINITE:  # it found `o` finite
                        continue
                    compared = None
                if not _finite(o):
                    where = np.flatnonzero(~np.isfinite(o))
                    bad[k] = (where.size, start + where[: MAX_EVALF_POINTS + 1])
        # the extremes as given (float32, say: half the bytes of the widened chunk, the same values)
        return bad, compared, 0, chunk_screen.NONE, ext

    with np.errstate(all="ignore"):
        found = map_chunks(piece, shape)
    bad_at: Dict[Any, Tuple[int, List[Tuple[int, ...]]]] = {}
    finite: Dict[Any, bool] = {}
    for k in (k for keys, _ in fns for k in keys):
        flat = [f[0][k] for f in found if k in f[0]]
        finite[k] = not flat
        idx = np.concatenate([i for _, i in flat])[: MAX_EVALF_POINTS + 1] if flat else np.zeros(0, dtype=np.int64)
        points = [tuple(int(j) for j in np.unravel_index(i, shape)) for i in idx]
        bad_at[k] = (sum(n for n, _ in flat), points)
    stats = None
    parts = [f[1] for f in found]
    if against is not None and parts and all(p is not None for p in parts):
        top, max_abs, max_rel, excess = (max(p[i] for p in parts) for i in range(4))
        bounded = sum(f[2] for f in found)
        stats = Stats(against.got, against.rtol, top if top >= 0.0 else 1.0, max_abs, max_rel, excess, bounded)
    extremes = [[f[4][j] for f in found] for j in range(len(inputs))] if found else None
    unsettled = None
    if screen is not None and extremes is not None:
        if few and size - sum(f[2] for f in found) <= grid_sample.SAMPLE:  # each chunk kept them all
            unsettled = [tuple(int(j) for j in np.unravel_index(i, shape)) for f in found for i in f[3]]
        else:  # evalf's sample compares float64's own values
            points = np.ravel_multi_index(np.array(grid_sample.sample(shape, extremes)).T, shape) if size else []
            args = [np.broadcast_to(arrays[s], shape) for s in symbols]
            for k, v in zip(fns[0][0], chunk_screen.at_points(screen.program, args, np.asarray(points), scratch)):
                if k in out:
                    out[k].flat[points] = v
    return out, bad_at, finite, stats, extremes, unsettled


def _kept(out: Dict[Any, np.ndarray], k: Any, key: Any, v: Any) -> np.ndarray:
    """A lambdified formula's chunk `v` (NaN where complex) written into its place in `out`;
    the target's own value (FINITE) is not kept."""
    v = np.asarray(v)
    if np.iscomplexobj(v):
        real = np.real(v)
        v = np.where(np.abs(np.imag(v)) > 1e-12 * np.maximum(1.0, np.abs(real)), np.nan, real)
    if k == FINITE:
        return v
    o = out[k][key]
    o[...] = v
    return o


def _widen(v: np.ndarray, into: np.ndarray) -> np.ndarray:
    np.copyto(into, v)  # exact: every narrower float is a float64
    return into


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
