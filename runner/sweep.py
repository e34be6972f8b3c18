"""The sweep summary: one row per job, written when a multirun ends, whatever failed.

Hydra calls `SweepSummary.on_multirun_end` in the launching process after every job has
returned, under any launcher (jobs may have run in other processes or on other machines),
so the summary is built from what the jobs left on disk: each job folder's
`results.json` and `.hydra/overrides.yaml`. A job with no `results.json` (killed, or lost
by its launcher) is listed as `missing` and counts as a failure.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner import console, runlog

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"

# The exit code the last sweep in this process earned: non-zero when any job failed.
last_exit_code = 0
# The folder of the sweep running in this process, for `runner.cli` to summarize when a
# signal stops it (Hydra then skips on_multirun_end).
current_sweep_dir: Optional[Path] = None


def _overrides(job_dir: Path) -> List[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    # overrides.yaml is a plain YAML list of strings, written by Hydra
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def collect(sweep_dir: Path) -> List[Dict[str, Any]]:
    """One row per job folder (numbered sub-folders with Hydra's `.hydra/`), by job number."""
    rows = []
    jobs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    for job_dir in sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)):
        row: Dict[str, Any] = {"job": job_dir.name, "overrides": _overrides(job_dir), "folder": str(job_dir)}
        results = job_dir / runlog.RESULTS_FILE
        if not results.exists():
            row.update(status="missing", met=False, derivatives={}, error="no results.json", duration_s=None)
        else:
            rec = json.loads(results.read_text())
            err = rec.get("error")
            row.update(
                status=rec["status"],
                met=rec["expect"]["met"],
                derivatives={d["name"]: d["value"] for d in rec["derivatives"]},
                error=f"{err['type']}: {err['message'].splitlines()[0][:120]}" if err else None,
                duration_s=rec.get("timing", {}).get("total_s"),
            )
        rows.append(row)
    return rows


def write(sweep_dir: Path, rows: List[Dict[str, Any]]) -> None:
    failed = sum(1 for r in rows if not r["met"])
    summary = {"schema_version": runlog.SCHEMA_VERSION, "jobs": len(rows), "failed": failed, "rows": rows}
    runlog.write_atomic(sweep_dir / SUMMARY_JSON, (json.dumps(summary, indent=2, allow_nan=False) + "\n").encode())
    names: List[str] = []
    for r in rows:
        names += [n for n in r["derivatives"] if n not in names]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["job", "overrides", "status", "met", *names, "error", "duration_s"])
    for r in rows:
        values = [json.dumps(r["derivatives"][n]) if n in r["derivatives"] else "" for n in names]
        w.writerow([r["job"], " ".join(r["overrides"]), r["status"], r["met"], *values, r["error"] or "", r["duration_s"]])
    runlog.write_atomic(sweep_dir / SUMMARY_CSV, buf.getvalue().encode())


def table(rows: List[Dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        derivs = ", ".join(f"{n} = {console.show(v)}" for n, v in r["derivatives"].items())
        mark = "ok " if r["met"] else "FAIL"
        tail = f"  [{r['error']}]" if r["error"] else ""
        lines.append(f"  {mark} #{r['job']} {' '.join(r['overrides'])}: {r['status']} {derivs}{tail}")
    failed = sum(1 for r in rows if not r["met"])
    lines.append(f"sweep: {len(rows)} jobs, {failed} failed")
    return "\n".join(lines)


class SweepSummary(Callback):
    """Hydra callback: write `summary.json` and `summary.csv`, print the table, set the exit code."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global current_sweep_dir
        current_sweep_dir = Path(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_exit_code
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = collect(sweep_dir)
        write(sweep_dir, rows)
        print(table(rows))
        print(f"sweep folder: {sweep_dir}")
        last_exit_code = 1 if any(not r["met"] for r in rows) else 0
