"""Repeats of a sweep, aggregated: `python -m runner.report SWEEP_DIR --over seed`.

The jobs whose overrides are the same once the keys named by `--over` are left out form one
group (`seed=0 point.x=1.0` and `seed=1 point.x=1.0` are the group `point.x=1.0` over `seed`).
For each scalar result of the group's jobs, a value (`z`) or a derivative (`dz/dx`, and each
component of a multi-source one, `df/d(x,y)[x]`), the group gets its mean, standard deviation
(NumPy's, the population's: ddof 0, so 0 for one job) and maximum over the jobs whose log was
read and hold it. Non-scalar results are left out. Reads only files, as the report does.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy as np

from runner.record import report_tables, runlog

DEFAULT_OVER = ("seed",)
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def over_keys(text: str) -> Tuple[str, ...]:
    """`"seed,point.x"` -> ("seed", "point.x"); blanks dropped."""
    return tuple(k.strip() for k in text.split(",") if k.strip())


def key_of(override: str) -> str:
    """The config key an override sets: `+seed=3` -> `seed`."""
    return override.lstrip("+~").partition("=")[0]


def scalars(record: Dict[str, Any]) -> Dict[str, float]:
    """Every scalar result of a run log, by name: values, then derivatives (a multi-source
    derivative's components as `name[source]`)."""
    out: Dict[str, float] = {}
    named = [*record["values"].items(), *((d["name"], d["value"]) for d in record["derivatives"])]
    for name, value in named:
        if isinstance(value, dict) and "array" not in value:
            for part, v in value.items():
                _add(out, f"{name}[{part}]", v)
        else:
            _add(out, name, value)
    return out


def _add(out: Dict[str, float], name: str, v: Any) -> None:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        out[name] = float(v)
    elif isinstance(v, str) and v in _NON_FINITE:
        out[name] = _NON_FINITE[v]


def group(rows: Iterable[Dict[str, Any]], over: Sequence[str]) -> List[Dict[str, Any]]:
    """One group per set of overrides less the `over` keys, in the order of their first job.

    Each row is a summary row (`runner.sweep.summary.collect`) with `scalars` added (empty
    for a job whose log was not read). A group: its `overrides` (the rest), the `over` values
    its jobs took, its `jobs` (their numbers), `size`, `failed` and, per scalar result,
    `{mean, std, max, n}` (`n`: how many jobs hold it)."""
    groups: Dict[Tuple[str, ...], Dict[str, Any]] = {}
    for row in rows:
        rest = tuple(o for o in row["overrides"] if key_of(o) not in over)
        g = groups.setdefault(
            rest, {"overrides": list(rest), "over": {k: [] for k in over}, "jobs": [], "failed": 0, "samples": {}}
        )
        g["jobs"].append(row["job"])
        for o in row["overrides"]:
            if key_of(o) in over:
                g["over"][key_of(o)].append(o.partition("=")[2])
        g["failed"] += 0 if row["met"] else 1
        for name, v in row.get("scalars", {}).items():
            g["samples"].setdefault(name, []).append(v)
    out = []
    for g in groups.values():
        samples = g.pop("samples")
        g["size"] = len(g["jobs"])
        g["results"] = {name: _stats(vs) for name, vs in samples.items()}
        out.append(g)
    return out


def _stats(vs: List[float]) -> Dict[str, Any]:
    a = np.asarray(vs, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf - inf in the deviation: NaN, as it is
        mean, std, top = float(np.mean(a)), float(np.std(a)), float(np.max(a))
    return {"mean": mean, "std": std, "max": top, "n": len(vs)}


def plain(groups: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The groups for JSON: non-finite statistics spelt as the run log spells them."""
    return [
        {**g, "results": {n: {k: runlog.plain(v) for k, v in s.items()} for n, s in g["results"].items()}}
        for g in groups
    ]


def cells(groups: List[Dict[str, Any]]) -> Tuple[List[str], List[List[str]]]:
    """The groups as a table: the overrides, the size, the failures, then one column per
    scalar result holding `mean / std / max`."""
    names = list(dict.fromkeys(n for g in groups for n in g["results"]))
    header = ["group", "jobs", "failed", *[f"{n} (mean / std / max)" for n in names]]
    rows = []
    for g in groups:
        stats = [g["results"].get(n) for n in names]
        rows.append(
            [
                " ".join(g["overrides"]) or "(all)",
                str(g["size"]),
                str(g["failed"]),
                *[
                    "-" if s is None else " / ".join(report_tables.number(s[k]) for k in ("mean", "std", "max"))
                    for s in stats
                ],
            ]
        )
    return header, rows


def swept(rows: Iterable[Dict[str, Any]], over: Sequence[str]) -> bool:
    """Whether any job's overrides set one of the `over` keys (the grouping means something)."""
    return any(key_of(o) in over for row in rows for o in row["overrides"])


def title(over: Sequence[str], groups: List[Dict[str, Any]], jobs: int) -> str:
    return f"over {', '.join(over)}: {len(groups)} group{'' if len(groups) == 1 else 's'} of {jobs} jobs; each result's mean / std / max"
