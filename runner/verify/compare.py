"""Comparing TensorFlow's value with a reference: the tolerances and the three outcomes.

`compare` gives a check record (without timing): `outcome` passed, failed (a real
disagreement, with the elements that disagree counted and the worst named) or unverified
(the reference cannot judge the value, with why). See runner/verify/check.py for which
reference each derivative gets, and docs/verification.md for the tolerances.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runner.config.kinds import KINDS
from runner.config.schema import Kind
from runner.config.spec import RequestSpec
from runner.verify.chunk_compare import Against, Stats
from runner.verify.finite_differences import Reference
from runner.verify.pointwise import map_chunks

# rtol by the dtype TensorFlow computed in (float64 reference, so this is TF's own rounding).
DTYPE_RTOL = {"float64": 1e-8, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
# rtol by method: the symbolic reference is exact; finite differences carry truncation error.
METHOD_RTOL = {"symbolic": 0.0, "finite_difference": 1e-5, "finite_difference_nested": 1e-4}


# Measured differences (the user's code) that change by more than this share of their
# largest value between two step sizes are too unsteady to judge a derivative by.
UNSTEADY = 0.1

PASSED, FAILED, UNVERIFIED = "passed", "failed", "unverified"


def set_outcome(rec: Dict[str, Any], outcome: str, reason: Optional[str] = None) -> Dict[str, Any]:
    """Set a record's outcome (and `passed`, kept for readers of the boolean) and its reason."""
    rec["outcome"] = outcome
    rec["passed"] = outcome == PASSED
    if reason:
        rec["reason"] = reason
    return rec


def unverified(method: str, reason: str) -> Dict[str, Any]:
    """The record of a check that could not judge TensorFlow's value."""
    rec = {"method": method, "max_abs_error": None, "max_rel_error": None, "tolerance": None}
    return set_outcome(rec, UNVERIFIED, reason)


# ---- comparison --------------------------------------------------------------------------


def _dtype_rtol(value: np.ndarray) -> float:
    return DTYPE_RTOL.get(str(value.dtype), 1e-4)


def against(req: RequestSpec, got: Any, shape: Tuple[int, ...], source_shape: Tuple[int, ...]) -> Optional[Against]:
    """TensorFlow's value to compare in the symbolic formulas' own pass over the grid
    (runner/verify/pointwise.py), where the reference is the pointwise derivative "d" as it is:
    a gradient without weights by a source of the target's shape. Else None."""
    if req.kind != Kind.gradient.value or req.weights is not None or tuple(source_shape) != tuple(shape):
        return None
    if not isinstance(got, np.ndarray) or got.shape != tuple(shape) or got.dtype.kind != "f":
        return None
    return Against("d", got, _dtype_rtol(got))


