"""The same sweep under Hydra's basic launcher, joblib (2 workers) and submitit_local gives
the same numbers, bit for bit, and the same summary.

Each launcher runs for real in a subprocess; every worker pays TensorFlow's import, so
this module takes about half a minute (submitit starts one process per job).
"""

from __future__ import annotations

import warnings

import pytest

from runner.sweep import summary as sweep
from tests.helpers import cli, summary, sweep_dirs

POINTS = "point.x=0.3,1.7,2.9"
LAUNCHERS = {
    "basic": [],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    # and to MLflow's default store in its folder: a parent and a child per job, each job in a process of its own
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=3", "log.mlflow=true"],
}
TRACKED = "log.mlflow=true"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """launcher name -> (process, summary rows), each sweep in its own folder."""
    done = {}

    def _sweep(launcher):
        if launcher not in done:
            cwd = tmp_path_factory.mktemp(launcher)
            proc = cli(["-m", *LAUNCHERS[launcher], "experiment=seed_chain_rule", POINTS], cwd=cwd, timeout=400)
            [sweep_dir] = sweep_dirs(cwd)
            done[launcher] = (proc, summary(sweep_dir)["rows"], sweep_dir)
        return done[launcher]

    return _sweep


def numbers(rows):
    return [
        (
            r["job"],
            [o for o in r["overrides"] if not o.startswith("log.mlflow=")],
            r["status"],
            r["met"],
            r["derivatives"],
        )
        for r in rows
    ]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_launchers_give_the_basic_launchers_numbers(swept, launcher, monkeypatch):
    basic_proc, basic_rows, _ = swept("basic")
    proc, rows, sweep_dir = swept(launcher)
    assert proc.returncode == 0, proc.stderr
    assert basic_proc.returncode == 0, basic_proc.stderr
    assert len(rows) == 3 and numbers(rows) == numbers(basic_rows)
    assert [r["derivatives"]["dz/dx"] for r in rows] == [pytest.approx(4 * x**3, rel=1e-6) for x in (0.3, 1.7, 2.9)]
    assert (sweep_dir / sweep.SUMMARY_CSV).is_file()
    assert "sweep: 3 jobs, 0 failed" in proc.stdout
    if TRACKED in LAUNCHERS[launcher]:
        import mlflow

        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        store = mlflow.MlflowClient(f"sqlite:///{sweep_dir.parents[3]}/mlflow.db")
        with warnings.catch_warnings():  # SQLAlchemy's deprecation warnings about MLflow's code
            warnings.simplefilter("ignore", DeprecationWarning)
            runs = store.search_runs([e.experiment_id for e in store.search_experiments()])
        [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        children = sorted((r for r in runs if r is not parent), key=lambda r: int(r.data.tags["runner.job_num"]))
        assert parent.info.status == "FINISHED" and len(children) == 3
        assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
        assert [r.data.metrics["derivatives.dz/dx"] for r in children] == [row["derivatives"]["dz/dx"] for row in rows]
