"""`python -m runner.report [PATH]`: what ran, from the logs alone.

With a folder of runs (default `outputs`): one line per run and per sweep, oldest first,
with its date, experiment, outcome and first derivatives. With one run folder: that run in
detail (its table, overrides, environment, timing and files). With one sweep folder: the
sweep's summary table. Reads only files; imports no TensorFlow.

Every log is read whole or not at all (`runner.record.log_reader.read_log`: a size cap, no
FIFO, nothing through a link, every key of its type): a bad one is named in one line on
stderr, `bad run log: PATH: what is wrong`, and the rest are shown. A sweep is shown as its
summary shows it (`runner.sweep.summary.collect`): a job with a bad log is `corrupt`. PATH
itself may be a link (the command line is trusted); nothing below it is followed. Exit codes:
0, or 2 when PATH is no folder or logs were found and none of them could be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from runner.config import overrides
from runner.record import console, log_reader, runlog
from runner.sweep import progress, summary

MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
_KEY_DERIVATIVES = 3


class Logs:
    """Reads run logs for one report: a bad one is named in one line (`bad`) and left out,
    and the logs read are counted, so the report can tell whether it read anything."""

    def __init__(self) -> None:
        self.bad: List[str] = []
        self.read = 0

    def load(self, folder: Path) -> Optional[Dict[str, Any]]:
        try:
            record = log_reader.read_log(folder)
        except log_reader.BadLog as err:
            self.bad.append(f"bad run log: {err}")
            return None
        self.read += 1
        return record


def find(root: Path) -> Iterator[Path]:
    """Run folders (with results.json) and sweep folders (with multirun.yaml) under root;
    a sweep's own jobs are not listed apart from it, hidden folders are skipped."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if MULTIRUN_FILE in files:
            dirs[:] = []
            yield Path(folder)
        elif runlog.RESULTS_FILE in files or runlog.RESULTS_FILE in dirs:  # a folder of that name is a bad log
            dirs[:] = []
            yield Path(folder)


def _date(ts: Optional[float]) -> str:
    try:
        return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "?"
    except (OverflowError, ValueError, OSError):  # a time no calendar holds
        return "?"


def entry(folder: Path, logs: Optional[Logs] = None) -> Optional[Dict[str, Any]]:
    """One line of the listing, as a mapping (date, kind, experiment, outcome, derivatives);
    None for a run whose log cannot be read (`logs` names it)."""
    logs = logs or Logs()
    if (folder / MULTIRUN_FILE).is_file():
        rows = sweep_rows(folder, logs)
        # a row holds neither experiment nor start: read from the logs `collect` found whole
        records = [r for r in (_record(Path(row["folder"])) for row in rows if row["status"] in _READ) if r]
        started = min((r["timing"]["started"] for r in records), default=None)
        experiments = sorted({r["experiment"] for r in records})
        failed = sum(1 for r in rows if not r["met"])
        return {
            "date": _date(started or folder.stat().st_mtime),
            "kind": "sweep",
            "experiment": ", ".join(experiments) or "?",
            "outcome": f"{len(rows)} jobs, {failed} failed",
            "derivatives": "",
            "folder": str(folder),
        }
    rec = logs.load(folder)
    if rec is None:
        return None
    derivs = [(d["name"], d["value"]) for d in rec["derivatives"]]
    shown = ", ".join(f"{n} = {_short(console.show(v))}" for n, v in derivs[:_KEY_DERIVATIVES])
    if len(derivs) > _KEY_DERIVATIVES:
        shown += f", ... ({len(derivs)} in all)"
    return {
        "date": _date(rec["timing"]["started"]),
        "kind": "run",
        "experiment": rec["experiment"],
        "outcome": f"{rec['status']} ({'as declared' if rec['expect']['met'] else 'FAILED'})",
        "derivatives": shown,
        "folder": str(folder),
    }


_READ = ("ok", "error")  # the statuses of a job whose log `summary.collect` read whole


def sweep_rows(folder: Path, logs: Logs) -> List[Dict[str, Any]]:
    """A sweep's rows, as its summary has them (`summary.collect`); each job whose log cannot
    be read (`corrupt`) is named in `logs`, in one line."""
    rows = summary.collect(folder)
    for row in rows:
        if row["status"] == "corrupt":  # the summary names the file within the job's folder
            error, job = row["error"], row["folder"]
            logs.bad.append(f"bad run log: {error if error.startswith(job) else os.path.join(job, error)}")
        elif row["status"] in _READ:
            logs.read += 1
    return rows


