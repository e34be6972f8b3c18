"""The sweep summary: one row per job, written when a multirun ends, whatever failed.

Hydra calls `SweepSummary.on_multirun_end` in the launching process after every job has
returned, under any launcher (jobs may have run in other processes or on other machines),
so the summary is built from what the jobs left on disk: each job folder's
`results.json` and `.hydra/overrides.yaml`. When a job raised, or a signal came, Hydra
skips `on_multirun_end`, and `runner.cli.main` calls `finish` instead: the summary is
written however the sweep ends. The previous launch's summary (`resume`) is removed when
the sweep starts, so none is ever stale.

Every job folder gives a row, whatever it holds: a job that raised is `raised`, one with no
`results.json` (killed, or lost by its launcher) `missing`, one whose `results.json` is not
a whole run log `corrupt`; each counts as a failure.

`summary.json` holds every row in full; `summary.csv` has one column per derivative (its
value as JSON) and per check (`check:NAME`, the outcome of the derivative's `check` record
when the job ran checks: passed, failed or unverified); the printed table shows the same, shortened. Each file,
and `sweep_plot.png`, is written under another name and renamed into place, so a link
planted at its name is replaced, never written through.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.config import overrides
from runner.record import console, log_reader, runlog
from runner.sweep import folders, lock, mlflow_sweep, progress, slurm_states

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"

# The exit code the last sweep in this process earned: non-zero when any job failed.
last_exit_code = 0
# The folder of the sweep running in this process, for `runner.cli` to summarize when a
# signal or an error stops it (Hydra then skips on_multirun_end).
current_sweep_dir: Optional[Path] = None
# Whether its summary was written since it started.
finished = False


def job_folders(sweep_dir: Path) -> List[Path]:
    """The sweep's job folders, by job number: sub-folders with Hydra's `.hydra/`, and numbered
    ones without it yet (a job stopped between making its folder and writing `.hydra/`)."""
    jobs = [
        p
        for p in sweep_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and ((p / ".hydra").is_dir() or p.name.isdigit())
    ]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def collect(sweep_dir: Path, started: Optional[float] = None) -> List[Dict[str, Any]]:
    """One row per job folder. `started`: when this launch began; a job whose results are
    older was kept from an earlier launch (`resume`) and is marked `resumed`.

    A row never fails: a job that raised is `raised`, a job without `results.json` is
    `missing`, and one whose `results.json` cannot be read as a run log (cut short, not
    JSON, not an object, a key missing or of the wrong type, not a regular file) is
    `corrupt`, with the problem in one short line. Each counts as a failure.
    """
    raised = progress.raised(sweep_dir)
    rows = []
    for job_dir in job_folders(sweep_dir):
        row: Dict[str, Any] = {"job": job_dir.name, "overrides": overrides.overrides(job_dir), "folder": str(job_dir)}
        if job_dir.name in raised:  # this launch's job raised: any results.json there is older
            row.update(_failed_row("raised", raised[job_dir.name]))
        else:
            results = job_dir / runlog.RESULTS_FILE
            if not os.path.lexists(results):
                row.update(_failed_row("missing", "no results.json"))
            else:
                try:
                    row.update(_row(log_reader.read_log(job_dir), started))
                except log_reader.BadLog as err:  # the same reading as resume, report and rerun
                    row.update(_failed_row("corrupt", str(err).replace(f"{job_dir}{os.sep}", "")))
        rows.append(row)
    return rows


def _row(rec: Dict[str, Any], started: Optional[float]) -> Dict[str, Any]:
    """The summary fields of a run log `log_reader` has checked whole (keys and types)."""
    err = rec.get("error")
    timing = rec.get("timing") or {}
    begun = timing.get("started")
    message = (err["message"].splitlines() or [""])[0][:120] if err else ""
    return dict(
        status=rec["status"],
        met=rec["expect"]["met"],
        resumed=bool(started and begun and begun < started),
        derivatives={d["name"]: d["value"] for d in rec["derivatives"]},
        checks={d["name"]: console.outcome(d["check"]) for d in rec["derivatives"] if isinstance(d.get("check"), dict)},
        error=f"{err['type'][:80]}: {message}" if err else None,
        mismatches=[str(m)[:200] for m in rec["expect"].get("mismatches") or []],
        duration_s=timing.get("total_s"),
    )


def _failed_row(status: str, error: str) -> Dict[str, Any]:
    return dict(
        status=status, met=False, resumed=False, derivatives={}, checks={}, error=error, mismatches=[], duration_s=None
    )


def _columns(rows: List[Dict[str, Any]], key: str) -> List[str]:
    return list(dict.fromkeys(n for r in rows for n in r[key]))


def write(sweep_dir: Path, rows: List[Dict[str, Any]]) -> None:
    """Write `summary.json` and `summary.csv` (atomically) into the sweep folder."""
    failed = sum(1 for r in rows if not r["met"])
    summary = {
        "schema_version": runlog.SCHEMA_VERSION,
        "jobs": len(rows),
        "failed": failed,
        "resumed": sum(1 for r in rows if r.get("resumed")),
        "rows": rows,
    }
    runlog.write_atomic(sweep_dir / SUMMARY_JSON, (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
    runlog.write_atomic(sweep_dir / SUMMARY_CSV, csv_text(rows, swept_keys(sweep_dir, rows)).encode())


def csv_text(rows: List[Dict[str, Any]], swept: List[str]) -> str:
    """summary.csv: a column per swept key (its value as the override gives it) and per scalar
    part of each derivative (`progress.components`; arrays are in summary.json), no JSON in a cell."""
    values = [flat(r) for r in rows]
    names, checks = list(dict.fromkeys(n for v in values for n in v)), _columns(rows, "checks")
    first, last = ["job", "overrides"], ["status", "met", "resumed"]
    taken = {*first, *last, *names, "error", "mismatches", "duration_s"}
    keys = [f"override:{k}" if k in taken else k for k in swept]  # a key named like a column
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([*first, *keys, *last, *names, *[f"check:{n}" for n in checks], "error", "mismatches", "duration_s"])
    for r, v in zip(rows, values):
        given = {progress.override_key(o): o.partition("=")[2] for o in r["overrides"]}
        w.writerow(
            [
                r["job"],
                " ".join(r["overrides"]),
                *[given.get(k, "") for k in swept],
                r["status"],
                r["met"],
                r.get("resumed", False),
                *[_cell(v[n]) if n in v else "" for n in names],
                *[r["checks"].get(n) or "" for n in checks],
                r["error"] or "",
                "; ".join(r.get("mismatches") or []),
                r["duration_s"],
            ]
        )
    return buf.getvalue()


def flat(row: Dict[str, Any]) -> Dict[str, Any]:
    """A row's derivatives as their scalar parts: label -> number, null or "NaN"."""
    return {label: x for n, v in row["derivatives"].items() for label, x in progress.components(n, v)}


