"""The sweep summary: one row per job, written when a multirun ends, whatever failed.

Hydra calls `SweepSummary.on_multirun_end` in the launching process after every job has
returned, under any launcher (jobs may have run in other processes or on other machines),
so the summary is built from what the jobs left on disk: each job folder's
`results.json` and `.hydra/overrides.yaml`. A job with no `results.json` (killed, or lost
by its launcher) is listed as `missing` and counts as a failure.

`summary.json` holds every row in full; `summary.csv` has one column per derivative (its
value as JSON) and per check (`check:NAME`, the `passed` flag of the derivative's `check`
record when the job ran checks); the printed table shows the same, shortened.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.config import overrides
from runner.record import console, runlog
from runner.sweep import folders, progress

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"

# The exit code the last sweep in this process earned: non-zero when any job failed.
last_exit_code = 0
# The folder of the sweep running in this process, for `runner.cli` to summarize when a
# signal stops it (Hydra then skips on_multirun_end).
current_sweep_dir: Optional[Path] = None


def job_folders(sweep_dir: Path) -> List[Path]:
    """The sweep's job folders, by job number: sub-folders with Hydra's `.hydra/`, and numbered
    ones without it yet (a job stopped between making its folder and writing `.hydra/`)."""
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or p.name.isdigit())]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def collect(sweep_dir: Path, started: Optional[float] = None) -> List[Dict[str, Any]]:
    """One row per job folder. `started`: when this launch began; a job whose results are
    older was kept from an earlier launch (`resume`) and is marked `resumed`."""
    rows = []
    for job_dir in job_folders(sweep_dir):
        row: Dict[str, Any] = {"job": job_dir.name, "overrides": overrides.overrides(job_dir), "folder": str(job_dir)}
        results = job_dir / runlog.RESULTS_FILE
        try:
            rec = json.loads(results.read_text())
        except (OSError, ValueError):
            rec = None
        if rec is None:
            row.update(
                status="missing",
                met=False,
                resumed=False,
                derivatives={},
                checks={},
                error="no results.json",
                mismatches=[],
                duration_s=None,
            )
        else:
            err = rec.get("error")
            timing = rec.get("timing", {})
            row.update(
                status=rec["status"],
                met=rec["expect"]["met"],
                resumed=bool(started and timing.get("started") and timing["started"] < started),
                derivatives={d["name"]: d["value"] for d in rec["derivatives"]},
                # another module adds a `check` record to each derivative when checks run
                checks={
                    d["name"]: d["check"].get("passed") for d in rec["derivatives"] if isinstance(d.get("check"), dict)
                },
                error=f"{err['type']}: {err['message'].splitlines()[0][:120]}" if err else None,
                mismatches=list(rec["expect"].get("mismatches") or []),
                duration_s=timing.get("total_s"),
            )
        rows.append(row)
    return rows


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
    names, checks = _columns(rows, "derivatives"), _columns(rows, "checks")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "job",
            "overrides",
            "status",
            "met",
            "resumed",
            *names,
            *[f"check:{n}" for n in checks],
            "error",
            "mismatches",
            "duration_s",
        ]
    )
    for r in rows:
        values = [json.dumps(r["derivatives"][n]) if n in r["derivatives"] else "" for n in names]
        passed = [r["checks"].get(n, "") for n in checks]
        w.writerow(
            [
                r["job"],
                " ".join(r["overrides"]),
                r["status"],
                r["met"],
                r.get("resumed", False),
                *values,
                *passed,
                r["error"] or "",
                "; ".join(r.get("mismatches") or []),
                r["duration_s"],
            ]
        )
    runlog.write_atomic(sweep_dir / SUMMARY_CSV, buf.getvalue().encode())


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
            *[_short(console.show(r["derivatives"][n])) if n in r["derivatives"] else "-" for n in names],
            *[{True: "passed", False: "FAILED", None: "-"}[r["checks"].get(n)] for n in checks],
            f"{r['duration_s']:.2f} s" if isinstance(r["duration_s"], (int, float)) else "-",
            # why a job failed, else the (declared) error it met
            "; ".join(r.get("mismatches") or []) if not r["met"] and r.get("mismatches") else (r["error"] or ""),
        ]
        body.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)]
    lines = ["  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [header, *body]]
    failed = sum(1 for r in rows if not r["met"])
    resumed = sum(1 for r in rows if r.get("resumed"))
    lines.append(
        f"sweep: {len(rows)} jobs, {failed} failed"
        + (f", {resumed} kept from an earlier launch (resume)" if resumed else "")
    )
    return "\n".join(lines)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class SweepSummary(Callback):
    """Hydra callback: write `summary.json`, `summary.csv` and `sweep_plot.png`, print the
    table, set the exit code."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        """After the sweep's last job, write the summary files already: if a job raised,
        Hydra's sweeper re-raises after the batch and skips `on_multirun_end`."""
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir = folders.sweep_dir(config)
        counts = progress.counts(sweep_dir)  # the Progress callback counted this job first
        if counts and counts["total"] and counts["done"] >= counts["total"]:
            write(sweep_dir, collect(sweep_dir, started=_launch_started(sweep_dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global current_sweep_dir
        current_sweep_dir = folders.sweep_dir(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_exit_code
        sweep_dir = folders.sweep_dir(config)
        if not sweep_dir.is_dir():
            return
        rows = collect(sweep_dir, started=_launch_started(sweep_dir))
        write(sweep_dir, rows)
        last_exit_code = 1 if any(not r["met"] for r in rows) else 0
        print(table(rows))
        if config.get("log", {}).get("plots") is not False:
            try:
                from runner.record import plots

                made = plots.sweep_plot(sweep_dir, rows)
                if made:
                    print(f"sweep plot: {sweep_dir / made}")
            except Exception as err:  # a plot must not hide the summary or the exit code
                print(f"sweep plot not written: {type(err).__name__}: {err}")
        print(f"sweep folder: {sweep_dir}")


def _launch_started(sweep_dir: Path) -> Optional[float]:
    try:
        return json.loads((sweep_dir / progress.PROGRESS_DIR / "plan.json").read_text())["started"]
    except (OSError, ValueError, KeyError):
        return None
