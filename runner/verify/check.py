"""Check every derivative TensorFlow gave by a second, independent method.

For each completed request the verifier computes a float64 *reference* and compares:

- `symbolic`: the step expressions lowered to SymPy (:mod:`runner.language.symbolic`) and
  differentiated exactly, then evaluated at the point (:mod:`runner.verify.symbolic_reference`).
  Used for every kind whose target is built from elementwise operations only (any
  broadcasting; `order` > 1 for gradients).
- `finite_difference`: central differences of the same program, re-run in float64 by
  TensorFlow (:mod:`runner.verify.finite_differences`). Works for every kind, matmul and
  reductions included.

`verify: auto` takes the symbolic check where it applies and finite differences elsewhere;
at a kink site (`abs`, `relu`, `maximum`, ... whose switching argument is exactly 0) the
symbolic check hands over to finite differences, whose one-sided differences tell a real
kink (left and right slopes differ) from a harmless one.

The reference follows the tape, not just the maths of the function: inputs the tape does
not watch, steps computed under `tape.stop_recording` and `stop_gradient(...)` are held
fixed, so a source the tape does not connect to the target has the reference `None` (or
zeros with `unconnected: zero`), exactly what TensorFlow promises. What remains is where
TensorFlow and the maths really disagree: kinks (TF picks a one-sided value), NaN
gradients (sqrt of a sum of squares at 0, overflow in float32); those become failed
checks with a readable `reason`, never a crash.

Tolerances (see docs/verification.md): a check passes when every element satisfies
|tf - ref| <= atol + rtol * |ref| with rtol = max(rtol of the run's dtype, rtol of the
method) and atol = rtol * max(1, max |ref|) (+ the finite differences' rounding noise).
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

import numpy as np

from runner.config.kinds import KINDS
from runner.config.spec import JobSpec, RequestSpec
from runner.verify.finite_differences import Forward, Reference, Unverifiable, fd_block, fd_reference, measure_error
from runner.verify.symbolic_reference import symbolic_applies, symbolic_blocks, symbolic_reference
from runner.verify.tape_graph import connected, merge_blocks, through_code, tracked_names, unconnected_block

# rtol by the dtype TensorFlow computed in (float64 reference, so this is TF's own rounding).
DTYPE_RTOL = {"float64": 1e-8, "float32": 1e-4, "float16": 1e-2, "bfloat16": 5e-2}
# rtol by method: the symbolic reference is exact; finite differences carry truncation error.
METHOD_RTOL = {"symbolic": 0.0, "finite_difference": 1e-5, "finite_difference_nested": 1e-4}


# Measured differences (the user's code) that change by more than this share of their
# largest value between two step sizes are too unsteady to judge a derivative by.
UNSTEADY = 0.1


# ---- comparison --------------------------------------------------------------------------


def _dtype_rtol(value: np.ndarray) -> float:
    return DTYPE_RTOL.get(str(value.dtype), 1e-4)


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
                passed=True,
                note="TensorFlow gives None: the code does not use the source here (finite differences find no slope beyond their error)",
            )
            return rec
    if got is None or ref.value is None:
        rec.update(max_abs_error=None, max_rel_error=None, tolerance=None)
        if got is None and ref.value is None:
            rec.update(
                max_abs_error=0.0,
                max_rel_error=0.0,
                passed=True,
                note=f"TensorFlow gives None: {ref.note or 'no path'}",
            )
        elif got is None:
            rec.update(
                passed=False, reason="TensorFlow gives None, but the tape records a path from the source to the target"
            )
        else:
            rec.update(passed=False, reason=f"TensorFlow gives a value, but {ref.note or 'the tape records no path'}")
        return rec
    g = np.asarray(got)
    r = np.asarray(ref.value, dtype=np.float64)
    rtol = max(_dtype_rtol(g), METHOD_RTOL[method_key], ref.rtol)
    if g.shape != r.shape:
        rec.update(
            max_abs_error=None,
            max_rel_error=None,
            tolerance={"rtol": rtol, "atol": None},
            passed=False,
            reason=f"shape {list(g.shape)} differs from the reference's {list(r.shape)}",
        )
        return rec
    g64 = g.astype(np.float64)
    finite_r = r[np.isfinite(r)]
    scale = float(np.max(np.abs(finite_r))) if finite_r.size else 1.0
    if ref.measured and ref.noise / 2 > UNSTEADY * scale:
        # differences that change this much with the step say nothing about TF's value
        rec.update(
            max_abs_error=None,
            max_rel_error=None,
            tolerance={"rtol": rtol, "atol": None},
            passed=False,
            reason=(
                f"not verified: the finite differences{' in ' + ref.precision if ref.precision else ''} change by "
                f"{ref.noise / 2 / scale:.0%} of their size when the steps shrink 4-fold, too much to judge "
                "TensorFlow's value (code that takes float64 is checked in float64)"
            ),
        )
        return rec
    # a measured error scales with the function (the user's code); else numbers of size 1 are assumed
    atol = rtol * (scale if ref.measured else max(1.0, scale)) + ref.noise
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
    if bad.any():
        k = np.argmax(np.where(bad, err, -1.0))
        at = np.unravel_index(k, err.shape)
        where = f" at [{', '.join(map(str, at))}]" if err.ndim else ""
        reasons.append(
            f"TF gives {g64[at]:.9g}, the reference {r[at]:.9g}{where}: error {err[at]:.3g} > allowed {atol + rtol * abs(r[at]):.3g}"
        )
    rec["passed"] = not reasons
    if reasons:
        rec["reason"] = "; ".join(reasons)
    if ref.note:
        rec["note"] = ref.note
    return rec


def _first(a: np.ndarray) -> str:
    v = float(np.asarray(a).ravel()[0])
    return "NaN" if np.isnan(v) else ("inf" if v > 0 and np.isinf(v) else ("-inf" if np.isinf(v) else f"{v:.9g}"))


# ---- orchestration -----------------------------------------------------------------------


def _zeros(req: RequestSpec, fwd: Forward, source: str) -> np.ndarray:
    """What `unconnected: zero` gives, shaped as the request's kind shapes it."""
    return np.zeros(KINDS[req.kind].shape(fwd.base[req.target].shape, fwd.base[source].shape))


