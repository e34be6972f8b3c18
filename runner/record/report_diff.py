"""Two runs side by side: `python -m runner.report --diff RUN_A RUN_B`.

One difference per line, in this order: the overrides, the outcome (status, error type,
verdict on `expect`), each value and derivative (compared as `runner.rerun` compares a rerun
with its log: the same bits, tensors kept in arrays.npz included, or the largest |difference|),
each derivative's check (method, outcome, largest absolute and relative errors) and the
environment (every entry, nested ones by dotted name), less what differs between any two
runs: the process id, the command line, the working folder, TensorFlow's start-up messages
and the timings. Reads only files: NumPy for the tensors, no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from runner.config import overrides
from runner.record import console, report_tables

# environment entries that differ between any two runs, whatever they computed
PER_PROCESS = ("pid", "argv", "command", "cwd", "tensorflow_startup")
CHECK_FIELDS = ("method", "outcome", "max_abs_error", "max_rel_error")


def differences(a: Path, rec_a: Dict[str, Any], b: Path, rec_b: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each difference as `{"what", "name", "a", "b"}` (and `largest_difference` for numbers
    that differ); `a`/`b` as logged, None where one run has no such entry. A corrupt
    arrays.npz is a `log_reader.BadLog`."""
    from runner import rerun  # NumPy; the comparison a rerun makes

    out: List[Dict[str, Any]] = []

    def add(what: str, name: str, x: Any, y: Any, **more: Any) -> None:
        out.append({"what": what, "name": name, "a": x, "b": y, **more})

    over_a, over_b = overrides.overrides(a), overrides.overrides(b)
    if over_a != over_b:
        add("overrides", "", over_a, over_b)
    for name, x, y in [
        ("status", rec_a["status"], rec_b["status"]),
        ("error", (rec_a["error"] or {}).get("type"), (rec_b["error"] or {}).get("type")),
        ("expect met", rec_a["expect"]["met"], rec_b["expect"]["met"]),
    ]:
        if x != y:
            add("outcome", name, x, y)

    logged_a, logged_b = _logged(rec_a), _logged(rec_b)
    items_a, items_b = rerun._loaded(a, rec_a), rerun._loaded(b, rec_b)  # the same loading as a rerun's
    for label in dict.fromkeys([*items_a, *items_b]):
        what, _, name = label.partition(" ")
        x, y = logged_a.get(label), logged_b.get(label)
        if label not in items_a or label not in items_b:
            add(what, name, x, y)
            continue
        verdict, largest = rerun.compare(items_a[label], items_b[label], 0.0, 0.0)
        if verdict != "identical":
            add(what, name, x, y, **({"largest_difference": largest} if largest is not None else {}))

    checks_a, checks_b = _checks(rec_a), _checks(rec_b)
    for name in dict.fromkeys([*checks_a, *checks_b]):
        ca, cb = checks_a.get(name) or {}, checks_b.get(name) or {}
        for field in CHECK_FIELDS:
            if ca.get(field) != cb.get(field):
                add("check", f"{name} {field}", ca.get(field), cb.get(field))

    env_a, env_b = flat(rec_a["environment"]), flat(rec_b["environment"])
    for key in sorted(set(env_a) | set(env_b)):
        if env_a.get(key) != env_b.get(key):
            add("environment", key, env_a.get(key), env_b.get(key))
    return out


def _logged(rec: Dict[str, Any]) -> Dict[str, Any]:
    """Each value and derivative as logged, by the label `runner.rerun.items` gives it."""
    out = {f"value {k}": v for k, v in rec["values"].items()}
    out.update({f"{d['kind']} {d['name']}": d["value"] for d in rec["derivatives"]})
    return out


def _checks(rec: Dict[str, Any]) -> Dict[str, Optional[Dict[str, Any]]]:
    return {
        d["name"]: {**d["check"], "outcome": console.outcome(d["check"])} if isinstance(d.get("check"), dict) else None
        for d in rec["derivatives"]
    }


def flat(env: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """The environment by dotted names (`reproducibility.seed`), less `PER_PROCESS`."""
    out: Dict[str, Any] = {}
    for key, v in env.items():
        if not prefix and key in PER_PROCESS:
            continue
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = v
    return out


def line(d: Dict[str, Any]) -> str:
    """One difference in one line: `value y: 9.0 -> 16.0 (largest |difference| 7)`."""
    if d["what"] == "overrides":
        return f"overrides: {' '.join(d['a']) or '(none)'} -> {' '.join(d['b']) or '(none)'}"
    shown = [_cell(d, k) for k in ("a", "b")]
    largest = d.get("largest_difference")
    more = f" (largest |difference| {largest:.3g})" if isinstance(largest, float) else ""
    return f"{d['what']} {d['name']}: {shown[0]} -> {shown[1]}{more}"


def _show(what: str, v: Any) -> str:
    if v is None:
        return "(none)"
    if what in ("outcome", "check", "environment"):
        return _short(str(v))
    try:
        return _short(console.show(v))
    except Exception:  # a shape no run log has: still one line
        return "?"


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def md(found: List[Dict[str, Any]]) -> List[str]:
    """The differences as a Markdown table: what, name, the first run's, the second's."""
    rows = [[d["what"], d["name"], *(_cell(d, k) for k in ("a", "b"))] for d in found]
    return report_tables.md_table(["what", "name", "a", "b"], rows)


def _cell(d: Dict[str, Any], side: str) -> str:
    return " ".join(d[side]) if d["what"] == "overrides" else _show(d["what"], d[side])


def text(a: Path, b: Path, found: List[Dict[str, Any]]) -> List[str]:
    lines = [f"diff of {a} and {b}"]
    lines += [f"  {line(d)}" for d in found]
    lines.append(f"{len(found)} difference{'' if len(found) == 1 else 's'}" if found else "no differences")
    return lines