def _cell(v: Any) -> Any:
    return "None" if v is None else v


def swept_keys(sweep_dir: Path, rows: List[Dict[str, Any]]) -> List[str]:
    """The keys the sweep varies: those its command line swept (`.progress/plan.json`) and
    any whose value differs between jobs, in the order of the jobs' overrides."""
    try:
        planned = json.loads(progress.read_small(sweep_dir / progress.PROGRESS_DIR / "plan.json")).get("swept")
    except (OSError, ValueError, AttributeError):
        planned = None
    given = [{progress.override_key(o): o.partition("=")[2] for o in r["overrides"]} for r in rows]
    every = list(dict.fromkeys(k for g in given for k in g))
    swept = {str(k) for k in planned} if isinstance(planned, list) else set()
    return [k for k in every if k in swept or len({g.get(k) for g in given}) > 1]


def table(rows: List[Dict[str, Any]]) -> str:
    """The summary as an aligned text table, and a last line with the counts."""
    names, checks = _columns(rows, "derivatives"), _columns(rows, "checks")
    header = ["job", "overrides", "status", "outcome", *names, *[f"check {n}" for n in checks], "time", ""]
    body = []
    for r in rows:
        verdict = ("as declared" if r["met"] else "FAILED") + (" (resumed)" if r.get("resumed") else "")
        cells = [
            f"#{r['job']}",
            " ".join(r["overrides"]),
            r["status"],
            verdict,
            *[_short(_show(r["derivatives"][n])) if n in r["derivatives"] else "-" for n in names],
            *[_CHECK_CELL.get(r["checks"].get(n), "-") for n in checks],
            f"{r['duration_s']:.2f} s" if isinstance(r["duration_s"], (int, float)) else "-",
            # why a job failed, else the (declared) error it met
            "; ".join(r.get("mismatches") or []) if not r["met"] and r.get("mismatches") else (r["error"] or ""),
        ]
        body.append(cells)
    # a tampered log's text, escaped: derivative names in the header, errors in the body
    header, body = [_printable(c) for c in header], [[_printable(str(c)) for c in cells] for cells in body]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [header, *body]]
    failed = sum(1 for r in rows if not r["met"])
    resumed = sum(1 for r in rows if r.get("resumed"))
    lines.append(
        f"sweep: {len(rows)} jobs, {failed} failed"
        + (f", {resumed} kept from an earlier launch (resume)" if resumed else "")
    )
    return "\n".join(lines)


