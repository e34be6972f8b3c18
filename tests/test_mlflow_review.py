"""Adversarial review of issue 17 (`log.mlflow`): what broke a promise, as a failing test first.

| attack                                                          | must give                                         |
| --------------------------------------------------------------- | ------------------------------------------------- |
| a config file's `log.mlflow: file://localhost/ABS` (or `//./`)   | refused: MLflow writes the store at /ABS          |
| a config file's `sqlite:///file:/ABS?uri=true`                   | refused: SQLite opens /ABS (a URI filename)       |
| a config file's `sqlite:///%2FABS`, `file:%2FABS`                | refused: the path is percent-decoded to /ABS      |
| SWEEP/mlflow.json naming another store than the job's log.mlflow | the job logs where its own log.mlflow says        |
| a derivative named `g/`, `a//b`, `a/../b`, `a/./b`              | its metrics logged (MLflow refused the whole batch) |
| the artifacts cannot be stored (`./mlruns` is a file)            | the run ends FAILED, never left RUNNING           |
| SIGINT mid-sweep (CLI, sqlite store)                             | exit 130, parent KILLED, no run left RUNNING      |
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Dict

import pytest

from runner import job
from runner.record import mlflow_store
from runner.record.mlflow_run import JobContext
from runner.sweep import mlflow_sweep
from tests.helpers import composed, start_cli, tracking


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch, tmp_path):
    tracking.isolate(monkeypatch)
    monkeypatch.chdir(tmp_path)


def _store(tmp_path: Path, empty_store: Path, name: str) -> str:
    return tracking.copy_store(empty_store, tmp_path, name)


CUBIC = composed(["experiment=seed_cubic", "point.x=2.0"])


def _tracked(setting: Any) -> Dict[str, Any]:
    cfg = json.loads(json.dumps(CUBIC))
    cfg["log"] = {**cfg["log"], "mlflow": setting, "tensorboard": False, "plots": False}
    return cfg


def test_a_job_logs_to_its_own_store_not_the_one_mlflow_json_names(tmp_path, empty_store):
    """`-m log.mlflow=sqlite:///b.db` over a file's `a.db` (the parent is in a.db), or an
    mlflow.json planted in a resumed folder: the job's own setting says where its run goes."""
    mine = _store(tmp_path, empty_store, "mine.db")
    other = _store(tmp_path, empty_store, "other.db")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    theirs = mlflow_store.Store(other)
    eid = theirs.experiment_id("x")
    parent = theirs.start_run(eid, "sweep", {})
    mlflow_sweep.write_state(sweep_dir, {"uri": other, "experiment_id": eid, "parent_run_id": parent})
    out = sweep_dir / "0"
    assert job.run(_tracked(mine), out, echo=False, in_sweep=True, context=JobContext((), sweep_dir, 0)) == 0
    entry = json.loads((out / "results.json").read_text())["tracking"]["mlflow"]
    assert [r.info.run_id for r in tracking.runs(mine)] == [entry["run_id"]]
    assert [r.info.run_id for r in tracking.runs(other)] == [parent]
    assert entry["uri"] == mine and "parent_run_id" not in entry


def _log(out: Path) -> Dict[str, Any]:
    return json.loads((out / "results.json").read_text())


def test_labels_that_make_the_same_key_keep_a_metric_each():
    from runner.record import mlflow_content

    record = {
        "derivatives": [
            {"name": "df/d(x,y)", "value": {"x": 1.0, "y": 2.0}},
            {"name": "df/d_x_y", "value": {"x": 3.0}},
        ]
    }
    assert mlflow_content.metrics(record) == {
        "derivatives.df/d_x_y.x": 1.0,
        "derivatives.df/d_x_y.y": 2.0,
        "derivatives.df/d_x_y.x_2": 3.0,
    }


@pytest.mark.parametrize("name", ["g/", "a//b", "a/../b", "a/./b"])
def test_a_derivative_named_like_a_path_is_logged(tmp_path, empty_store, name):
    uri = _store(tmp_path, empty_store, "m.db")
    cfg = _tracked(uri)
    cfg["derivatives"][0]["name"] = name
    assert job.run(cfg, tmp_path / "out", echo=False) == 0
    assert "warning" not in _log(tmp_path / "out")["tracking"]["mlflow"]
    [run] = tracking.runs(uri)
    assert run.info.status == "FINISHED"
    [key] = [k for k in run.data.metrics if k.startswith("derivatives.")]
    assert run.data.metrics[key] == 12.0  # d(x**3)/dx at 2


def test_a_run_whose_logging_failed_is_not_left_running(tmp_path, empty_store):
    uri = _store(tmp_path, empty_store, "m.db")
    (tmp_path / "mlruns").write_text("")  # MLflow's artifact folder for this store: cannot be made
    assert job.run(_tracked(uri), tmp_path / "out", echo=False) == 0
    entry = _log(tmp_path / "out")["tracking"]["mlflow"]
    assert "NotADirectoryError" in entry["warning"]
    [run] = tracking.runs(uri)
    assert run.info.run_id == entry["run_id"] and run.info.status == "FAILED"


@pytest.mark.slow
def test_a_sweep_stopped_by_sigint_leaves_no_run_running(tmp_path, empty_store):
    uri = _store(tmp_path, empty_store, "m.db")
    points = ",".join(str(i) for i in range(1, 41))
    args = ["-m", "experiment=seed_cubic", f"point.x={points}", f"log.mlflow={uri}"]
    args += ["log.tensorboard=false", "log.plots=false", "hydra.sweep.dir=sw"]
    proc = start_cli(args, tmp_path, {"MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        deadline = time.monotonic() + 240
        while len(list((tmp_path / "sw").glob("*/results.json"))) < 3 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    runs = tracking.runs(uri)
    [parent] = [r for r in runs if r.data.tags.get("runner.kind") == "sweep"]
    assert parent.info.status == "KILLED"
    assert 2 <= len(runs) - 1 < 40  # the third may be cut before its run was made
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []


def test_a_stopped_sweep_ends_its_children_left_running(tmp_path, empty_store, monkeypatch):
    """A signal can cut a job between its run's creation and the handler that would end it
    (seen in CI: a child left RUNNING): the sweep's end, KILLED, ends its children still running."""
    uri = _store(tmp_path, empty_store, "m.db")
    store = mlflow_store.Store(uri)
    eid = store.experiment_id("runner")
    parent = store.start_run(eid, "sweep", {"runner.kind": "sweep"})
    done = store.start_run(eid, "seed_cubic #0", {"runner.kind": "job"}, parent=parent)
    store.end_run(done, ok=True)
    cut = store.start_run(eid, "seed_cubic #1", {"runner.kind": "job"}, parent=parent)
    other = store.start_run(eid, "elsewhere", {"runner.kind": "run"})  # not the sweep's: left alone
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    mlflow_sweep.write_state(sweep_dir, {"uri": store.uri, "experiment_id": eid, "parent_run_id": parent})
    monkeypatch.setattr(mlflow_sweep, "interrupted", True)
    mlflow_sweep.end(sweep_dir, [{"met": True}], [])
    status = {r.info.run_id: r.info.status for r in tracking.runs(uri)}
    assert status == {parent: "KILLED", done: "FINISHED", cut: "KILLED", other: "RUNNING"}
