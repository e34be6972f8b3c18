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
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
import yaml

from runner.record import log_reader
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
    tmp_path, slurm_partition, slurm_job_name, in_process, monkeypatch
):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # this process reads the store back
    # and to MLflow: a parent (FAILED: a job failed) and a child per job, logged from the SLURM tasks
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    launcher = [*slurm_launcher(slurm_partition, slurm_job_name, tmp_path / "submitit"), f"log.mlflow={uri}"]
    proc, s, sweep_dir = sweep(tmp_path, POINTS["one_refused"], launcher)
    no_sacct_bypass(proc.stderr)
    assert proc.returncode == 1, proc.stderr[-3000:]
    for row in s["rows"]:
        row["overrides"] = [o for o in row["overrides"] if not o.startswith("log.mlflow=")]
    assert values(s) == values(in_process(POINTS["one_refused"]))
    import mlflow

    store = mlflow.MlflowClient(uri)
    with warnings.catch_warnings():  # SQLAlchemy's deprecation warnings about MLflow's code
        warnings.simplefilter("ignore", DeprecationWarning)
        runs = store.search_runs([e.experiment_id for e in store.search_experiments()])
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {int(r.data.tags["runner.job_num"]): r for r in runs if r is not parent}
    assert parent.info.status == "FAILED" and sorted(children) == [0, 1, 2]
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert [children[n].data.tags["runner.status"] for n in (0, 1, 2)] == ["ok", "error", "ok"]
    assert children[2].data.metrics["derivatives.dy/dx"] == 27.0
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


PROGRESS_LINE = re.compile(r"^\[(\d+)/(\d+)\] #(\d+) (.*?): (ok|FAILED \(exit \d\))[^|]* \| failed (\d+)", re.M)


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
    assert [by_job[j].group(4) for j in "0123"] == [f"point.x={x}" for x in points[8:].split(",")]  # the swept key
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


# ------------------------------------------------------------------ scancel, then resume


def job_states(sweep_dir: Path) -> Dict[str, str]:
    """Job folder name -> 'done' (a results.json) or 'started' (a folder, no results.json yet)."""
    return {
        d.name: "done" if (d / "results.json").exists() else "started"
        for d in sweep_dir.iterdir()
        if d.is_dir() and d.name.isdigit()
    }


