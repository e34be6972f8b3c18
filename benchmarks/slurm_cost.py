"""S1 and S2 (issue 15): a 64-job sweep of seed_cubic on SLURM, one task per job against
many jobs per task, and the same summary under every launcher.

    python benchmarks/slurm_cost.py [--jobs 64] [--array-parallelism 2] [--repeat 3]
                                    [--skip submitit_slurm] [--with-defaults]

Needs a SLURM cluster (`.ci/slurm-up` starts a one-node one) and the `[cluster]` extra.
Runs `python -m runner -m experiment=seed_cubic point.x=range(0,JOBS)` once per launcher,
cold, in a subprocess, and prints each one's wall time (runner and runner_slurm, which take
seconds: the median of --repeat runs, all shown):

- runner: the in-process launcher (the default);
- joblib: Hydra's joblib launcher, `n_jobs` = the CPUs here;
- submitit_slurm: Hydra's submitit launcher, one SLURM array task per job;
- runner_slurm: many jobs per task, `array_parallelism` = --array-parallelism (the CPUs of
  the one-node cluster by default, so as many tasks as can run at once), so
  jobs_per_task = ceil(JOBS / array_parallelism);
- runner_slurm (defaults), with --with-defaults: the launcher's defaults (array_parallelism
  16: 16 tasks of 4 jobs, on a 2-CPU node two at a time).

S1: runner_slurm at least 8x faster than submitit_slurm, and within 2x of runner.
S2: every launcher's summary.json has the same values (all but folders and durations).
Every SLURM job this script submits has its own name and is cancelled when it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
SAME = ("job", "overrides", "status", "met", "resumed", "derivatives", "checks", "error", "mismatches")


def partition() -> str:
    out = subprocess.run(["sinfo", "-h", "-o", "%P|%a"], capture_output=True, text=True, timeout=60)
    for line in out.stdout.splitlines():
        name, avail = (line.split("|") + [""])[:2]
        if avail == "up":
            return name.rstrip("*")
    raise SystemExit(f"no SLURM partition is up (sinfo: {out.stdout.strip() or out.stderr.strip()}); see .ci/slurm-up")


def launchers(part: str, name: str, tmp: Path, array_parallelism: int) -> Dict[str, List[str]]:
    slurm = [f"hydra.launcher.partition={part}", f"hydra.launcher.name={name}", "hydra.launcher.timeout_min=30"]
    return {
        "runner": [],
        "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={os.cpu_count() or 1}"],
        "submitit_slurm": ["hydra/launcher=submitit_slurm", *slurm],
        "runner_slurm": [
            "hydra/launcher=runner_slurm",
            *slurm,
            f"hydra.launcher.array_parallelism={array_parallelism}",
        ],
        "runner_slurm (defaults)": ["hydra/launcher=runner_slurm", *slurm],
    }


def sweep(jobs: int, extra: List[str], where: Path) -> Tuple[float, int, Optional[dict], str]:
    """(wall seconds, exit code, summary.json or None, the end of stderr)."""
    where.mkdir(parents=True)
    cmd = [sys.executable, "-m", "runner", "-m", "experiment=seed_cubic", f"point.x=range(0,{jobs})"]
    cmd += [f"hydra.sweep.dir={where / 'sweep'}", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    path = where / "sweep" / "summary.json"
    found = json.loads(path.read_text()) if path.is_file() else None
    return wall, proc.returncode, found, proc.stderr[-1500:]


def values(s: dict) -> dict:
    return {
        "jobs": s["jobs"],
        "failed": s["failed"],
        "resumed": s["resumed"],
        "rows": [{k: row[k] for k in SAME} for row in s["rows"]],
    }


def first_difference(a: dict, b: dict, where: str = "") -> Optional[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(dict.fromkeys([*a, *b])):
            if key not in a or key not in b:
                return f"{where}.{key}: only in one"
            found = first_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items against {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} against {b!r}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--array-parallelism", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", action="append", default=[], help="a launcher not to run (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of runner and runner_slurm (median)")
    parser.add_argument("--with-defaults", action="store_true", help="also runner_slurm with its defaults")
    args = parser.parse_args()
    name = f"runner-bench-{os.getpid()}-{time.time_ns()}"
    results: Dict[str, Tuple[float, int, Optional[dict], str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        chosen = launchers(partition(), name, Path(tmp), args.array_parallelism)
        try:
            for i, (label, extra) in enumerate(chosen.items()):
                if label in args.skip or (label.endswith("(defaults)") and not args.with_defaults):
                    continue
                times = args.repeat if label in ("runner", "runner_slurm") else 1
                runs = [sweep(args.jobs, extra, Path(tmp) / f"{i}-{n}") for n in range(max(1, times))]
                walls = sorted(r[0] for r in runs)
                results[label] = (statistics.median(walls), *runs[-1][1:])  # type: ignore[assignment]
                wall, code, _, err = results[label]
                shown = f" (runs: {', '.join(f'{w:.1f}' for w in walls)})" if len(walls) > 1 else ""
                print(f"{label:24s} {wall:7.1f} s  exit {code}{shown}", flush=True)
                if code != 0:
                    print(f"  stderr: {err}", flush=True)
        finally:
            subprocess.run(["scancel", "-n", name], capture_output=True)
    walls = {k: v[0] for k, v in results.items()}
    if {"runner", "submitit_slurm", "runner_slurm"} <= set(walls):
        faster = walls["submitit_slurm"] / walls["runner_slurm"]
        slower = walls["runner_slurm"] / walls["runner"]
        ok = faster >= 8 and slower <= 2
        print(
            f"S1 {'pass' if ok else 'FAIL'}: runner_slurm {walls['runner_slurm']:.1f} s is {faster:.1f}x faster than "
            f"submitit_slurm ({walls['submitit_slurm']:.1f} s; goal >= 8x) and {slower:.2f}x the in-process "
            f"runner ({walls['runner']:.1f} s; goal <= 2x), {args.jobs} jobs, array_parallelism {args.array_parallelism}"
        )
    summaries = {k: v[2] for k, v in results.items() if k in ("runner", "joblib", "submitit_slurm", "runner_slurm")}
    missing = [k for k, s in summaries.items() if s is None]
    if missing or len(summaries) < 2:
        print(f"S2 FAIL: no summary.json from {', '.join(missing) or 'enough launchers'}")
        return
    base_label, base = next(iter(summaries.items()))
    differences = []
    for label, s in summaries.items():
        found = first_difference(values(base), values(s))  # type: ignore[arg-type]
        if found:
            differences.append(f"{label} differs from {base_label} at {found}")
    if differences:
        print("S2 FAIL: " + "; ".join(differences))
    else:
        print(f"S2 pass: {args.jobs} jobs, identical summary.json values under {', '.join(summaries)}")


if __name__ == "__main__":
    main()
