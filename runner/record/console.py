"""What a run prints: a short table of values and derivatives, the outcome and the folder."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

_MAX_SHOWN = 6


def show(value: Any) -> str:
    """A value as a person reads it: 75.0, [1.0, 2.0], array(shape=[1000], mean=0.5)."""
    if value is None:
        return "None"
    if isinstance(value, dict):
        if "array" in value and "summary" in value:
            s = value["summary"]
            stats = ", ".join(f"{k}={_num(v)}" for k, v in s.items() if k != "non_finite")
            return f"array(shape={value['array']['shape']}, {stats})"
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        flat = np.asarray(value, dtype=object).ravel()
        if flat.size > _MAX_SHOWN:
            return f"[{', '.join(_num(v) for v in flat[:_MAX_SHOWN])}, ...] (shape={list(np.shape(value))})"
        return str(_nums(value))
    return _num(value)


def _nums(v: Any) -> Any:
    if isinstance(v, list):
        return [_nums(x) for x in v]
    return float(_num(v)) if isinstance(v, float) else v


def _num(v: Any) -> str:
    if isinstance(v, float):
        text = f"{v:.7g}"
        return text if any(c in text for c in ".eni") else text + ".0"
    return str(v)


OUTCOMES = ("passed", "failed", "unverified")


def outcome(check: Any) -> Optional[str]:
    """A check record's outcome: passed, failed or unverified (a log written before checks
    had outcomes: from its `passed` flag); None when there is no check."""
    if not isinstance(check, dict):
        return None
    if check.get("outcome") in OUTCOMES:
        return str(check["outcome"])
    passed = check.get("passed")
    return None if not isinstance(passed, bool) else "passed" if passed else "failed"


def check_summary(check: Dict[str, Any]) -> str:
    """One derivative's check in brackets: [symbolic: ok, error 2.1e-08], [finite_difference: FAILED]
    or [auto: unverified]; `, part` when it covered only part of the derivative (`coverage`)."""
    part = ", part" if check.get("coverage") else ""
    state = outcome(check)
    if state == "passed":
        err = check.get("max_abs_error")
        shown = f", error {err:.2g}" if isinstance(err, float) else ""
        return f"[{check['method']}: ok{shown}{part}]"
    return f"[{check['method']}: {'unverified' if state == 'unverified' else 'FAILED'}{part}]"


_ALIGN_AT_MOST = 40  # characters of a value after which checks are aligned
_LINE_AT_MOST = 200  # characters of a warning or error shown; results.json holds it whole


def clip(text: str, limit: int = _LINE_AT_MOST) -> str:
    """`text` cut to about `limit` characters at the end of a sentence, or else of a word,
    never inside one; what is left out is marked ` [...]` (the log holds it whole)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    sentence = max(head.rfind(". "), head.rfind("; "))
    if sentence >= limit // 3:
        return head[: sentence + 1] + " [...]"
    space = head.rfind(" ")
    return (head[:space] if space >= limit // 3 else head).rstrip(" ,;:") + " [...]"


def status_line(record: Dict[str, Any]) -> str:
    """`status: ok (as declared)`: all a quiet run prints."""
    return f"status: {record['status']} ({'as declared' if record['expect']['met'] else 'FAILED'})"


def table(record: Dict[str, Any], folder: str) -> str:
    """The console summary of one run's log record."""
    rows: List[tuple] = [("value", k, show(v), None) for k, v in record["values"].items()]
    rows += [(d["kind"], d["name"], show(d["value"]), d.get("check")) for d in record["derivatives"]]
    width = max((len(r[1]) for r in rows), default=0)
    kindw = max((len(r[0]) for r in rows), default=0)
    # checks line up after the values that fit _ALIGN_AT_MOST; a longer value (a Hessian's
    # matrix) is followed by its check directly, and moves no other row's
    textw = max((len(r[2]) for r in rows if r[3] and len(r[2]) <= _ALIGN_AT_MOST), default=0)
    lines = [f"{record['experiment']}"]
    for kind, name, text, check in rows:
        if not check:
            lines.append(f"  {kind:<{kindw}}  {name:<{width}} = {text}")
            continue
        lines.append(f"  {kind:<{kindw}}  {name:<{width}} = {text:<{textw}}  {check_summary(check)}")
        if check.get("coverage"):
            lines.append(f"  {'':<{kindw}}  {'':<{width}}   checked: {check['coverage']}")
        if check.get("reason"):
            lines.append(f"  {'':<{kindw}}  {'':<{width}}   check: {check['reason']}")
    for warning in record.get("warnings") or []:
        lines.append(f"  warning: {clip(warning.splitlines()[0] if warning else '')}")
    err = record.get("error")
    if err:
        at = err.get("derivative") or err.get("step")
        lines.append(
            f"  error: {err['type']}"
            + (f" at {at}" if at else "")
            + f": {clip((err['message'].splitlines() or [''])[0])}"
        )
    expect = record["expect"]
    if expect["declared"] or not expect["met"]:
        state = "met" if expect["met"] else "NOT met: " + "; ".join(expect.get("mismatches", []))
        lines.append(f"  expect: {expect['declared'] or 'no error'} -> {state}")
    verdict = "as declared" if expect["met"] else "FAILED"
    lines.append(f"status: {record['status']} ({verdict})")
    lines.append(f"run folder: {folder}")
    tracked = (record.get("tracking") or {}).get("mlflow") or {}
    if tracked.get("run_id"):
        lines.append(f"mlflow run: {tracked['run_id']} (experiment {tracked['experiment_id']}) at {tracked['uri']}")
    return "\n".join(lines)


# A pipe's writer ends with this status when its reader left (128 + SIGPIPE).
CLOSED_PIPE = 141


def emit(text: str) -> bool:
    """Print `text` to stdout; False when the reader closed the pipe (`... | head`), whose
    output then goes nowhere, with no BrokenPipeError traceback at exit."""
    import os
    import sys

    try:
        print(text)
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
