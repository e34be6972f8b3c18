"""Sweeps on a real SLURM cluster through Hydra's `submitit_slurm` launcher give what the
runner's in-process launcher gives: the same summary values, a results.json in every job
folder, a failing job recorded while the others complete, the progress counts and lines
docs/sweeps.md promises under submitit; a sweep `scancel`led mid-flight ends with whole logs,
a summary and a non-zero exit, and `resume=` then keeps its finished jobs and runs the rest.
Accounting is on (`.ci/slurm-up` runs slurmdbd), so submitit's `sacct` polls never fail:
no launching process prints submitit's "Bypassing sacct error".

The cluster is the one-node cluster `.ci/slurm-up` starts (the `slurm_partition` fixture
skips without one, and fails under CI=true). Each SLURM job pays TensorFlow's import, so a
3-job sweep takes about 15 s here. Every test names its jobs (`hydra.launcher.name=`) and
cancels whatever of them is still queued at teardown (`slurm_job_name`).
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from runner.sweep import progress
from tests.helpers import cli, command_env, slurm, summary

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

POINTS = {
    "three": "point.x=1.0,2.0,3.0",
    "one_refused": "point.x=1.0,nope,3.0",  # 'nope' is refused by the config: job 1 fails
    "four_one_refused": "point.x=1.0,2.0,nope,4.0",
    # one job at a time (array_parallelism=1), each ~4 s (TensorFlow's import): after the
    # first results.json the other five take 20 s more, time enough to cancel mid-flight
    "six": "point.x=1.0,2.0,3.0,4.0,5.0,6.0",
}
# what a summary row says about a job, without its folder and duration
SAME = ("job", "overrides", "status", "met", "resumed", "derivatives", "checks", "error", "mismatches")


def sweep(cwd: Path, points: str, launcher: List[str]) -> Tuple[object, Dict, Path]:
    """`python -m runner -m experiment=seed_cubic POINTS LAUNCHER...` into cwd/sweep."""
    sweep_dir = cwd / "sweep"
    proc = cli(["-m", "experiment=seed_cubic", points, f"hydra.sweep.dir={sweep_dir}", *launcher], cwd=cwd, timeout=400)
    return proc, summary(sweep_dir), sweep_dir


# what submitit logs on each poll when `sacct` fails (accounting off): it then cannot see a
# job that ended without its result (cancelled, killed) as done
SACCT_BYPASS = "Bypassing sacct error"


def slurm_launcher(partition: str, name: str, submitit_folder: Optional[Path] = None, *extra: str) -> List[str]:
    """The overrides of `hydra/launcher=submitit_slurm` on the test cluster; `submitit_folder`
    None keeps the launcher's default, SWEEP/.submitit/%j (where docs/sweeps.md says the
    progress lines are)."""
    return [
        "hydra/launcher=submitit_slurm",
        f"hydra.launcher.partition={partition}",
        f"hydra.launcher.name={name}",
        "hydra.launcher.timeout_min=5",
        *([f"hydra.launcher.submitit_folder={submitit_folder / '%j'}"] if submitit_folder else []),
        *extra,
    ]


def no_sacct_bypass(stderr: str) -> None:
    """Accounting answers: submitit never fell back from `sacct` (docs: .ci/slurm-up)."""
    assert SACCT_BYPASS not in stderr, stderr[-3000:]


def on_slurm(tmp_path: Path, points: str, partition: str, name: str, default_folder: bool = False):
    folder = None if default_folder else tmp_path / "submitit"
    proc, s, sweep_dir = sweep(tmp_path, points, slurm_launcher(partition, name, folder))
    no_sacct_bypass(proc.stderr)
    return proc, s, sweep_dir


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    """points -> the summary of the same sweep under the default (in-process) launcher."""
    done: Dict[str, Dict] = {}

    def _sweep(points: str) -> Dict:
        if points not in done:
            proc, done[points], _ = sweep(tmp_path_factory.mktemp("in_process"), points, [])
            assert proc.returncode == (1 if "nope" in points else 0), proc.stderr[-2000:]
        return done[points]

    return _sweep


def values(s: Dict) -> Tuple:
    return (s["jobs"], s["failed"], s["resumed"], [tuple(row[k] for k in SAME) for row in s["rows"]])


def accounted(name: str, jobs: int, timeout: float = 30) -> List[str]:
    """The jobs' states in SLURM's accounting, once all `jobs` are there and finished
    (slurmctld sends them to slurmdbd a moment after the job ends)."""
    deadline = time.monotonic() + timeout
    while True:
        found = slurm.states(name)
        if len(found) == jobs and not {"PENDING", "RUNNING", "COMPLETING"} & set(found):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_a_sweep_on_slurm_gives_the_in_process_summary(tmp_path, slurm_partition, slurm_job_name, in_process):
    proc, s, sweep_dir = on_slurm(tmp_path, POINTS["three"], slurm_partition, slurm_job_name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert values(s) == values(in_process(POINTS["three"]))
    assert [row["derivatives"]["dy/dx"] for row in s["rows"]] == [3.0, 12.0, 27.0]
    assert "sweep: 3 jobs, 0 failed" in proc.stdout
    for num in "012":
        assert (sweep_dir / num / "results.json").is_file()
    # one SLURM array task per job, its submitit log on disk, completed in the accounting
    assert len(list((tmp_path / "submitit").glob("*/*_log.out"))) == 3
    assert accounted(slurm_job_name, 3) == ["COMPLETED"] * 3


def test_a_failing_job_on_slurm_is_recorded_and_the_others_complete(
    tmp_path, slurm_partition, slurm_job_name, in_process
):
    proc, s, sweep_dir = on_slurm(tmp_path, POINTS["one_refused"], slurm_partition, slurm_job_name)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert values(s) == values(in_process(POINTS["one_refused"]))
    assert (s["jobs"], s["failed"]) == (3, 1)
    refused = s["rows"][1]
    assert (refused["status"], refused["met"], refused["mismatches"]) == ("error", False, ["config refused"])
    assert "point.x: expected a number" in refused["error"]
    assert [s["rows"][i]["derivatives"] for i in (0, 2)] == [{"dy/dx": 3.0}, {"dy/dx": 27.0}]
    for num in "012":
        assert (sweep_dir / num / "results.json").is_file()
    assert "sweep: 3 jobs, 1 failed" in proc.stdout
    # the job failed in the runner, not in SLURM: its task ended normally
    assert accounted(slurm_job_name, 3) == ["COMPLETED"] * 3


PROGRESS_LINE = re.compile(r"^\[(\d+)/(\d+)\] #(\d+) (.*): (ok|FAILED \(exit \d\)) \| failed (\d+)", re.M)


def test_progress_is_counted_in_files_and_printed_in_each_job_log(
    tmp_path, slurm_partition, slurm_job_name, in_process
):
    """docs/sweeps.md: under submitit the counts are kept in `SWEEP/.progress/` (one byte per
    job) and each job's progress line is in its `SWEEP/.submitit/*/*_log.out`; the summary
    files list every job."""
    points = POINTS["four_one_refused"]
    proc, s, sweep_dir = on_slurm(tmp_path, points, slurm_partition, slurm_job_name, default_folder=True)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert values(s) == values(in_process(points))
    assert "sweep: 4 jobs, 1 failed" in proc.stdout
    # the counters: one byte per finished job, one per failed job, the plan's total
    assert progress.counts(sweep_dir) == {"done": 4, "failed": 1, "total": 4}
    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep_dir)],
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "progress: 4/4 jobs finished, 1 failed" in report.stdout, report.stdout[-2000:] + report.stderr[-2000:]
    # one progress line in each job's submitit log, none in the launching process's output
    logs = sorted((sweep_dir / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 4
    lines = [m for log in logs for m in PROGRESS_LINE.finditer(log.read_text())]
    assert sorted(m.group(3) for m in lines) == ["0", "1", "2", "3"], [m.group(0) for m in lines]
    by_job = {m.group(3): m for m in lines}
    assert {m.group(2) for m in lines} == {"4"}
    # each job appends, then counts: the one that appended last saw all four
    assert max(int(m.group(1)) for m in lines) == 4 and min(int(m.group(1)) for m in lines) >= 1
    assert [by_job[j].group(4) for j in "0123"] == [f"experiment=seed_cubic point.x={x}" for x in points[8:].split(",")]
    assert [by_job[j].group(5) for j in "0123"] == ["ok", "ok", "FAILED (exit 2)", "ok"]  # a refused config: exit 2
    assert int(by_job["2"].group(6)) >= 1
    assert not PROGRESS_LINE.search(proc.stdout)
    # summary.json: every job, in full; summary.csv: the same rows
    assert [row["job"] for row in s["rows"]] == ["0", "1", "2", "3"]
    assert [row["status"] for row in s["rows"]] == ["ok", "ok", "error", "ok"]
    for row in s["rows"]:
        assert row["folder"] == str(sweep_dir / row["job"])
        assert isinstance(row["duration_s"], float) and row["duration_s"] > 0
    with open(sweep_dir / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["job"] for r in table] == ["0", "1", "2", "3"]
    assert [r["met"] for r in table] == ["True", "True", "False", "True"]
    assert [r["dy/dx"] for r in table] == ["3.0", "12.0", "", "48.0"]
    assert [r["check:dy/dx"] for r in table] == ["passed", "passed", "", "passed"]
    assert [r["overrides"] for r in table] == [" ".join(row["overrides"]) for row in s["rows"]]
    assert table[2]["mismatches"] == "config refused" and "expected a number" in table[2]["error"]
    assert accounted(slurm_job_name, 4) == ["COMPLETED"] * 4