def _reference(spec: JobSpec, req: RequestSpec, source: str, fwd: Forward, mode: str, tracked: Set[str]) -> Reference:
    why_not = symbolic_applies(spec, req, fwd) if mode in ("auto", "symbolic") else "finite differences chosen"
    if not connected(spec, req.target, source, tracked):
        # the tape's graph decides: None (or zeros), whichever method would have run
        value = None if req.unconnected == "none" else _zeros(req, fwd, source)
        why = (
            f"the tape does not watch {source}"
            if source not in tracked
            else f"the tape records no path from {source} to {req.target}"
        )
        return Reference(value, "symbolic" if why_not is None else "finite_difference", note=why)
    note = None
    if mode in ("auto", "symbolic"):
        if why_not is None:
            try:
                ref = symbolic_reference(spec, req, source, fwd)
            except Unverifiable as err:  # too large for SymPy: differences decide
                ref = Reference(None, "symbolic", note=str(err))
            except Exception as err:  # SymPy refused (e.g. Max of a complex infinity): differences decide
                ref = Reference(None, "symbolic", note=f"SymPy could not differentiate ({type(err).__name__})")
            if ref.value is not None:
                return ref
            note = (
                f"{ref.note}: finite differences decided whether it is a kink"
                if "switches" in (ref.note or "")
                else f"{ref.note}: finite differences used"
            )
        elif mode == "symbolic":
            note = f"symbolic check does not apply ({why_not}): finite differences used"
    ref = fd_reference(fwd, req, (source,), combined=False)
    ref.opaque = through_code(spec, req.target)
    if ref.opaque:
        measure_error(fwd, req, (source,), False, ref)
    ref.note = note if ref.precision is None else "; ".join(filter(None, [note, _narrow(fwd)]))
    return ref


