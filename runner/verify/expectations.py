"""Judge a run against what its config declared under `expect`.

A run with no declaration is as declared when it completed without error. A declared
`error: TYPE` is met only when the run failed with exactly that type. Declared derivative
values are met when every number is within `atol + rtol * |expected|` (NumPy's `isclose`);
an expected NaN, Infinity or -Infinity is written as the run log spells it, as text ("NaN",
"Infinity", "-Infinity": `runner.config.spec` refuses a float NaN or inf, and any other text),
and NaN matches NaN.
A declared `checks: pass` is met when every derivative's independent check
(:mod:`runner.verify.check`) passed: a `failed` check and an `unverified` one (no reference
could judge the value) both fail the run, and the mismatch says which. Without it, a check
that did not pass is reported but judges nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from runner.config.expect import ExpectSpec
from runner.record.console import outcome


@dataclass
class Verdict:
    met: bool
    mismatches: List[str] = field(default_factory=list)


def judge(
    expect: Optional[ExpectSpec],
    error_type: Optional[str],
    derivatives: Dict[str, Any],
    checks: Optional[Dict[str, Dict[str, Any]]] = None,
) -> Verdict:
    """`derivatives` maps each completed request's name to its value (array, None or mapping);
    `checks` maps it to its check record (`outcome`, `reason`), when checks ran."""
    if expect is None:
        if error_type is None:
            return Verdict(True)
        return Verdict(False, [f"unexpected {error_type}"])
    problems: List[str] = []
    if expect.error is None and error_type is not None:
        problems.append(f"unexpected {error_type}")
    elif expect.error is not None and error_type != expect.error:
        got = error_type or "no error"
        problems.append(f"expected {expect.error}, got {got}")
    for name, want in expect.derivatives.items():
        if name not in derivatives:
            problems.append(f"{name}: expected {want}, but the request did not complete")
            continue
        problem = _compare(name, want, derivatives[name], expect.rtol, expect.atol)
        if problem:
            problems.append(problem)
    if expect.checks == "pass":
        checks = checks or {}
        for name in derivatives:
            check = checks.get(name)
            if check is None:
                problems.append(f"{name}: no check ran")
            elif outcome(check) != "passed":
                state = "unverified" if outcome(check) == "unverified" else "failed"
                problems.append(
                    f"{name}: check {state} ({check.get('method')}): {check.get('reason', 'no reason given')}"
                )
    return Verdict(not problems, problems)


def _compare(name: str, want: Any, got: Any, rtol: float, atol: float) -> Optional[str]:
    if isinstance(want, dict) or isinstance(got, dict):
        if not (isinstance(want, dict) and isinstance(got, dict)) or set(want) != set(got):
            return f"{name}: expected {want}, got {_short(got)}"
        for k in want:
            p = _compare(f"{name}[{k}]", want[k], got[k], rtol, atol)
            if p:
                return p
        return None
    if want is None or got is None:
        return None if want is None and got is None else f"{name}: expected {want}, got {_short(got)}"
    try:
        w = np.asarray(want, dtype=np.float64)  # reads "NaN", "Infinity", "-Infinity" as floats
        g = np.asarray(got, dtype=np.float64)
        ok = w.shape == g.shape or w.ndim == 0
        ok = ok and bool(np.all(np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True)))
    except (TypeError, ValueError):
        ok = False
    if ok:
        return None
    return f"{name}: expected {want}, got {_short(got)} (rtol={rtol}, atol={atol})"


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return str(v.tolist()) if v.size <= 8 else f"array of shape {list(v.shape)}"
    return str(v)
