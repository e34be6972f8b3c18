"""`expect`: the outcome a config declares, validated (imports no TensorFlow).

A run that differs from what it declares has failed (runner/verify/expectations.py judges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from runner.errors import ConfigError, short


@dataclass(frozen=True)
class ExpectSpec:
    error: Optional[str]
    derivatives: Dict[str, Any]
    rtol: float
    atol: float
    checks: Optional[str] = None  # "pass": every derivative's check must pass

    def declared(self) -> Dict[str, Any]:
        """What the run log records under `expect.declared`."""
        out: Dict[str, Any] = {}
        if self.error is not None:
            out["error"] = self.error
        if self.derivatives:
            out["derivatives"] = dict(self.derivatives)
            out["rtol"] = self.rtol
            out["atol"] = self.atol
        if self.checks is not None:
            out["checks"] = self.checks
        return out


def build(raw: Any, request_names: List[str]) -> Optional[ExpectSpec]:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError("expect", f"expected a mapping (error, derivatives, rtol, atol), got {raw!r}")
    error = raw.get("error")
    if error is not None and (not isinstance(error, str) or not error.isidentifier()):
        raise ConfigError("expect.error", f"expected an exception type name such as RuntimeError, got {error!r}")
    derivs = raw.get("derivatives") or {}
    if not isinstance(derivs, Mapping):
        raise ConfigError("expect.derivatives", f"expected a mapping request name -> value, got {short(derivs)}")
    for n in derivs:
        if n not in request_names:
            raise ConfigError(
                f"expect.derivatives.{n}", f"no derivative request is named {n!r}; names: {', '.join(request_names)}"
            )
        _expected(f"expect.derivatives.{n}", derivs[n])
    checks = raw.get("checks")
    if checks is not None and checks != "pass":
        raise ConfigError(
            "expect.checks", f"expected pass (every derivative's check must pass) or null, got {checks!r}"
        )
    rtol, atol = (_tolerance(f"expect.{k}", raw.get(k, 1e-6)) for k in ("rtol", "atol"))
    if error is None and not derivs and checks is None:
        return None  # `expect` with nothing declared (e.g. expect.error=null) declares nothing
    return ExpectSpec(error, dict(derivs), rtol, atol, checks)


# How the run log spells non-finite numbers (runner.record.runlog.plain); an expected value
# may use them, and only them, to expect NaN or an infinity.
NON_FINITE = ("NaN", "Infinity", "-Infinity")


def _tolerance(key: str, value: Any) -> float:
    try:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= float(value) < math.inf
    except OverflowError:  # an int beyond any float
        ok = False
    if not ok:
        raise ConfigError(key, f"expected a finite number >= 0, got {short(value)}")
    return float(value)


def _expected(key: str, value: Any) -> None:
    """An expected value: a finite number, a run-log spelling of a non-finite one, null (a
    gradient TensorFlow gives as None), nested lists of these, or a mapping source -> value.

    A float NaN or infinity is refused: `1e400` reads as inf, so the number may not be what
    its writer meant; the strings say it plainly, as the run log does.
    """
    if value is None or (isinstance(value, str) and value in NON_FINITE):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            _expected(f"{key}.{k}", v)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _expected(f"{key}[{i}]", v)
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(
            key,
            f"expected a number, a nested list of numbers, null, or {', '.join(map(repr, NON_FINITE))}; "
            f"got {short(value)}",
        )
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ConfigError(
            key,
            f"{short(value)} is not a finite number; to expect a non-finite value write it as the run log "
            f"does, as text: {', '.join(map(repr, NON_FINITE[:2]))} or {NON_FINITE[2]!r}",
        )