def compare(got: Any, ref: Reference, req: RequestSpec) -> Dict[str, Any]:
    """A check record (without timing) comparing TensorFlow's value with the reference."""
    method_key = ref.method
    if ref.method == "finite_difference" and max(req.order, KINDS[req.kind].order or 1) > 1:
        method_key = "finite_difference_nested"
    rec: Dict[str, Any] = {"method": ref.method, "reference": ref.value}
    if ref.precision is not None:
        rec["precision"] = ref.precision
    if got is None and ref.value is not None and ref.opaque:
        # the user's code: whether it uses the source is known only by running it; nested
        # differences of a derivative that is 0 leave rounding noise, which is measured
        r0 = np.abs(np.asarray(ref.value, dtype=np.float64))
        rtol = max(METHOD_RTOL[method_key], ref.rtol)
        allowed = ref.noise if ref.measured else rtol + ref.noise
        if np.all(r0 <= allowed):
            rec.update(
                max_abs_error=float(np.max(r0)) if r0.size else 0.0,
                max_rel_error=None,
                tolerance={"rtol": rtol, "atol": allowed},
                note="TensorFlow gives None: the code does not use the source here (finite differences find no slope beyond their error)",
            )
            return set_outcome(rec, PASSED)
    if got is None or ref.value is None:
        rec.update(max_abs_error=None, max_rel_error=None, tolerance=None)
        if got is None and ref.value is None:
            rec.update(max_abs_error=0.0, max_rel_error=0.0, note=f"TensorFlow gives None: {ref.note or 'no path'}")
            return set_outcome(rec, PASSED)
        if got is None:
            return set_outcome(
                rec, FAILED, "TensorFlow gives None, but the tape records a path from the source to the target"
            )
        return set_outcome(rec, FAILED, f"TensorFlow gives a value, but {ref.note or 'the tape records no path'}")
    g = np.asarray(got)
    r = np.asarray(ref.value, dtype=np.float64)
    rtol = max(_dtype_rtol(g), METHOD_RTOL[method_key], ref.rtol)
    if g.shape != r.shape:
        rec.update(
            max_abs_error=None,
            max_rel_error=None,
            tolerance={"rtol": rtol, "atol": None},
        )
        return set_outcome(rec, FAILED, f"shape {list(g.shape)} differs from the reference's {list(r.shape)}")
    stats = ref.stats if isinstance(ref.stats, Stats) and ref.stats.got is got and ref.stats.rtol == rtol else None
    if stats is not None and stats.bounded:  # runner/verify/chunk_screen.py: the errors are upper bounds
        rec["reference_float32"] = stats.bounded
    # both sides finite (the formulas' pass compared them) or a pass to find out
    g_finite, r_finite, scale = (True, True, stats.top) if stats is not None else _scan(g, r)
    all_finite = g_finite and r_finite
    if ref.measured and ref.noise / 2 > UNSTEADY * scale:
        # differences that change this much with the step say nothing about TF's value
        rec.update(max_abs_error=None, max_rel_error=None, tolerance={"rtol": rtol, "atol": None})
        return set_outcome(
            rec,
            UNVERIFIED,
            f"the finite differences{' in ' + ref.precision if ref.precision else ''} change by "
            f"{ref.noise / 2 / scale:.0%} of their size when the steps shrink 4-fold, too much to judge "
            "TensorFlow's value (code that takes float64 is checked in float64)",
        )
    # a measured error scales with the function (the user's code); else numbers of size 1 are assumed
    atol = rtol * (scale if ref.measured else max(1.0, scale)) + ref.noise
    if stats is not None and stats.excess <= atol * (1.0 - 1e-9):
        # every element within rtol |r| + atol (with room for rounding): no element disagrees
        rec.update(max_abs_error=stats.max_abs, max_rel_error=stats.max_rel, tolerance={"rtol": rtol, "atol": atol})
        rec.update(mismatched=0, elements=int(r.size))
        return _verdict(rec, [ref.kink] if ref.kink else [], g, r, None, rtol, atol, 0, ref)
    if all_finite:
        return _compare_finite(rec, g, r, rtol, atol, ref)
    g64 = g.astype(np.float64, copy=False)
    both = np.isfinite(g64) & np.isfinite(r)
    err = np.abs(g64 - r)
    max_abs = float(np.max(err[both])) if both.any() else 0.0
    with np.errstate(over="ignore"):  # an error against a reference of 0 is infinitely relative
        rel = err[both] / np.maximum(np.abs(r[both]), np.finfo(np.float64).tiny)
    max_rel = float(np.max(rel)) if rel.size else 0.0
    rec.update(max_abs_error=max_abs, max_rel_error=max_rel, tolerance={"rtol": rtol, "atol": atol})
    reasons = []
    tf_nan = np.isnan(g64) & ~np.isnan(r)
    if tf_nan.any():
        reasons.append(f"TF gradient is NaN where the reference is {_first(r[tf_nan])}")
    if ref.kink:
        reasons.append(ref.kink)
    elif not np.isfinite(r).all():
        reasons.append(
            f"non-differentiable point: the reference derivative is {_first(r[~np.isfinite(r)])} (TF gives {_first(g64[~np.isfinite(r)])})"
        )
    if not tf_nan.any() and (np.isfinite(r) & ~np.isfinite(g64)).any():
        reasons.append(
            f"TF gradient is {_first(g64[np.isfinite(r) & ~np.isfinite(g64)])} where the reference is finite"
        )
    bad = both & (err > atol + rtol * np.abs(r))
    # an element agrees when within the tolerance, or when both are the same inf or both NaN
    agree = (both & ~bad) | (g64 == r) | (np.isnan(g64) & np.isnan(r))
    mismatched = int(r.size - np.count_nonzero(agree))
    rec.update(mismatched=mismatched, elements=int(r.size))
    if not (np.isfinite(g64).all() and np.isfinite(r).all()):
        rec["non_finite"] = {
            "tensorflow": int(np.count_nonzero(~np.isfinite(g64))),
            "reference": int(np.count_nonzero(~np.isfinite(r))),
        }
    at = np.unravel_index(np.argmax(np.where(bad, err, -1.0)), r.shape) if bad.any() else None
    return _verdict(rec, reasons, g64, r, at, rtol, atol, mismatched, ref)