def _narrow(fwd: Forward) -> str:
    return (
        f"differences taken in {fwd.precision.name}: {fwd.why}"
        if fwd.why
        else "differences taken in the variables' dtype"
    )


def _combined_reference(spec: JobSpec, req: RequestSpec, fwd: Forward, mode: str) -> Reference:
    """jvp/hvp with one value for several sources: all sources move along their tangents."""
    if mode in ("auto", "symbolic") and symbolic_applies(spec, req, fwd) is None:
        try:
            ref = symbolic_reference(spec, req, req.sources[0], fwd, sources=req.sources)
            if ref.value is not None:
                return ref
        except Exception:  # SymPy refused: differences decide
            pass
    ref = fd_reference(fwd, req, req.sources, combined=True)
    ref.opaque = through_code(spec, req.target)
    if ref.opaque:
        measure_error(fwd, req, req.sources, True, ref)
    return ref


def check(spec: JobSpec, req: RequestSpec, got: Any, fwd: Forward, tracked: Set[str]) -> Dict[str, Any]:
    """The `check` record of one derivative; never raises."""
    t0 = time.perf_counter()
    mode = spec.verify
    try:
        if KINDS[req.kind].mode == "forward" and not isinstance(got, Mapping) and len(req.sources) > 1:
            # one tensor for all sources: every source moves along its tangent together
            if not any(connected(spec, req.target, s, tracked) for s in req.sources):
                ref = Reference(
                    None if req.unconnected == "none" else _zeros(req, fwd, req.sources[0]), "finite_difference"
                )
            else:
                ref = _combined_reference(spec, req, fwd, mode)
            rec = compare(got, ref, req)
        elif isinstance(got, Mapping) or req.several:
            if not isinstance(got, Mapping):
                raise Unverifiable("several sources, but TensorFlow's value is not a mapping source -> value")
            if KINDS[req.kind].pairs:
                # a hessian by several sources: a mapping source -> source -> block, every block checked
                rec = _check_blocks(spec, req, got, fwd, mode, tracked)
            else:
                recs = {s: compare(got.get(s), _reference(spec, req, s, fwd, mode, tracked), req) for s in req.sources}
                rec = _merge(recs)
        else:
            rec = compare(got, _reference(spec, req, req.sources[0], fwd, mode, tracked), req)
        values = got.values() if isinstance(got, Mapping) else [got]
        undefined = _undefined(fwd.base[req.target])
        if undefined and any(v is not None for v in values):
            # log(-1): TF's derivative is -1, but there is no function to differentiate
            why = f"the function is undefined here: {req.target} is {undefined} at this point (in float64)"
            rec.update(passed=False, reason="; ".join(filter(None, [why, rec.get("reason")])))
    except Exception as err:  # a check never crashes a run: it fails, saying why
        reason = (
            str(err)
            if isinstance(err, Unverifiable)
            else f"the check could not run: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
        rec = {
            "method": "finite_difference" if mode == "finite_difference" else mode,
            "max_abs_error": None,
            "max_rel_error": None,
            "tolerance": None,
            "passed": False,
            "reason": reason,
        }
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _undefined(value: np.ndarray) -> Optional[str]:
    """ "NaN" or "inf" when some element of the float64 target is not finite, else None."""
    bad = value[~np.isfinite(value)]
    if not bad.size:
        return None
    return "NaN" if np.isnan(bad).any() else "infinite"


def _merge(recs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """One check for several sources: the worst errors, passed when every source passed."""
    methods = sorted({r["method"] for r in recs.values()})
    precisions = sorted({r["precision"] for r in recs.values() if r.get("precision")})
    errs = [r["max_abs_error"] for r in recs.values() if r.get("max_abs_error") is not None]
    rels = [r["max_rel_error"] for r in recs.values() if r.get("max_rel_error") is not None]
    out: Dict[str, Any] = {
        "method": "+".join(methods),
        "max_abs_error": max(errs) if errs else None,
        "max_rel_error": max(rels) if rels else None,
        "tolerance": {s: r.get("tolerance") for s, r in recs.items()},
        "passed": all(r["passed"] for r in recs.values()),
        "reference": {s: r.get("reference") for s, r in recs.items()},
    }
    if precisions:  # differences taken in a narrower dtype than float64 (the code's variables)
        out["precision"] = "+".join(precisions)
    reasons = [f"{s}: {r['reason']}" for s, r in recs.items() if r.get("reason")]
    notes = [f"{s}: {r['note']}" for s, r in recs.items() if r.get("note")]
    if reasons:
        out["reason"] = "; ".join(reasons)
    if notes:
        out["note"] = "; ".join(notes)
    return out


def _check_blocks(
    spec: JobSpec, req: RequestSpec, got: Mapping[str, Any], fwd: Forward, mode: str, tracked: Set[str]
) -> Dict[str, Any]:
    """A hessian by several sources: one reference per block (s, r) (the Jacobian by r of the
    gradient by s), each compared with TensorFlow's block, merged into one record."""
    linked = tuple(s for s in req.sources if connected(spec, req.target, s, tracked))
    exact, note, method = symbolic_blocks(spec, req, fwd, mode, linked)  # every block at once, or why not
    recs: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for s, r in ((s, r) for s in req.sources for r in req.sources):
        row = got.get(s)
        block = row.get(r) if isinstance(row, Mapping) else None
        try:
            unlinked = unconnected_block(spec, req.target, s, r, tracked)
            if unlinked is not None:  # None (or zeros), as TensorFlow gives it
                zeros = np.zeros(fwd.base[s].shape + fwd.base[r].shape)
                ref = Reference(None if req.unconnected == "none" else zeros, method, note=unlinked)
            elif exact is not None:
                ref = Reference(exact[s][r], "symbolic")
            else:
                ref = fd_block(fwd, req, s, r, through_code(spec, req.target))
                ref.note = note if ref.precision is None else "; ".join(filter(None, [note, _narrow(fwd)]))
        except Exception as err:  # this block cannot be checked; the others still are
            why = str(err) if isinstance(err, Unverifiable) else f"{type(err).__name__}: {err}"
            recs[(s, r)] = {"method": method, "passed": False, "reason": why, "unchecked": why}
            continue
        if block is None and ref.value is not None and not ref.opaque:
            # TF's None where the gradient by s has no path to r: right when the reference is 0
            rec = {**compare(np.zeros_like(np.asarray(ref.value, dtype=np.float64)), ref, req), "reference": ref.value}
            said = f"TensorFlow gives None: the gradient by {s} does not depend on {r}"
            rec.update(
                {"note": "; ".join(filter(None, [f"{said} (the reference is 0)", rec.get("note")]))}
                if rec["passed"]
                else {"reason": f"{said}, but the reference is not 0: {rec['reason']}"}
            )
        else:
            rec = compare(block, ref, req)
        recs[(s, r)] = rec
    return merge_blocks(recs)


def check_all(
    spec: JobSpec, values: Mapping[str, Any], derivatives: List[Tuple[RequestSpec, Any]], code: Any = None
) -> List[Dict[str, Any]]:
    """A check record per completed derivative, in order; `values` are the run's input values,
    `code` the user's code when the function is a callable (runner/tape/user_code.py)."""
    if spec.verify == "off" or not derivatives:
        return []
    t0 = time.perf_counter()
    try:
        fwd = Forward(spec, values, code)
    except Exception as err:
        reason = (
            f"the float64 forward pass failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
        return [
            {
                "method": spec.verify,
                "passed": False,
                "reason": reason,
                "max_abs_error": None,
                "max_rel_error": None,
                "tolerance": None,
                "seconds": time.perf_counter() - t0,
            }
            for _ in derivatives
        ]
    tracked = tracked_names(spec)
    return [check(spec, req, got, fwd, tracked) for req, got in derivatives]
