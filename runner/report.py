"""`python -m runner.report [PATH]`: what ran, from the logs alone.

With a folder of runs (default `outputs`): one line per run and per sweep, oldest first,
with its date, experiment, overrides, outcome and first derivatives. With one run folder:
that run in detail (its table, overrides, environment, timing and files). With one sweep
folder: the sweep's summary table, and its jobs grouped over `--over` keys (default `seed`,
when swept) with the mean / std / max of each scalar result (`runner.record.report_groups`).
`--diff RUN_A RUN_B`: their differences, one per line (`runner.record.report_diff`); exit 1
when there are any. `--json`: the same content as one JSON document; `--md`: Markdown tables.
`--mlflow URI [RUN_ID]`: the same, read back from an MLflow tracking store: every run and
sweep it holds, or one of them (`runner.record.report_mlflow`).
Reads only files; imports no TensorFlow.

Every log is read whole or not at all (`runner.record.log_reader.read_log`: a size cap, no
FIFO, nothing through a link, every key of its type): a bad one is named in one line on
stderr, `bad run log: PATH: what is wrong`, and the rest are shown. A sweep is shown as its
summary shows it (`runner.sweep.summary.collect`): a job with a bad log is `corrupt`. PATH
itself may be a link (the command line is trusted); nothing below it is followed. Exit codes:
0 (or 1: `--diff` found differences), 2 when PATH is no folder or logs were found and none
of them could be read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from runner.config import overrides
from runner.record import console, log_reader, report_diff, report_groups, report_mlflow, report_tables, runlog
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
            "overrides": swept_overrides(rows),
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
        "overrides": overrides.overrides(folder),
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


def swept_overrides(rows: List[Dict[str, Any]]) -> List[str]:
    """A sweep's overrides as Hydra's sweep syntax: `point.x=1.0,2.0` for a key its jobs vary."""
    took: Dict[str, List[str]] = {}
    for row in rows:
        for o in row["overrides"]:
            key, _, value = o.partition("=")
            took.setdefault(key, [])
            if value not in took[key]:
                took[key].append(value)
    return [f"{k}={','.join(vs)}" for k, vs in took.items()]


LIST_COLUMNS = ["date", "kind", "experiment", "overrides", "outcome", "derivatives", "folder"]


def listing_doc(root: Path, logs: Optional[Logs] = None) -> Dict[str, Any]:
    """Every run and sweep under `root`, oldest first (bad logs left out: `unreadable` names them)."""
    logs = logs or Logs()
    found = (entry(f, logs) for f in find(root))
    entries = sorted((e for e in found if e is not None), key=lambda e: e["date"])
    runs = sum(1 for e in entries if e["kind"] == "run")
    return {
        "view": "listing",
        "root": str(root),
        "entries": entries,
        "runs": runs,
        "sweeps": len(entries) - runs,
        "unreadable": list(logs.bad),
    }


def _list_rows(doc: Dict[str, Any]) -> List[List[str]]:
    return [[" ".join(e[c]) if c == "overrides" else e[c] for c in LIST_COLUMNS] for e in doc["entries"]]


def listing(root: Path, logs: Optional[Logs] = None, doc: Optional[Dict[str, Any]] = None) -> str:
    """The table of every run and sweep under `root`, oldest first, and a last line counting them."""
    doc = doc or listing_doc(root, logs)
    unreadable = f"; {len(doc['unreadable'])} run logs unreadable" if doc["unreadable"] else ""
    if not doc["entries"]:
        return f"no runs under {root}{unreadable}"
    lines = report_tables.text_table(LIST_COLUMNS, _list_rows(doc))
    lines.append(f"{doc['runs']} runs, {doc['sweeps']} sweeps under {root}{unreadable}")
    return "\n".join(lines)


def run_doc(folder: Path) -> Dict[str, Any]:
    """One run, as `run_detail` shows it: its log's entries, overrides and files."""
    rec = log_reader.read_log(folder)
    derivatives = [
        {k: d.get(k) for k in ("name", "kind", "target", "sources", "order", "value")}
        | {
            "check": {**d["check"], "outcome": console.outcome(d["check"])}
            if isinstance(d.get("check"), dict)
            else None
        }
        for d in rec["derivatives"]
    ]
    return {
        "view": "run",
        "folder": str(folder),
        "experiment": rec["experiment"],
        "status": rec["status"],
        "met": rec["expect"]["met"],
        "error": rec["error"],
        "overrides": overrides.overrides(folder),
        "values": rec["values"],
        "derivatives": derivatives,
        "started": _date(rec["timing"]["started"]),
        "environment": rec["environment"],
        "timing": rec["timing"],
        "files": sorted(p.name for p in folder.iterdir() if p.is_file()),
        "rerun": f"python -m runner.rerun {folder}",
    }