def _record(folder: Path) -> Optional[Dict[str, Any]]:
    try:
        return log_reader.read_log(folder)
    except log_reader.BadLog:  # changed since `collect` read it: left out
        return None


def _short(text: str, width: int = 30) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def listing(root: Path, logs: Optional[Logs] = None) -> str:
    """The table of every run and sweep under `root`, oldest first (bad logs left out:
    `logs` names them, and the last line counts them)."""
    logs = logs or Logs()
    found = (entry(f, logs) for f in find(root))
    entries = sorted((e for e in found if e is not None), key=lambda e: e["date"])
    unreadable = f"; {len(logs.bad)} run logs unreadable" if logs.bad else ""
    if not entries:
        return f"no runs under {root}{unreadable}"
    cols = ["date", "kind", "experiment", "outcome", "derivatives", "folder"]
    widths = {c: max(len(c), *(len(e[c]) for e in entries)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    lines += ["  ".join(e[c].ljust(widths[c]) for c in cols).rstrip() for e in entries]
    runs = sum(1 for e in entries if e["kind"] == "run")
    lines.append(f"{runs} runs, {len(entries) - runs} sweeps under {root}{unreadable}")
    return "\n".join(lines)


def run_detail(folder: Path) -> str:
    """One run in full: its result table, overrides, environment, timing and files; a
    `log_reader.BadLog` when its log cannot be read."""
    rec = log_reader.read_log(folder)
    env = rec["environment"]
    argv = env.get("argv")
    command = env.get("command") or (" ".join(map(str, argv)) if isinstance(argv, list) else "?")
    lines = [console.table(rec, str(folder)), ""]
    lines.append(f"started:    {_date(rec['timing']['started'])}")
    lines.append(f"overrides:  {' '.join(overrides.overrides(folder)) or '(none)'}")
    lines.append(f"command:    {command}")
    lines.append(
        "versions:   " + ", ".join(f"{k} {env.get(k)}" for k in ("python", "tensorflow", "numpy", "hydra", "omegaconf"))
    )
    lines.append(f"machine:    {env.get('platform')}, {env.get('cpu')} ({env.get('cpu_count')} cpus)")
    git = env.get("git")
    for path, state in git.items() if isinstance(git, dict) else ():
        commit = state.get("commit") if isinstance(state, dict) else None
        lines.append(
            f"configs:    {path}: "
            + (
                f"git {commit[:12]}{' (dirty)' if state.get('dirty') else ''}"
                if isinstance(commit, str)
                else "not a git repository"
            )
        )
    repro = env.get("reproducibility")
    if isinstance(repro, dict):
        lines.append(
            f"seed:       {repro.get('seed')}, op determinism {'on' if repro.get('op_determinism') else 'off'}"
        )
    timing = rec["timing"]
    lines.append("timing:     " + ", ".join(f"{k[:-2]} {v:.3f} s" for k, v in timing.items() if k.endswith("_s")))
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    lines.append(f"files:      {', '.join(files)}")
    lines.append(f"rerun:      python -m runner.rerun {folder}")
    return "\n".join(lines)


def sweep_detail(folder: Path, logs: Optional[Logs] = None) -> str:
    """A sweep's summary table (rebuilt from its jobs' logs, so it is current)."""
    text = summary.table(sweep_rows(folder, logs or Logs()))
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
    if path.is_symlink():  # named on the command line, which is trusted: below it, no link is followed
        path = Path(os.path.realpath(path))
    logs = Logs()
    try:
        if os.path.lexists(path / runlog.RESULTS_FILE):
            text = run_detail(path)
            logs.read += 1
        elif (path / MULTIRUN_FILE).is_file():
            text = sweep_detail(path, logs)
        elif path.is_dir():
            text = listing(path, logs)
        else:
            print(f"no such folder: {path}", file=sys.stderr)
            return 2
    except log_reader.BadLog as err:
        logs.bad.append(f"bad run log: {err}")
        text = ""
    for line in logs.bad:  # one line each, and the rest is shown
        print(line, file=sys.stderr)
    if text:
        print(text)
    return 2 if logs.bad and not logs.read else 0  # 2: there were logs, and none could be read


if __name__ == "__main__":
    sys.exit(main())
