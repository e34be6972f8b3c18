"""TensorFlow's value compared with the reference chunk by chunk, in the formulas' own pass over
the grid (runner/verify/pointwise.py) while each chunk is in cache: the numbers
runner/verify/compare.py's own pass would give, so that it needs no pass of its own unless an
element is near or past its tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from runner.verify import formula_program

# What the comparison of a chunk gives where the reference is not finite there.
NOT_FINITE: Any = ("not finite",)


@dataclass(frozen=True)
class Against:
    """TensorFlow's value, compared with the formula `key`'s values in the same pass over the
    grid (while each chunk is in cache): `got` has the grid's shape; `rtol` is compare's."""

    key: Any
    got: np.ndarray
    rtol: float


@dataclass(frozen=True)
class Stats:
    """What runner/verify/compare.py's pass over a grid where both sides are finite gives, computed
    with the reference (the same operations, so the same numbers): the largest |reference|, the
    largest absolute and relative errors, and an upper bound of the largest error - rtol *
    |reference| (`excess`: no element disagrees when it is below atol; see `_compared`).
    For `got` and `rtol` only."""

    got: Any
    rtol: float
    top: float
    max_abs: float
    max_rel: float
    excess: float
    # elements judged against a float32 reference with a bound on its error (runner/verify/chunk_screen.py):
    # for them the errors above are upper bounds
    bounded: int = 0


def compared(
    r: np.ndarray, got: Any, rtol: float, n: int, scratch: formula_program.Scratch
) -> Optional[Tuple[float, float, float, float]]:
    """(largest |r|, largest |got - r|, largest relative error, an upper bound of the largest
    |got - r| - rtol |r|) of a chunk, by compare.py's operations; None where `got` is not finite
    (compare decides), NOT_FINITE where `r` is not (NaN and infinities reach the largest |r|).

    The bound is the largest error itself where it is below rtol times the chunk's largest |r|
    (compare's tolerance is at least that, so no element can disagree), else the exact excess:
    three passes saved where TensorFlow's value is close, the same verdicts."""
    if n == 0:
        return -1.0, 0.0, 0.0, -np.inf
    err, mag = scratch.take(2, r.shape, "compare")
    np.subtract(got, r, out=err, dtype=np.float64)  # `got` widened element by element (exactly)
    np.abs(err, out=err)
    np.abs(r, out=mag)
    top = float(mag.max())
    if not np.isfinite(top):
        return NOT_FINITE
    max_abs = float(err.max())
    if not np.isfinite(max_abs):  # `got` is not finite here (r is): compare decides
        return None
    if max_abs < rtol * top:
        excess = max_abs  # rtol |r| >= 0
    else:
        t = mag * rtol
        np.subtract(err, t, out=t)
        excess = float(t.max())
    np.maximum(mag, np.finfo(np.float64).tiny, out=mag)
    np.divide(err, mag, out=mag)  # an error against a reference of 0 is infinitely relative
    return top, max_abs, float(mag.max()), excess