def _run_md(doc: Dict[str, Any]) -> List[str]:
    rows = [["value", k, console.show(v), ""] for k, v in doc["values"].items()]
    rows += [
        [d["kind"], d["name"], console.show(d["value"]), console.check_summary(d["check"]) if d["check"] else ""]
        for d in doc["derivatives"]
    ]
    outcome = f"{doc['status']} ({'as declared' if doc['met'] else 'FAILED'})"
    head = [f"**{doc['experiment']}**: {outcome}, overrides `{' '.join(doc['overrides']) or '(none)'}`", ""]
    return head + report_tables.md_table(["kind", "name", "value", "check"], rows)


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
        at = f"git {commit[:12]}{' (dirty)' if state.get('dirty') else ''}" if isinstance(commit, str) else ""
        lines.append(f"configs:    {path}: {at or 'not a git repository'}")
    repro = env.get("reproducibility")
    if isinstance(repro, dict):
        determinism = "on" if repro.get("op_determinism") else "off"
        lines.append(f"seed:       {repro.get('seed')}, op determinism {determinism}")
    timing = rec["timing"]
    lines.append("timing:     " + ", ".join(f"{k[:-2]} {v:.3f} s" for k, v in timing.items() if k.endswith("_s")))
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    lines.append(f"files:      {', '.join(files)}")
    lines.append(f"rerun:      python -m runner.rerun {folder}")
    return "\n".join(lines)


def sweep_doc(
    folder: Path, logs: Optional[Logs] = None, over: Sequence[str] = report_groups.DEFAULT_OVER
) -> Dict[str, Any]:
    """A sweep's rows (as its summary has them), its progress, and its jobs grouped `over` keys."""
    logs = logs or Logs()
    rows = sweep_rows(folder, logs)
    for row in rows:
        rec = _record(Path(row["folder"])) if row["status"] in _READ else None
        row["scalars"] = report_groups.scalars(rec) if rec else {}
    groups = report_groups.group(rows, over)
    return {
        "view": "sweep",
        "folder": str(folder),
        "rows": [{k: v for k, v in r.items() if k != "scalars"} for r in rows],
        "jobs": len(rows),
        "failed": sum(1 for r in rows if not r["met"]),
        "progress": progress.counts(folder),
        "over": list(over),
        "groups": report_groups.plain(groups),
        "unreadable": list(logs.bad),
        "_groups": groups,  # with floats, for the tables; not in the JSON
        "_rows": rows,
    }


def sweep_detail(
    folder: Path, logs: Optional[Logs] = None, over: Optional[Sequence[str]] = None, md: bool = False
) -> str:
    """A sweep's summary table (rebuilt from its jobs' logs, so it is current), and its jobs
    grouped over `over` (given, or `seed` when the sweep varies it)."""
    doc = sweep_doc(folder, logs, over or report_groups.DEFAULT_OVER)
    rows, groups = doc["_rows"], doc["_groups"]
    show_groups = over is not None or report_groups.swept(rows, doc["over"])
    lines = report_tables.sweep_md(rows) if md else [summary.table(rows)]
    counts = doc["progress"]
    if counts and not md:  # a sweep still running (or killed): how far it got
        lines.append(f"progress: {counts['done']}/{counts['total'] or '?'} jobs finished, {counts['failed']} failed")
    if show_groups:
        header, cells = report_groups.cells(groups)
        lines += ["", report_groups.title(doc["over"], groups, len(rows))]
        lines += report_tables.md_table(header, cells) if md else report_tables.text_table(header, cells, "  ")
    if not md:
        lines.append(f"sweep folder: {folder}")
    return "\n".join(lines)