# a check's outcome in the printed table; "-" when no check ran (or a tampered log's text)
_CHECK_CELL = {"passed": "passed", "failed": "FAILED", "unverified": "unverified"}


def _show(value: Any) -> str:
    try:
        return console.show(value)
    except Exception:  # a value of a shape no run log has (a tampered file): the table goes on
        return "?"


def _printable(text: str) -> str:
    """`text` with control characters (a terminal's escape sequences) spelt as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class SweepSummary(Callback):
    """Hydra callback: lock the sweep folder and remove its old summary when the sweep
    starts; write `summary.json`, `summary.csv` and `sweep_plot.png`, print the table and
    set the exit code when it ends.

    When a job raised, Hydra's sweeper re-raises after the batch and skips
    `on_multirun_end`; `runner.cli.main` then calls `finish` itself (and on a signal), so
    a sweep run from the command line always ends with its summary.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global current_sweep_dir, finished
        sweep_dir = folders.sweep_dir(config)
        lock.acquire(sweep_dir, progress.lock_key(config))  # raises FolderInUse: the sweep stops
        current_sweep_dir, finished = sweep_dir, False
        if slurm_states.submits_to_slurm(config):
            slurm_states.install()  # submitit would wait for ever on some cancelled arrays
        # the summary of an earlier launch (resume) would be stale until this one ends
        from runner.record import plots  # NumPy only; Matplotlib when a plot is drawn

        for name in (SUMMARY_JSON, SUMMARY_CSV, plots.SWEEP_PLOT):
            (sweep_dir / name).unlink(missing_ok=True)
        mlflow_sweep.start(config, sweep_dir)  # log.mlflow: the parent run (made or reopened)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = folders.sweep_dir(config)
        if sweep_dir.is_dir():
            finish(sweep_dir, plot=config.get("log", {}).get("plots") is not False)


