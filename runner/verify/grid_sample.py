"""The points SymPy's `evalf` re-evaluates to judge whether float64 is precise enough for a
formula over a grid (runner/verify/pointwise.py): each input's extremes and evenly spread
points. The extremes of each chunk are found in the formulas' own pass (`extremes`)."""

from __future__ import annotations

from typing import Any, List, Tuple

import numpy as np

# Points of the sample evalf checks float64 against.
SAMPLE = 64


def sample(shape: Tuple[int, ...], found: List[List[List[Tuple[float, int]]]]) -> List[Tuple[int, ...]]:
    """The points evalf checks: each input's smallest and largest (by magnitude too), and
    evenly spread ones, at most SAMPLE + 4 per input in all (each extreme's first place).
    `found`: each input's `extremes` per chunk (`chunk_extremes` over the grid, or the
    formulas' own pass)."""
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return []
    flat = np.unique(np.linspace(0, size - 1, num=min(SAMPLE, size)).astype(np.int64))
    picks = {int(i) for i in flat}
    for per_chunk in found:
        for j, smallest in enumerate((True, False, True, False)):
            # the first place of the extreme, as NumPy's argmin/argmax over the whole grid
            best = min(per_chunk, key=lambda f: (f[j][0] if smallest else -f[j][0], f[j][1]))[j]
            picks.add(best[1])
    return [tuple(int(j) for j in np.unravel_index(i, shape)) for i in sorted(picks)]


def chunk_extremes(full: np.ndarray, key: Any, start: int, _n: int) -> List[Tuple[float, int]]:
    return extremes(full[key], start)


def extremes(chunk: Any, start: int) -> List[Tuple[float, int]]:
    """A chunk's smallest and largest finite value, smallest and largest magnitude (NaN and
    inf read as 0), each with its first flat position. Where every value is finite, from the
    argmin and argmax alone (and |c| only where the chunk has both signs)."""
    c = np.asarray(chunk).ravel()
    if c.size == 0:
        return [(0.0, start)] * 4
    i, j = int(np.argmin(c)), int(np.argmax(c))  # the first NaN, if any
    lo, hi = float(c[i]), float(c[j])
    if np.isfinite(lo) and np.isfinite(hi):
        if lo >= 0.0:
            small = (abs(lo), i)
        elif hi <= 0.0:
            small = (abs(hi), j)
        else:
            mag = np.abs(c)
            k = int(np.argmin(mag))
            small = (float(mag[k]), k)
        a, b = abs(lo), abs(hi)
        large = (a, i) if a > b else (b, j) if b > a else (a, min(i, j))
        picked = [(lo, i), (hi, j), small, large]
        return [(v, start + at) for v, at in picked]
    finite = np.where(np.isfinite(c), c, 0.0)
    mag = np.abs(finite)
    picks = ((finite, np.argmin(finite)), (finite, np.argmax(finite)), (mag, np.argmin(mag)), (mag, np.argmax(mag)))
    return [(float(a[i]), start + int(i)) for a, i in picks]