def diff_doc(a: Path, b: Path) -> Dict[str, Any]:
    """The differences of two runs (`runner.record.report_diff`); a `log_reader.BadLog` when a log cannot be read."""
    found = report_diff.differences(a, log_reader.read_log(a), b, log_reader.read_log(b))
    return {"view": "diff", "a": str(a), "b": str(b), "differences": found, "count": len(found)}


def _json(doc: Dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in doc.items() if not k.startswith("_")}, indent=2, allow_nan=False, default=str)


def _trusted(path: Path) -> Path:
    # named on the command line, which is trusted: below it, no link is followed
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "path", nargs="?", type=Path, default=None, help="a folder of runs (default: outputs), a run or a sweep"
    )
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="one JSON document on stdout (keys: docs/reproducing.md)")
    form.add_argument("--md", action="store_true", help="Markdown tables")
    parser.add_argument(
        "--diff", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"), help="the differences of two runs; exit 1 if any"
    )
    parser.add_argument(
        "--over",
        type=report_groups.over_keys,
        default=None,
        help="for a sweep: group jobs differing only in these keys (comma-separated; default: seed, when swept)",
    )
    report_mlflow.arguments(parser)
    args = parser.parse_args(argv)
    if args.diff and (args.path is not None or args.over is not None):
        parser.error("--diff takes two run folders, and no PATH or --over")
    if args.mlflow is not None:
        return report_mlflow.main(args, parser, show, finish, Logs())
    logs = Logs()
    code = 0
    try:
        if args.diff:
            a, b = (_trusted(p) for p in args.diff)
            doc = diff_doc(a, b)
            logs.read += 2
            code = 1 if doc["differences"] else 0
            shown = report_diff.md(doc["differences"]) if args.md else report_diff.text(a, b, doc["differences"])
            text: Optional[str] = _json(doc) if args.json else "\n".join(shown)
        else:
            path = _trusted(args.path if args.path is not None else Path("outputs"))
            if args.over is not None and not (path / MULTIRUN_FILE).is_file():
                parser.error(f"--over groups a sweep's jobs: {path} is no sweep folder")
            text = show(path, args, logs)
            if text is None:
                print(f"no such folder: {path}", file=sys.stderr)
                return 2
    except log_reader.BadLog as err:
        logs.bad.append(f"bad run log: {err}")
        text = ""
    return finish(text or "", logs, code)


def show(path: Path, args: argparse.Namespace, logs: Logs) -> Optional[str]:
    """The report on `path` (a run, a sweep or a folder of them) as `args` ask; None when
    `path` is no folder. A log that cannot be read raises `log_reader.BadLog` or is named in `logs`."""
    if os.path.lexists(path / runlog.RESULTS_FILE):
        doc = run_doc(path) if args.json or args.md else None
        text = run_detail(path) if doc is None else _json(doc) if args.json else "\n".join(_run_md(doc))
        logs.read += 1
        return text
    if (path / MULTIRUN_FILE).is_file():
        if args.json:
            return _json(sweep_doc(path, logs, args.over or report_groups.DEFAULT_OVER))
        return sweep_detail(path, logs, args.over, md=args.md)
    if not path.is_dir():
        return None
    doc = listing_doc(path, logs)
    md = "\n".join(report_tables.md_table(LIST_COLUMNS, _list_rows(doc))) if args.md else ""
    return _json(doc) if args.json else md or listing(path, doc=doc)


def finish(text: str, logs: Logs, code: int) -> int:
    """Name each bad log on stderr, print `text`; the exit code (2: logs found, none read)."""
    for line in logs.bad:  # one line each, and the rest is shown
        print(line, file=sys.stderr)
    if text and not console.emit(text):
        return console.CLOSED_PIPE
    return 2 if logs.bad and not logs.read else code  # 2: there were logs, and none could be read


if __name__ == "__main__":
    sys.exit(main())
