"""What a job puts into MLflow (`log.mlflow`), computed from its run log: no MLflow here.

- params: the job's overrides (`point.x` -> "3.0", a group choice `experiment` -> its
  option) and every scalar of its resolved `function`, `point`, `tape`, `expect`, `verify`,
  `seed` and `determinism`, flattened with dots (`tape.persistent` -> "True");
- metrics: the scalar values (`values.y`), the scalar parts of each derivative as
  summary.csv shows them (`derivatives.dz/dx`, `derivatives.df/d_x_y.x`), each check's
  `max_abs_error`, `max_rel_error` and `passed` (1 or 0; none when unverified), and the
  timings (`timing.forward_s`); NaN stays NaN, MLflow stores +-Infinity as +-1.8e308;
- tags: `runner.status`, `runner.expect_met`, the runner's version, the git commit of the
  configs (else of the runner) as `mlflow.source.git.commit`, and where the job ran;
- artifacts: results.json, arrays.npz, the plots and `.hydra/`, regular files only.

MLflow's own limits are kept here: a key holds letters, digits and `_ - . : / space`
(anything else becomes `_`), at most 250 characters, no
empty, `.` or `..` segment between slashes; a param's value at most 6,000.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import runner
from runner.record import runlog

PARAM_SECTIONS = ("function", "point", "tape", "expect", "verify", "seed", "determinism", "name")
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
_BAD_KEY_CHARS = re.compile(r"[^\w\-. :/]")
_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
ARTIFACT_FILES = (runlog.RESULTS_FILE, runlog.ARRAYS_FILE)
HYDRA_FOLDER = ".hydra"


def key(text: str) -> str:
    """An MLflow key: `df/d(x,y)[x]` -> `df/d_x_y.x`; other characters MLflow refuses -> `_`."""
    text = text.replace("]", "").replace("[", ".").replace("(", "_").replace(")", "").replace(",", "_")
    text = _BAD_KEY_CHARS.sub("_", text)[:MAX_KEY]
    # MLflow refuses a key that a path would normalize to another (`g/`, `a//b`, `a/../b`),
    # and with it the whole batch: such a segment becomes `_`s
    return "/".join(p if p not in ("", ".", "..") else "_" * max(1, len(p)) for p in text.split("/"))


def params(cfg: Mapping[str, Any], overrides: Sequence[str] = ()) -> Dict[str, str]:
    """The job's params: its overrides as given, then the scalars of its resolved config."""
    out: Dict[str, str] = {}
    for text in overrides:
        name, _, value = text.lstrip("+~").partition("=")
        out.setdefault(key(name.partition("@")[0]), _param_value(value))
    for section in PARAM_SECTIONS:
        if section in cfg:
            for name, value in _flat(section, cfg[section]):
                out.setdefault(key(name), _param_value(value))
    return out


def _flat(prefix: str, node: Any) -> Iterator[Tuple[str, Any]]:
    """(dotted key, scalar) for each scalar under `node`; lists of scalars count as one."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _flat(f"{prefix}.{k}", v)
    elif isinstance(node, (list, tuple)):
        if all(_scalar(v) for v in node):
            yield prefix, json.dumps(list(node), default=str)
        else:
            for i, v in enumerate(node):
                yield from _flat(f"{prefix}.{i}", v)
    elif _scalar(node):
        yield prefix, node


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _param_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."


def metrics(record: Mapping[str, Any]) -> Dict[str, float]:
    """The job's metrics from its run log (see the module's docstring)."""
    from runner.sweep.progress import components  # summary.csv's scalar parts, the same labels

    out: Dict[str, float] = {}
    named: Dict[str, str] = {}  # key -> the label it stands for

    def put(name: str, value: Any) -> None:
        number = _number(value)
        if number is None:
            return
        k, n = key(name), 1
        while named.get(k, name) != name:  # another label made the same key (`df/d(x,y)`, `df/d_x_y`)
            n += 1
            k = f"{key(name)[: MAX_KEY - 8]}_{n}"
        if k not in named:
            named[k], out[k] = name, number

    for name, value in (record.get("values") or {}).items():
        put(f"values.{name}", value)
    for rec in record.get("derivatives") or []:
        for label, value in components(rec["name"], rec.get("value")):
            put(f"derivatives.{label}", value)
        check = rec.get("check")
        if isinstance(check, Mapping):
            for field in ("max_abs_error", "max_rel_error"):
                put(f"checks.{rec['name']}.{field}", check.get(field))
            if check.get("outcome") in ("passed", "failed"):
                put(f"checks.{rec['name']}.passed", 1.0 if check["outcome"] == "passed" else 0.0)
    for name, value in (record.get("timing") or {}).items():
        if name != "started":
            put(f"timing.{name}", value)
    return out


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    return None


def tags(record: Mapping[str, Any], output_dir: Path, overrides: Sequence[str] = ()) -> Dict[str, str]:
    """The job's tags: outcome, versions, commit, folder, overrides."""
    env = record.get("environment") or {}
    out = {
        "runner.experiment": str(record.get("experiment")),
        "runner.status": str(record.get("status")),
        "runner.expect_met": "true" if (record.get("expect") or {}).get("met") else "false",
        "runner.version": runner.__version__,
        "runner.output_dir": str(output_dir.resolve()),
        "runner.overrides": _param_value(" ".join(overrides)),
    }
    commit = git_commit(env)
    if commit:
        out["mlflow.source.git.commit"] = commit
    return out


def git_commit(env: Mapping[str, Any]) -> Optional[str]:
    """The commit of the configs' repository, else of the runner's own checkout."""
    states: List[Any] = list((env.get("git") or {}).values()) + [env.get("runner_git")]
    for state in states:
        if isinstance(state, Mapping) and isinstance(state.get("commit"), str):
            return str(state["commit"])
    return None


def artifacts(output_dir: Path) -> List[Tuple[Path, str]]:
    """(file, folder in the run's artifacts) for each file to log: results.json, arrays.npz,
    the plots, `.hydra/*`; regular files only (a link or FIFO planted there is not read)."""
    out: List[Tuple[Path, str]] = []
    names = [*ARTIFACT_FILES, *sorted(p.name for p in _entries(output_dir) if p.name.endswith(".png"))]
    for name in names:
        if _regular(output_dir / name):
            out.append((output_dir / name, ""))
    hydra = output_dir / HYDRA_FOLDER
    if _is_dir(hydra):
        out.extend((p, HYDRA_FOLDER) for p in sorted(_entries(hydra)) if _regular(p))
    return out


def _entries(folder: Path) -> List[Path]:
    try:
        return [Path(e.path) for e in os.scandir(folder)]
    except OSError:
        return []


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
