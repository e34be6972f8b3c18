"""Sweeps through `hydra/launcher=runner_slurm` (many jobs per SLURM task) on a real SLURM
cluster: the in-process launcher's summary values, a failing job recorded while its
chunk-mates complete, a task cancelled mid-chunk leaving its finished jobs whole and the rest
reported, and `resume` running those.

The cluster is the one-node cluster `.ci/slurm-up` starts (`slurm_partition` skips without
one, and fails under CI=true). Each test names its jobs and cancels whatever of them is left
at teardown (`slurm_job_name`).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from runner.record.log_reader import read_log
from tests.helpers import cli, slurm, start_cli, summary

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

FIVE = "point.x=1.0,2.0,3.0,4.0,5.0"
ONE_REFUSED = "point.x=1.0,nope,3.0"  # 'nope' is refused by the config: job 1 fails
SAME = ("job", "overrides", "status", "met", "resumed", "derivatives", "checks", "error", "mismatches")


def chunked(partition: str, name: str, tmp_path: Path, jobs_per_task: int) -> List[str]:
    return [
        "hydra/launcher=runner_slurm",
        f"hydra.launcher.partition={partition}",
        f"hydra.launcher.name={name}",
        "hydra.launcher.timeout_min=5",
        f"hydra.launcher.jobs_per_task={jobs_per_task}",
        f"hydra.launcher.submitit_folder={tmp_path / 'submitit' / '%j'}",
    ]


def sweep(cwd: Path, points: str, launcher: List[str]) -> Tuple[subprocess.CompletedProcess, Dict, Path]:
    sweep_dir = cwd / "sweep"
    proc = cli(["-m", "experiment=seed_cubic", points, f"hydra.sweep.dir={sweep_dir}", *launcher], cwd=cwd, timeout=400)
    return proc, summary(sweep_dir), sweep_dir


def values(s: Dict) -> Tuple:
    return (s["jobs"], s["failed"], s["resumed"], [tuple(row[k] for k in SAME) for row in s["rows"]])


def task_logs(tmp_path: Path) -> List[Path]:
    return sorted((tmp_path / "submitit").glob("*/*_log.out"))


def test_a_chunked_sweep_gives_the_in_process_summary(tmp_path, slurm_partition, slurm_job_name):
    (tmp_path / "here").mkdir()
    proc, s, sweep_dir = sweep(tmp_path, FIVE, chunked(slurm_partition, slurm_job_name, tmp_path, 2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    here_proc, here, _ = sweep(tmp_path / "here", FIVE, [])
    assert here_proc.returncode == 0, here_proc.stderr[-3000:]
    assert values(s) == values(here)
    assert [row["derivatives"]["dy/dx"] for row in s["rows"]] == [3.0, 12.0, 27.0, 48.0, 75.0]
    assert "sweep: 5 jobs, 0 failed" in proc.stdout
    # five jobs in three tasks (2 + 2 + 1), each job with its own folder and results
    assert len(task_logs(tmp_path)) == 3
    assert "Launching 5 jobs as 3 SLURM task(s) of up to 2 job(s)" in proc.stderr + proc.stdout
    for num in "01234":
        assert (sweep_dir / num / "results.json").is_file()
        log = sweep_dir / num / "runner.log"  # Hydra's job log: only when something was logged
        assert not log.exists() or log.stat().st_size > 0
        assert sorted(p.name for p in (sweep_dir / num / ".hydra").iterdir()) == [
            "config.yaml",
            "hydra.yaml",
            "overrides.yaml",
        ]
    # hydra.job.id is the SLURM task's id, as under submitit_slurm; the job number is its own
    hydra_yaml = (sweep_dir / "3" / ".hydra" / "hydra.yaml").read_text()
    assert "    num: 3\n" in hydra_yaml and "_1'\n" in hydra_yaml.split("    id: ")[1].split("\n")[0] + "\n"
    # the progress lines of a task's jobs are in its log, counted over the whole sweep
    assert (
        sum("#" in line and "| failed 0" in line for p in task_logs(tmp_path) for line in p.read_text().splitlines())
        == 5
    )
    assert "sacct error" not in proc.stderr


def test_a_failing_job_in_a_chunk_is_recorded_and_its_chunk_mates_complete(tmp_path, slurm_partition, slurm_job_name):
    (tmp_path / "here").mkdir()
    proc, s, sweep_dir = sweep(tmp_path, ONE_REFUSED, chunked(slurm_partition, slurm_job_name, tmp_path, 3))
    assert proc.returncode == 1, proc.stderr[-3000:]
    here_proc, here, _ = sweep(tmp_path / "here", ONE_REFUSED, [])
    assert here_proc.returncode == 1
    assert values(s) == values(here)
    assert (s["jobs"], s["failed"]) == (3, 1)
    refused = s["rows"][1]
    assert (refused["status"], refused["met"], refused["mismatches"]) == ("error", False, ["config refused"])
    assert [s["rows"][i]["derivatives"] for i in (0, 2)] == [{"dy/dx": 3.0}, {"dy/dx": 27.0}]
    assert len(task_logs(tmp_path)) == 1  # all three in one task
    assert "sweep: 3 jobs, 1 failed" in proc.stdout


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the sweep ended before {path} appeared: {proc.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout:.0f} s"
        time.sleep(0.2)


def test_a_task_cancelled_mid_chunk_reports_the_rest_and_resume_runs_them(tmp_path, slurm_partition, slurm_job_name):
    sweep_dir = tmp_path / "sweep"
    points = "point.x=1.0,2.0,3.0,4.0"
    # one task of four jobs; every job after the first naps 120 s before it starts
    args = ["-m", "experiment=seed_cubic", points, f"hydra.sweep.dir={sweep_dir}"]
    launcher = chunked(slurm_partition, slurm_job_name, tmp_path, 4)
    nap = ["+hydra.callbacks.nap._target_=tests.helpers.nap.Nap", "+hydra.callbacks.nap.seconds=120"]
    proc = start_cli([*args, *launcher, *nap], tmp_path)
    try:
        wait_for(sweep_dir / "0" / "results.json", proc)
        wait_for(sweep_dir / "1" / ".hydra" / "overrides.yaml", proc)  # job 1 has started
        assert slurm.jobs_named(slurm_job_name)
        subprocess.run(["scancel", "-n", slurm_job_name], check=True, timeout=30)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode not in (0, None), err[-3000:]
    s = summary(sweep_dir)
    assert (s["jobs"], s["failed"]) == (4, 3)
    assert [row["status"] for row in s["rows"]] == ["ok", "missing", "missing", "missing"]
    # the jobs the task never started are listed with their overrides
    assert [row["overrides"] for row in s["rows"]] == [["experiment=seed_cubic", f"point.x={x}.0"] for x in "1234"]
    assert read_log(sweep_dir / "0")["derivatives"][0]["value"] == 3.0  # the finished job's log is whole
    assert "CANCELLED" in err and "TaskLost" in err, err[-3000:]
    assert f"a task the cluster ended: cancelled, out of time or memory; resume={sweep_dir} runs the rest" in err
    assert "sweep: 4 jobs, 3 failed" in out

    again = cli([*args[:-1], f"resume={sweep_dir}", *launcher], cwd=tmp_path, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    s = summary(sweep_dir)
    assert (s["jobs"], s["failed"], s["resumed"]) == (4, 0, 1)
    assert [row["derivatives"]["dy/dx"] for row in s["rows"]] == [3.0, 12.0, 27.0, 48.0]
