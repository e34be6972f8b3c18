"""`python -m runner.report [PATH]`: what ran, from the logs alone.

With a folder of runs (default `outputs`): one line per run and per sweep, oldest first,
with its date, experiment, outcome and first derivatives. With one run folder: that run in
detail (its table, overrides, environment, timing and files). With one sweep folder: the
sweep's summary table. Reads only files; imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from runner.config import overrides
from runner.record import console, runlog
from runner.sweep import progress

MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
_KEY_DERIVATIVES = 3


def find(root: Path) -> Iterator[Path]:
    """Run folders (with results.json) and sweep folders (with multirun.yaml) under root;
    a sweep's own jobs are not listed apart from it, hidden folders are skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if MULTIRUN_FILE in files:
            dirs[:] = []
            yield Path(folder)
        elif runlog.RESULTS_FILE in files:
            dirs[:] = []
            yield Path(folder)


def _load(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _date(ts: Optional[float]) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "?"


def entry(folder: Path) -> Dict[str, Any]:
    """One line of the listing, as a mapping (date, kind, experiment, outcome, derivatives)."""
    if (folder / MULTIRUN_FILE).is_file():
        from runner.sweep import summary

        rows = summary.collect(folder)
        records = [_load(Path(r["folder"]) / runlog.RESULTS_FILE) for r in rows]
        started = min((r["timing"]["started"] for r in records if r and "started" in r.get("timing", {})), default=None)
        experiments = sorted({r["experiment"] for r in records if r})
        failed = sum(1 for r in rows if not r["met"])
        return {
            "date": _date(started or folder.stat().st_mtime),
            "kind": "sweep",
            "experiment": ", ".join(experiments) or "?",
            "outcome": f"{len(rows)} jobs, {failed} failed",
            "derivatives": "",
            "folder": str(folder),
        }
    rec = _load(folder / runlog.RESULTS_FILE) or {}
    derivs = [(d["name"], d["value"]) for d in rec.get("derivatives", [])]
    shown = ", ".join(f"{n} = {_short(console.show(v))}" for n, v in derivs[:_KEY_DERIVATIVES])
    if len(derivs) > _KEY_DERIVATIVES:
        shown += f", ... ({len(derivs)} in all)"
    met = rec.get("expect", {}).get("met")
    return {
        "date": _date(rec.get("timing", {}).get("started")),
        "kind": "run",
        "experiment": rec.get("experiment", "?"),
        "outcome": f"{rec.get('status', '?')} ({'as declared' if met else 'FAILED'})" if rec else "unreadable",
        "derivatives": shown,
        "folder": str(folder),
    }


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def listing(root: Path) -> str:
    """The table of every run and sweep under `root`, oldest first."""
    entries = sorted((entry(f) for f in find(root)), key=lambda e: e["date"])
    if not entries:
        return f"no runs under {root}"
    cols = ["date", "kind", "experiment", "outcome", "derivatives", "folder"]
    widths = {c: max(len(c), *(len(e[c]) for e in entries)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    lines += ["  ".join(e[c].ljust(widths[c]) for c in cols).rstrip() for e in entries]
    runs = sum(1 for e in entries if e["kind"] == "run")
    lines.append(f"{runs} runs, {len(entries) - runs} sweeps under {root}")
    return "\n".join(lines)


def run_detail(folder: Path) -> str:
    """One run in full: its result table, overrides, environment, timing and files."""
    rec = json.loads((folder / runlog.RESULTS_FILE).read_text())
    env = rec.get("environment", {})
    lines = [console.table(rec, str(folder)), ""]
    lines.append(f"started:    {_date(rec.get('timing', {}).get('started'))}")
    lines.append(f"overrides:  {' '.join(overrides.overrides(folder)) or '(none)'}")
    lines.append(f"command:    {env.get('command') or ' '.join(env.get('argv', []))}")
    lines.append(
        "versions:   " + ", ".join(f"{k} {env.get(k)}" for k in ("python", "tensorflow", "numpy", "hydra", "omegaconf"))
    )
    lines.append(f"machine:    {env.get('platform')}, {env.get('cpu')} ({env.get('cpu_count')} cpus)")
    for path, state in (env.get("git") or {}).items():
        lines.append(
            f"configs:    {path}: "
            + (
                f"git {state['commit'][:12]}{' (dirty)' if state.get('dirty') else ''}"
                if state
                else "not a git repository"
            )
        )
    repro = env.get("reproducibility")
    if repro:
        lines.append(
            f"seed:       {repro.get('seed')}, op determinism {'on' if repro.get('op_determinism') else 'off'}"
        )
    timing = rec.get("timing", {})
    lines.append("timing:     " + ", ".join(f"{k[:-2]} {v:.3f} s" for k, v in timing.items() if k.endswith("_s")))
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    lines.append(f"files:      {', '.join(files)}")
    lines.append(f"rerun:      python -m runner.rerun {folder}")
    return "\n".join(lines)


def sweep_detail(folder: Path) -> str:
    """A sweep's summary table (rebuilt from its jobs' logs, so it is current)."""
    from runner.sweep import summary

    text = summary.table(summary.collect(folder))
    counts = progress.counts(folder)
    if counts:  # a sweep still running (or killed): how far it got
        text += f"\nprogress: {counts['done']}/{counts['total'] or '?'} jobs finished, {counts['failed']} failed"
    return text + f"\nsweep folder: {folder}"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "path",
        nargs="?",
        type=Path,
        default=Path("outputs"),
        help="a folder of runs (default: outputs), a run or a sweep",
    )
    args = parser.parse_args(argv)
    path: Path = args.path
    if (path / runlog.RESULTS_FILE).is_file():
        print(run_detail(path))
    elif (path / MULTIRUN_FILE).is_file():
        print(sweep_detail(path))
    elif path.is_dir():
        print(listing(path))
    else:
        print(f"no such folder: {path}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