def finish(sweep_dir: Path, plot: bool = False, mark_missing: Optional[Tuple[str, str]] = None) -> List[Dict[str, Any]]:
    """Summarize the sweep from its job folders: write the files, print the table, set
    `last_exit_code` (1 if any job failed). `mark_missing`: the status and error of a job
    without results.json (`interrupted`, when a signal cut it short). Returns the rows."""
    global last_exit_code, finished
    rows = collect(sweep_dir, started=_launch_started(sweep_dir))
    if mark_missing:
        for row in rows:
            if row["status"] == "missing":
                row.update(status=mark_missing[0], error=mark_missing[1])
    last_exit_code = 1 if any(not r["met"] for r in rows) else 0
    write(sweep_dir, rows)
    finished = True
    print(table(rows), flush=True)
    if plot:
        try:
            made, why = _plot(sweep_dir, rows)
            print(f"sweep plot: {sweep_dir / made}" if made else f"sweep plot: none drawn, {why}")
        except Exception as err:  # a plot must not hide the summary or the exit code
            print(f"sweep plot not written: {type(err).__name__}: {err}")
    print(f"sweep folder: {sweep_dir}", flush=True)
    if mlflow_sweep.read_state(sweep_dir):  # log.mlflow: the parent gets the summary and ends
        from runner.record import plots

        mlflow_sweep.end(sweep_dir, rows, ("multirun.yaml", SUMMARY_JSON, SUMMARY_CSV, plots.SWEEP_PLOT))
    return rows


def _plot(sweep_dir: Path, rows: List[Dict[str, Any]]) -> Tuple[Optional[str], str]:
    """Draw `sweep_plot.png` in a new private folder, then rename it into the sweep folder: a
    link planted there is replaced, not written through (Matplotlib opens the name it is given)."""
    from runner.record import plots  # NumPy only; Matplotlib when a plot is drawn

    stage = Path(tempfile.mkdtemp(dir=sweep_dir, prefix=".sweep_plot."))
    try:
        # a folder named as the sweep's, for the plot's title
        name = sweep_dir.name if sweep_dir.name not in ("", ".", "..") else sweep_dir.resolve().name or "sweep"
        (stage / name).mkdir()
        # a panel per scalar part of each derivative (a source's, a Hessian block's)
        made, why = plots.sweep_plot(stage / name, [{**r, "derivatives": flat(r)} for r in rows])
        if made:
            os.replace(stage / name / made, sweep_dir / made)
        return made, why
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def finish_safely(sweep_dir: Path, **kwargs: Any) -> Optional[List[Dict[str, Any]]]:
    """`finish`, for the command line's last word: if even the summary cannot be written (a
    full disk, the folder gone), say so in one line, count the sweep as failed, return None."""
    global last_exit_code
    try:
        return finish(sweep_dir, **kwargs)
    except Exception as err:
        last_exit_code = 1
        print(f"sweep summary not written in {sweep_dir}: {type(err).__name__}: {err}", file=sys.stderr)
        return None


def ended_by_error(sweep_dir: Path, rows: Optional[List[Dict[str, Any]]], error: str) -> str:
    """The one line for a sweep an error ended: what it was, what ran, where the summary is."""
    failed = f"{sum(1 for r in rows if not r['met'])} of {len(rows)}" if rows is not None else "?"
    counts = progress.counts(sweep_dir)
    left = counts["total"] - counts["done"] if counts and isinstance(counts["total"], int) else 0
    lost = error.startswith(CLUSTER_ENDED)
    why = (
        f"a task the cluster ended: cancelled, out of time or memory; resume={sweep_dir} runs the rest"
        if lost
        else "a fault of the runner, not of the config; set HYDRA_FULL_ERROR=1 for the traceback"
    )
    return (
        f"sweep ended by an error: {error}; {failed} job(s) failed"
        + (f", {left} never started" if left > 0 else "")
        + f"; summary in {sweep_dir} ({why})"
    )


# Errors of a launcher whose cluster task ended without returning (submitit's, runner_slurm's)
CLUSTER_ENDED = ("UncompletedJobError", "TaskLost")


def _launch_started(sweep_dir: Path) -> Optional[float]:
    try:
        started = json.loads(progress.read_small(sweep_dir / progress.PROGRESS_DIR / "plan.json"))["started"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    number = isinstance(started, (int, float)) and not isinstance(started, bool)
    return float(started) if number else None
