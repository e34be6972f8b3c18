"""The directional finite differences a projection (:mod:`runner.verify.projection`) compares
TensorFlow's u^T J v with: the mixed derivative of sum(c * target) along one direction per
order, from the float64 re-run (`Forward`), with its rounding error estimated.

Split from the projection, which decides what to difference and judges the result. One-sided
differences take the best relative step sqrt(eps64); central ones the steps of
:mod:`runner.verify.finite_differences` (`Move.rel`), scaled by `factor` for a retry.
"""

from __future__ import annotations

import itertools
from typing import Dict, List, Optional, Tuple

import numpy as np

from runner.config.spec import RequestSpec
from runner.verify.finite_differences import coarsest
from runner.verify.forward_pass import Forward

ONE_SIDED_STEP = 1.5e-8  # sqrt(float64 eps): the one-sided difference's best relative step


def scales(fwd: Forward, along: List[Dict[str, np.ndarray]]) -> Dict[str, float]:
    """max(1, max |x|) of each source moved: the steps are relative to it (an input's from its
    value as the run gave it, whose float64 copy holds the same numbers in twice the bytes)."""
    raw = {s: fwd.raw[s] for s in fwd.raw if np.asarray(fwd.raw[s]).dtype.kind in "fiu"}
    return {s: max(1.0, max_abs(raw[s] if s in raw else fwd.base[s])) for s in {s for d in along for s in d}}


def max_abs(a: np.ndarray) -> float:  # with no array of |a|
    return max(float(np.max(a)), -float(np.min(a))) if a.size else 0.0


def difference(
    fwd: Forward,
    req: RequestSpec,
    c: np.ndarray,
    along: List[Dict[str, np.ndarray]],
    one_sided: bool,
    factor: float,
    scales: Dict[str, float],
) -> Tuple[float, float, Optional[np.ndarray]]:
    """The mixed derivative of sum(c * target) along each of `along` in turn, by nested central
    (or, of first order, one-sided) differences; its rounding error, estimated as `fd_jacobian`
    estimates it; and for a first-order difference the direction as the moves really went."""
    base = fwd.base
    order = len(along)
    names = sorted({s for d in along for s in d})
    steps = []
    for d in along:
        scale = max(scales[s] for s in d)
        top = max(max_abs(a) for a in d.values()) or 1.0
        rel = ONE_SIDED_STEP * factor if one_sided else coarsest(fwd, tuple(d)).rel(order - 1) * factor
        steps.append(rel * scale / top)

    def at(signs: Tuple[int, ...]) -> float:
        # each source moved in place in its own buffer (`Forward.moved`), rounded as it is computed
        moved = {
            s: fwd.moved(s, [(sign * h, d[s]) for sign, h, d in zip(signs, steps, along) if s in d]) for s in names
        }
        return float(np.sum(c * fwd.target(req.target, moved)))

    f0 = base[req.target]
    rounding = 10 * coarsest(fwd, tuple(names)).eps * max(1.0, float(np.sum(np.abs(c * f0))))
    exact = all(fwd.move(s).dtype is None for s in names)
    if one_sided:  # only where the moves are exact (float64)
        return (at((1,)) - float(np.sum(c * f0))) / steps[0], 2 * rounding / steps[0], None
    total = 0.0
    for signs in itertools.product((1, -1), repeat=order):
        total += float(np.prod(signs)) * at(signs)
    prod = float(np.prod(steps))
    p = total / (2**order * prod)
    if order == 1 and len(names) == 1 and not exact:  # the direction the rounded moves took
        (s,) = names
        move, x0, v, h = fwd.move(s), base[s], along[0][s], steps[0]
        return p, rounding / prod, (move.snap(x0 + h * v) - move.snap(x0 - h * v)) / (2 * h)
    return p, rounding / prod, None
