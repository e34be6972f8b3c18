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

Every check has one of three outcomes (`outcome`; `passed` is true only for the first):
`passed`; `failed`, a real disagreement, whose record counts the elements that disagree
(`mismatched` of `elements`) and names the worst; `unverified`, when no reference could
judge the value (too many elements for finite differences, differences of the user's code
too unsteady, a float64 pass or a check that could not run), with the `reason`. A check that
covered only part of a derivative says which part in `coverage`. NumPy's floating-point
warnings never reach the console: the checks' overflow and NaN are in their records.

Tolerances and outcomes (runner/verify/compare.py, docs/verification.md): a check passes when every element satisfies
|tf - ref| <= atol + rtol * |ref| with rtol = max(rtol of the run's dtype, rtol of the
method) and atol = rtol * max(1, max |ref|) (+ the finite differences' rounding noise).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

import numpy as np

from runner.config.kinds import KINDS
from runner.config.spec import JobSpec, RequestSpec
from runner.verify import projection
from runner.verify.batched_differences import batched_reference
from runner.verify.compare import (
    FAILED,
    PASSED,
    UNVERIFIED,
    compare,
    set_outcome,
    unverified,
)
from runner.verify.finite_differences import Forward, Reference, Unverifiable, fd_block, fd_reference, measure_error
from runner.verify.symbolic_reference import symbolic_applies, symbolic_blocks, symbolic_reference
from runner.verify.tape_graph import connected, merge_blocks, through_code, tracked_names, unconnected_block

# ---- orchestration -----------------------------------------------------------------------


def _zeros(req: RequestSpec, fwd: Forward, source: str) -> np.ndarray:
    """What `unconnected: zero` gives, shaped as the request's kind shapes it."""
    return np.zeros(KINDS[req.kind].shape(fwd.base[req.target].shape, fwd.base[source].shape))


def _reference(
    spec: JobSpec, req: RequestSpec, source: str, fwd: Forward, mode: str, tracked: Set[str], got: Any = None
) -> Reference:
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
                ref = symbolic_reference(spec, req, source, fwd, got=got)
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
    ref = fd_reference(fwd, req, (source,), False, lambda: batched_reference(spec, fwd, req, source))
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
                ref = _projected(lambda: _combined_reference(spec, req, fwd, mode), spec, req, got, fwd, req.sources)
            rec = ref if isinstance(ref, dict) else compare(got, ref, req)
        elif isinstance(got, Mapping) or req.several:
            if not isinstance(got, Mapping):
                raise Unverifiable("several sources, but TensorFlow's value is not a mapping source -> value")
            if KINDS[req.kind].pairs:
                # a hessian by several sources: a mapping source -> source -> block, every block checked
                rec = _check_blocks(spec, req, got, fwd, mode, tracked)
            else:

                def one(s: str) -> Dict[str, Any]:
                    return _compared(spec, req, got.get(s), fwd, mode, tracked, s)

                recs = {s: _judged(mode, one, s) for s in req.sources}
                rec = projection.carry(_merge(recs), recs)
        else:
            rec = _compared(spec, req, got, fwd, mode, tracked, req.sources[0])
        values = got.values() if isinstance(got, Mapping) else [got]
        # known finite (its formula and the run's value) needs no float64 re-run to say so
        undefined = None if fwd.finite(req.target) else _undefined(fwd.base[req.target])
        if undefined and any(v is not None for v in values):
            # log(-1): TF's derivative is -1, but there is no function to differentiate
            why = f"the function is undefined here: {req.target} is {undefined} at this point (in float64)"
            set_outcome(rec, FAILED, "; ".join(filter(None, [why, rec.get("reason")])))
    except Exception as err:  # a check never crashes a run: it is unverified, saying why
        rec = unverified(_mode_method(mode), _why_not(err))
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _compared(
    spec: JobSpec, req: RequestSpec, got: Any, fwd: Forward, mode: str, tracked: Set[str], source: str
) -> Dict[str, Any]:
    ref = _projected(lambda: _reference(spec, req, source, fwd, mode, tracked, got), spec, req, got, fwd, (source,))
    return ref if isinstance(ref, dict) else compare(got, ref, req)


def _projected(
    reference: Callable[[], Reference],
    spec: JobSpec,
    req: RequestSpec,
    got: Any,
    fwd: Forward,
    sources: Tuple[str, ...],
) -> Any:
    """`reference()`, or where a source is too large for element-wise differences the record of
    a projection (runner/verify/projection.py)."""
    try:
        return reference()
    except Unverifiable as err:
        if not projection.takes(fwd, req, sources):
            raise
        return projection.check(spec, req, got, fwd, sources[:1], through_code(spec, req.target), str(err))


def _judged(mode: str, run: Callable[[str], Dict[str, Any]], source: str) -> Dict[str, Any]:
    """The record `run` gives for one source, or an unverified one saying why it could not run."""
    try:
        return run(source)
    except Exception as err:
        return unverified(_mode_method(mode), _why_not(err))


def _mode_method(mode: str) -> str:
    return "finite_difference" if mode == "finite_difference" else mode


def _why_not(err: Exception) -> str:
    if isinstance(err, Unverifiable):
        return str(err)
    return f"the check could not run: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def _undefined(value: np.ndarray) -> Optional[str]:
    """ "NaN" or "inf" when some element of the float64 target is not finite, else None."""
    bad = value[~np.isfinite(value)]
    if not bad.size:
        return None
    return "NaN" if np.isnan(bad).any() else "infinite"


def _merge(recs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """One check for several sources: the worst errors; failed when any source failed, else
    unverified when any is, else passed."""
    methods = sorted({r["method"] for r in recs.values()})
    precisions = sorted({r["precision"] for r in recs.values() if r.get("precision")})
    errs = [r["max_abs_error"] for r in recs.values() if r.get("max_abs_error") is not None]
    rels = [r["max_rel_error"] for r in recs.values() if r.get("max_rel_error") is not None]
    out: Dict[str, Any] = {
        "method": "+".join(methods),
        "max_abs_error": max(errs) if errs else None,
        "max_rel_error": max(rels) if rels else None,
        "tolerance": {s: r.get("tolerance") for s, r in recs.items()},
        "reference": {s: r.get("reference") for s, r in recs.items()},
    }
    outcomes = {r.get("outcome", PASSED if r.get("passed") else FAILED) for r in recs.values()}
    set_outcome(out, FAILED if FAILED in outcomes else UNVERIFIED if UNVERIFIED in outcomes else PASSED)
    counted = [r for r in recs.values() if "elements" in r]
    if counted:
        out["mismatched"] = sum(r["mismatched"] for r in counted)
        out["elements"] = sum(r["elements"] for r in counted)
    if precisions:  # differences taken in a narrower dtype than float64 (the code's variables)
        out["precision"] = "+".join(precisions)
    reasons = [f"{s}: {r['reason']}" for s, r in recs.items() if r.get("reason")]
    notes = [f"{s}: {r['note']}" for s, r in recs.items() if r.get("note")]
    covered = [f"{s}: {r['coverage']}" for s, r in recs.items() if r.get("coverage")]
    if covered:
        out["coverage"] = "; ".join(covered)
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
            if isinstance(err, Unverifiable) and projection.takes(fwd, req, (s, r)):  # too large: projected
                recs[(s, r)] = projection.check(spec, req, block, fwd, (s, r), through_code(spec, req.target), str(err))
                continue
            why = str(err) if isinstance(err, Unverifiable) else f"{type(err).__name__}: {err}"
            recs[(s, r)] = {**unverified(method, why), "unchecked": why}
            continue
        if block is None and ref.value is not None and not ref.opaque:
            # TF's None where the gradient by s has no path to r: right when the reference is 0
            rec = {**compare(np.zeros_like(np.asarray(ref.value, dtype=np.float64)), ref, req), "reference": ref.value}
            said = f"TensorFlow gives None: the gradient by {s} does not depend on {r}"
            if rec["passed"]:
                rec["note"] = "; ".join(filter(None, [f"{said} (the reference is 0)", rec.get("note")]))
            else:
                set_outcome(rec, FAILED, f"{said}, but the reference is not 0: {rec['reason']}")
        else:
            rec = compare(block, ref, req)
        recs[(s, r)] = rec
    out = projection.carry(merge_blocks(recs), recs)
    # failed when any block failed, else unverified when any could not be judged, else passed
    outcomes = {rec.get("outcome", PASSED if rec.get("passed") else FAILED) for rec in recs.values()}
    counted = [rec for rec in recs.values() if "elements" in rec]
    if counted:
        out.update(mismatched=sum(r["mismatched"] for r in counted), elements=sum(r["elements"] for r in counted))
    return set_outcome(out, FAILED if FAILED in outcomes else UNVERIFIED if UNVERIFIED in outcomes else PASSED)


def check_all(
    spec: JobSpec, values: Mapping[str, Any], derivatives: List[Tuple[RequestSpec, Any]], code: Any = None
) -> List[Dict[str, Any]]:
    """A check record per completed derivative, in order; `values` are the run's input values,
    `code` the user's code when the function is a callable (runner/tape/user_code.py)."""
    if spec.verify == "off" or not derivatives:
        return []
    # overflow and NaN in the references are the checks' to judge and record, never a
    # RuntimeWarning on the console
    with np.errstate(all="ignore"):
        t0 = time.perf_counter()
        try:
            fwd = Forward(spec, values, code)
        except Exception as err:
            reason = (
                f"the float64 forward pass failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            )
            return [{**unverified(spec.verify, reason), "seconds": time.perf_counter() - t0} for _ in derivatives]
        tracked = tracked_names(spec)
        return [check(spec, req, got, fwd, tracked) for req, got in derivatives]
