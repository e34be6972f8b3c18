"""Sweeps on a real SLURM cluster through Hydra's `submitit_slurm` launcher give what the
runner's in-process launcher gives: the same summary values, a results.json in every job
folder, a failing job recorded while the others complete.

The cluster is the one-node cluster `.ci/slurm-up` starts (the `slurm_partition` fixture
skips without one, and fails under CI=true). Each SLURM job pays TensorFlow's import, so a
3-job sweep takes about 15 s here. Every test names its jobs (`hydra.launcher.name=`) and
cancels whatever of them is still queued at teardown (`slurm_job_name`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from tests.helpers import cli, slurm, summary

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

POINTS = {
    "three": "point.x=1.0,2.0,3.0",
    "one_refused": "point.x=1.0,nope,3.0",  # 'nope' is refused by the config: job 1 fails
}
# what a summary row says about a job, without its folder and duration
SAME = ("job", "overrides", "status", "met", "resumed", "derivatives", "checks", "error", "mismatches")


def sweep(cwd: Path, points: str, launcher: List[str]) -> Tuple[object, Dict, Path]:
    """`python -m runner -m experiment=seed_cubic POINTS LAUNCHER...` into cwd/sweep."""
    sweep_dir = cwd / "sweep"
    proc = cli(["-m", "experiment=seed_cubic", points, f"hydra.sweep.dir={sweep_dir}", *launcher], cwd=cwd, timeout=400)
    return proc, summary(sweep_dir), sweep_dir


def on_slurm(tmp_path: Path, points: str, partition: str, name: str):
    return sweep(
        tmp_path,
        points,
        [
            "hydra/launcher=submitit_slurm",
            f"hydra.launcher.partition={partition}",
            f"hydra.launcher.name={name}",
            "hydra.launcher.timeout_min=5",
            f"hydra.launcher.submitit_folder={tmp_path / 'submitit' / '%j'}",
        ],
    )


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
    # one SLURM array task per job, its submitit log on disk, completed in the accounting;
    # accounting is on, so submitit's sacct polls do not fail
    assert len(list((tmp_path / "submitit").glob("*/*_log.out"))) == 3
    assert accounted(slurm_job_name, 3) == ["COMPLETED"] * 3
    assert "sacct error" not in proc.stderr


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