def _verdict(
    rec: Dict[str, Any],
    reasons: List[str],
    g: np.ndarray,
    r: np.ndarray,
    at: Optional[Tuple[Any, ...]],
    rtol: float,
    atol: float,
    mismatched: int,
    ref: Reference,
) -> Dict[str, Any]:
    """The outcome from the reasons found, the worst disagreeing element `at` (or None) named
    (TF's value, the reference, the error and what was allowed), and the count of those that
    disagree."""
    if at is not None:
        g_at, r_at = np.float64(g[at]), np.float64(r[at])
        err, allowed = np.abs(g_at - r_at), np.abs(r_at) * rtol + atol
        where = f" at [{', '.join(map(str, (int(i) for i in at)))}]" if r.ndim else ""
        reasons.append(f"TF gives {g_at:.9g}, the reference {r_at:.9g}{where}: error {err:.3g} > allowed {allowed:.3g}")
    if reasons and mismatched and r.size > 1:  # of one element, the reasons say it all
        reasons.insert(0, f"mismatched elements: {mismatched} / {r.size} ({100 * mismatched / r.size:.3g}%)")
    if ref.note:
        rec["note"] = ref.note
    return set_outcome(rec, FAILED, "; ".join(reasons)) if reasons else set_outcome(rec, PASSED)


def _scan(g: np.ndarray, r: np.ndarray) -> Tuple[bool, bool, float]:
    """(every element of TF's value finite, every element of the reference finite, the
    largest finite |reference| or 1.0 when there is none), in chunks."""

    def piece(key: Any, _start: int, n: int) -> Tuple[bool, bool, float]:
        rc = r[key]
        finite = np.isfinite(rc)
        top = float(np.max(np.abs(rc), initial=-1.0, where=finite)) if n else -1.0
        return bool(np.isfinite(g[key].astype(np.float64)).all()), bool(finite.all()), top

    found = map_chunks(piece, r.shape)
    top = max(f[2] for f in found)
    return all(f[0] for f in found), all(f[1] for f in found), top if top >= 0.0 else 1.0


def _compare_finite(
    rec: Dict[str, Any], g: np.ndarray, r: np.ndarray, rtol: float, atol: float, ref: Reference
) -> Dict[str, Any]:
    """`compare` where every number on both sides is finite, in one pass of chunks that stay
    in cache, TF's value widened a chunk at a time (a 10^7-point grid: ~0.03 s on 2 cores,
    against 0.55 s for whole-array passes): the same errors, count and worst element."""
    tiny = np.finfo(np.float64).tiny

    def piece(key: Any, start: int, n: int) -> Tuple[float, float, int, float, int]:
        if n == 0:
            return 0.0, 0.0, 0, -1.0, -1
        err = np.array(g[key], dtype=np.float64)  # a copy, written in place (a 0-d one too)
        np.subtract(err, r[key], out=err)
        np.abs(err, out=err)
        mag = np.array(np.abs(r[key]))
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            rel = np.array(np.maximum(mag, tiny))
            np.divide(err, rel, out=rel)  # an error against a reference of 0 is infinitely relative
        mag *= rtol
        mag += atol
        bad = err > mag
        count = int(np.count_nonzero(bad))
        worst, at = -1.0, -1
        if count:
            i = int(np.argmax(np.where(bad, err, -1.0)))
            worst, at = float(err.ravel()[i]), start + i
        return float(err.max()), float(rel.max()), count, worst, at

    found = map_chunks(piece, r.shape)
    max_abs = max((f[0] for f in found), default=0.0)
    max_rel = max((f[1] for f in found), default=0.0)
    mismatched = sum(f[2] for f in found)
    # the largest error among those that disagree, at its first place (NumPy's argmax)
    worst = min((f for f in found if f[2]), key=lambda f: (-f[3], f[4]), default=None)
    at = None if worst is None else tuple(int(i) for i in np.unravel_index(worst[4], r.shape))
    rec.update(max_abs_error=max_abs, max_rel_error=max_rel, tolerance={"rtol": rtol, "atol": atol})
    rec.update(mismatched=mismatched, elements=int(r.size))
    return _verdict(rec, [ref.kink] if ref.kink else [], g, r, at, rtol, atol, mismatched, ref)


def _first(a: np.ndarray) -> str:
    v = float(np.asarray(a).ravel()[0])
    return "NaN" if np.isnan(v) else ("inf" if v > 0 and np.isinf(v) else ("-inf" if np.isinf(v) else f"{v:.9g}"))
