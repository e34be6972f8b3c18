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
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# Points evaluated one by one with evalf: at most this many in all (~0.1 ms each).
MAX_EVALF_POINTS = 4096
# Points of the sample evalf checks float64 against.
SAMPLE = 64
# Relative agreement of float64 with evalf that lets float64 stand for every point.
AGREE = 1e-9


class NotEnough(Exception):
    """float64 is not enough for a formula and the grid is too large for evalf at every point."""


def evaluate(
    wanted: Dict[Any, Any],
    frozen: Dict[Any, Any],
    sites: List[Tuple[str, Any]],
    grid: Dict[Any, np.ndarray],
    shape: Tuple[int, ...],
) -> Tuple[Optional[str], Dict[Any, np.ndarray]]:
    """(a kink description, or None; each wanted formula's value at every grid point).

    `grid`: symbol -> its value broadcast to `shape`; `frozen`: a symbol standing for a
    held expression (stop_gradient), in dependency order; `sites`: where a kink switches.
    """
    import sympy as sp

    from runner.language import symbolic

    symbols = list(grid)
    arrays: Dict[Any, np.ndarray] = {s: np.asarray(v, dtype=np.float64) for s, v in grid.items()}
    with np.errstate(all="ignore"):
        for dummy, expr in frozen.items():  # created inner first, so in dependency order
            arrays[dummy] = _vector(sp, expr, symbols, arrays, shape)
            symbols.append(dummy)
        for desc, site in sites:
            if np.any(_vector(sp, site, symbols, arrays, shape) == 0.0):
                return f"{desc} switches at this point", {}
        out: Dict[Any, Optional[np.ndarray]] = {}
        for k, expr in wanted.items():
            try:
                out[k] = _vector(sp, expr, symbols, arrays, shape)
            except Exception:  # NumPy has no spelling for it (SymPy's complex infinity): evalf decides
                out[k] = None
    recheck = _sample(shape, grid)
    size = int(np.prod(shape, dtype=np.int64))
    done: Dict[Any, np.ndarray] = {}
    for k, expr in wanted.items():
        values = out[k]
        if values is None:
            if size > MAX_EVALF_POINTS:
                raise NotEnough(f"a derivative NumPy cannot evaluate, on a grid of {size:,} points")
            done[k] = np.array([symbolic.evaluate(expr, _at(arrays, idx)) for idx in np.ndindex(*shape)]).reshape(shape)
            continue
        done[k] = values
        bad = [tuple(int(i) for i in idx) for idx in np.argwhere(~np.isfinite(values))]
        if len(bad) > MAX_EVALF_POINTS:
            raise NotEnough(f"float64 gives no finite value at {len(bad):,} points of the grid")
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
    return None, done


def _vector(sp: Any, expr: Any, symbols: List[Any], arrays: Dict[Any, np.ndarray], shape: Tuple[int, ...]) -> Any:
    """`expr` at every grid point in float64 (NaN where it is complex or undefined)."""
    fn = sp.lambdify(symbols, expr, modules="numpy")
    value = np.asarray(fn(*(arrays[s] for s in symbols)))
    if np.iscomplexobj(value):
        real = np.real(value)
        value = np.where(np.abs(np.imag(value)) > 1e-12 * np.maximum(1.0, np.abs(real)), np.nan, real)
    return np.array(np.broadcast_to(value.astype(np.float64), shape))


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
    evenly spread ones, at most SAMPLE + 4 per input in all."""
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return []
    flat = np.unique(np.linspace(0, size - 1, num=min(SAMPLE, size)).astype(np.int64))
    picks = {int(i) for i in flat}
    for v in grid.values():
        full = np.broadcast_to(v, shape).ravel()
        finite = np.where(np.isfinite(full), full, 0.0)
        picks.update(
            int(i) for i in (np.argmin(finite), np.argmax(finite), np.argmin(np.abs(finite)), np.argmax(np.abs(finite)))
        )
    return [tuple(int(j) for j in np.unravel_index(i, shape)) for i in sorted(picks)]