@pytest.fixture(scope="module")
def cancelled(slurm_partition, tmp_path_factory):
    """A 6-job sweep on SLURM, one job at a time, `scancel`led (by its job name) as soon as a
    job's results.json is on disk: the launching process's exit code, output, and the sweep
    folder as it left it (each results.json's mtime, to tell a kept job from a re-run one)."""
    cwd = tmp_path_factory.mktemp("cancelled")
    sweep_dir = cwd / "sweep"
    name = f"runner-test-{os.getpid()}-{time.time_ns()}"
    out, err = open(cwd / "stdout", "w"), open(cwd / "stderr", "w")
    args = [sys.executable, "-m", "runner", "-m", "experiment=seed_cubic", POINTS["six"]]
    args += [
        f"hydra.sweep.dir={sweep_dir}",
        *slurm_launcher(slurm_partition, name, None, "hydra.launcher.array_parallelism=1"),
    ]
    launcher = subprocess.Popen(args, cwd=cwd, env=command_env(), stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 300
        while "done" not in (job_states(sweep_dir) if sweep_dir.is_dir() else {}).values():
            assert launcher.poll() is None, (
                f"the sweep ended before a job finished: {(cwd / 'stderr').read_text()[-2000:]}"
            )
            assert time.monotonic() < deadline, "no job finished in 300 s"
            time.sleep(0.2)
        at_cancel = job_states(sweep_dir)
        queued = slurm.cancel(name)  # scancel -n NAME, and wait until none is queued
        t0 = time.monotonic()
        code = launcher.wait(timeout=180)  # submitit waits up to 30 s for a result that never comes
        waited = time.monotonic() - t0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        out.close()
        err.close()
        slurm.cancel(name)
    mtimes = {p.parent.name: p.stat().st_mtime_ns for p in sweep_dir.glob("*/results.json")}
    return dict(
        sweep_dir=sweep_dir,
        name=name,
        at_cancel=at_cancel,
        queued=queued,
        code=code,
        waited=waited,
        stdout=(cwd / "stdout").read_text(),
        stderr=(cwd / "stderr").read_text(),
        mtimes=mtimes,
    )


def test_scancel_of_a_running_sweep_leaves_whole_logs_a_summary_and_a_failure_code(cancelled):
    """The sweep ends at once with exit 1 (submitit raises UncompletedJobError for the first
    cancelled job; runner/cli.py writes the summary from disk). A job running at scancel
    usually still finishes: submitit's job ignores SIGTERM ("Bypassing signal SIGTERM") and
    SLURM kills it KillWait (5 s) later, after a seed_cubic job's few seconds."""
    sweep_dir, stderr = cancelled["sweep_dir"], cancelled["stderr"]
    # caught mid-flight: jobs were still queued or running when scancel came
    assert cancelled["queued"], cancelled["at_cancel"]
    assert len(cancelled["at_cancel"]) < 6
    # the launching process noticed (accounting says CANCELLED), did not hang, and failed
    assert cancelled["code"] not in (0, None), stderr[-3000:]
    assert cancelled["waited"] < 120
    no_sacct_bypass(stderr)
    # the cancelled tasks' record reaches the accounting database a moment after scancel
    deadline = time.monotonic() + 30
    while "CANCELLED" not in (states := slurm.states(cancelled["name"])) and time.monotonic() < deadline:
        time.sleep(1)
    assert "CANCELLED" in states
    # every results.json on disk is a whole run log; a job folder without one is listed missing
    after = job_states(sweep_dir)
    finished = sorted(j for j, state in after.items() if state == "done")
    assert set(finished) >= {j for j, state in cancelled["at_cancel"].items() if state == "done"}
    for job in finished:
        record = log_reader.read_log(sweep_dir / job)
        assert record["status"] == "ok" and record["expect"]["met"]
    for job in after:
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):  # Hydra's, not written atomically
            assert yaml.safe_load((sweep_dir / job / ".hydra" / name).read_text()) is not None
    # no temporary file but the documented one (a job SIGKILLed mid-write: .results.json.*.tmp)
    temporary = [p.relative_to(sweep_dir) for p in sweep_dir.rglob("*.tmp")]
    assert all(p.parent.name in after and p.name.startswith(".results.json.") for p in temporary), temporary
    # the summary: written by the launching process, one row per job folder, as on disk
    s = summary(sweep_dir)
    rows = {row["job"]: row for row in s["rows"]}
    assert sorted(rows) == sorted(after)
    assert [rows[j]["status"] for j in finished] == ["ok"] * len(finished)
    assert all(rows[j]["status"] == "missing" for j in after if j not in finished)
    assert (s["jobs"], s["failed"]) == (len(after), len(after) - len(finished))
    assert (sweep_dir / "summary.csv").is_file()
    assert "sweep ended by an error" in stderr and f"summary in {sweep_dir}" in stderr, stderr[-3000:]
    # the cluster ended it, not a fault of the runner: the line says so and how to go on
    assert f"(a task the cluster ended: cancelled, out of time or memory; resume={sweep_dir} runs the rest)" in stderr
    if len(finished) == len(after):  # no job was killed mid-run: the others never started
        assert f"0 of {len(after)} job(s) failed, {6 - len(after)} never started" in stderr, stderr[-3000:]


def test_resume_after_scancel_keeps_the_finished_jobs_and_runs_the_rest(
    cancelled, slurm_partition, slurm_job_name, in_process
):
    sweep_dir, kept = cancelled["sweep_dir"], cancelled["mtimes"]
    assert kept, "the cancelled sweep finished no job"
    args = ["-m", "experiment=seed_cubic", POINTS["six"], f"resume={sweep_dir}"]
    proc = cli([*args, *slurm_launcher(slurm_partition, slurm_job_name)], cwd=sweep_dir.parent, timeout=400)
    no_sacct_bypass(proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(sweep_dir)
    # the finished jobs were kept, not run again: their results.json untouched, marked resumed
    assert {
        p.parent.name: p.stat().st_mtime_ns for p in sweep_dir.glob("*/results.json") if p.parent.name in kept
    } == kept
    assert sorted(row["job"] for row in s["rows"] if row["resumed"]) == sorted(kept)
    assert (s["jobs"], s["failed"], s["resumed"]) == (6, 0, len(kept))
    assert f"sweep: 6 jobs, 0 failed, {len(kept)} kept from an earlier launch (resume)" in proc.stdout
    # and the numbers are the in-process sweep's
    unmarked = [{**row, "resumed": False} for row in s["rows"]]
    reference = in_process(POINTS["six"])
    assert values({**s, "resumed": 0, "rows": unmarked}) == values(reference)
    assert [row["derivatives"]["dy/dx"] for row in s["rows"]] == [3.0 * x * x for x in range(1, 7)]
    assert accounted(slurm_job_name, 6) == ["COMPLETED"] * 6
