"""How the benchmark scripts time a command: cold, in a subprocess, by the kernel's account.

Shared by `run.py` (B1-B4) and `callable_cost.py` (B5).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BASELINES = HERE / "baselines"
PY = sys.executable

# What the runner does by default beyond the baselines' work: an independent check of every
# derivative, TensorBoard event files, plots. The goals compare equal work, so these are
# off for B2-B4's goal figures (and one of B5's two modes); B2 and B5 also report the cost
# with the defaults.
SAME_WORK = ("verify=off", "log.tensorboard=false", "log.plots=false")


@dataclass
class Run:
    wall_s: float
    cpu_s: float  # user + system, of the process and its children
    max_rss_mb: float
    stdout: str


def run(cmd: Sequence[str], cwd: Path, env: Optional[Mapping[str, str]] = None) -> Run:
    """Run a command to completion; its wall time, CPU time and peak memory. `env` adds to
    this process's environment (the project root is always importable)."""
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **(env or {}),
    }
    full_env.pop("HYDRA_FULL_ERROR", None)
    cwd.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=full_env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def runner_cmd(*args: str) -> List[str]:
    return [PY, "-m", "runner", *args]


def check_sweep_folders(sweep_dir: Path, jobs: int) -> None:
    """Every job of the runner's sweep has its own folder, `.hydra/` files and results.json."""
    for i in range(jobs):
        for name in (".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "results.json"):
            if not (sweep_dir / str(i) / name).is_file():
                raise RuntimeError(f"the runner's sweep is missing {sweep_dir / str(i) / name}")
