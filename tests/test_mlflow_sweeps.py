"""`log.mlflow` on the command line: sweeps as one parent run with a child per job, read back
from real MLflow stores in tmp_path (`python -m runner` in subprocesses, tests/helpers/cli.py).

| command (3 jobs, seed_cubic)                          | MLflow / the sweep folder gives                          |
| ----------------------------------------------------- | -------------------------------------------------------- |
| -m point.x=1,2,3, in-process launcher, sqlite URI      | 1 parent FINISHED (summary files), 3 children (params,   |
| -m point.x=1,2,3, in-process launcher, `true`          |   metrics, tags, results.json + .hydra/), mlflow.json    |
| -m point.x=1,2,3, joblib, sqlite URI                   |   names the parent, `mlflow run: PARENT` on stdout        |
| -m point.x=1,nope,3, joblib, `true`                    | the same; child #1 status error (refused), parent FAILED |
| -m point.x=1,nope,3, `http://127.0.0.1:<closed port>`  | exit code as without log.mlflow, every log whole with its |
|                                                        |   warning, the warning once on stderr, seconds not minutes |
| a sweep without log.mlflow, resume= with it, again     | its kept jobs get children; the same parent, never two   |
| log.mlflow=ftp://x or 42 (run or sweep)                | `config error: log.mlflow: ...`, exit 2, no TF, no MLflow |
| no log.mlflow; --help, --cfg job with log.mlflow=true  | MLflow never imported                                    |
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from runner.record import mlflow_store
from runner.sweep import mlflow_sweep
from tests.helpers import cli, command_env, probe_script, sweep_dirs, tracking

pytestmark = pytest.mark.slow

JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
QUIET = ["log.tensorboard=false", "log.plots=false"]
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


@pytest.fixture(autouse=True)
def no_user_store(monkeypatch):
    tracking.isolate(monkeypatch, runner_defaults=False)


def client(uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(uri)


def all_runs(uri: str) -> List[Any]:
    c = client(uri)
    return list(c.search_runs([e.experiment_id for e in c.search_experiments()]))


def artifacts(uri: str, run_id: str, folder: str = "") -> List[str]:
    return sorted(f.path for f in client(uri).list_artifacts(run_id, folder or None))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parent_and_children(uri: str, sweep_dir: Path) -> Tuple[Any, Dict[int, Any]]:
    """The sweep's one parent run and its children by job number, checked against mlflow.json."""
    runs = all_runs(uri)
    parents = [r for r in runs if mlflow_store.PARENT_TAG not in r.data.tags]
    assert len(parents) == 1, [(r.info.run_name, r.data.tags.get("runner.kind")) for r in runs]
    [parent] = parents
    assert parent.data.tags["runner.kind"] == "sweep"
    assert parent.data.tags["runner.sweep_dir"] == str(sweep_dir.resolve())
    state = json.loads((sweep_dir / mlflow_sweep.STATE_FILE).read_text())
    assert state["parent_run_id"] == parent.info.run_id and "error" not in state
    children = {int(r.data.tags["runner.job_num"]): r for r in runs if r is not parent}
    assert all(r.data.tags[mlflow_store.PARENT_TAG] == parent.info.run_id for r in children.values())
    assert len(children) == len(runs) - 1
    return parent, children


CASES = [
    # (launcher, store, points, refused job)
    ("in-process", "sqlite", "point.x=1.0,2.0,3.0", None),
    ("in-process", "true", "point.x=1.0,2.0,3.0", None),
    ("joblib", "sqlite", "point.x=1.0,2.0,3.0", None),
    ("joblib", "true", "point.x=1.0,nope,3.0", 1),
]


@pytest.mark.parametrize("launcher, kind, points, refused", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_a_sweep_is_one_parent_with_a_child_per_job(tmp_path, empty_store, launcher, kind, points, refused):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    if kind == "sqlite":  # `true` makes MLflow's default store from nothing, in the cwd
        shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    setting = uri if kind == "sqlite" else "true"
    args = ["-m", "experiment=seed_cubic", points, *QUIET, f"log.mlflow={setting}"]
    proc = cli([*args, *(JOBLIB if launcher == "joblib" else [])], cwd=tmp_path, env=ENV, timeout=300)
    assert proc.returncode == (0 if refused is None else 1), proc.stderr[-3000:]
    assert "warning" not in proc.stderr and "INFO" not in proc.stderr, proc.stderr[-3000:]
    [sweep_dir] = sweep_dirs(tmp_path)
    parent, children = parent_and_children(uri, sweep_dir)
    assert sorted(children) == [0, 1, 2]
    assert f"mlflow run: {parent.info.run_id} (experiment {parent.info.experiment_id}) at {uri}" in proc.stdout
    assert parent.info.status == ("FINISHED" if refused is None else "FAILED")
    assert {"summary.csv", "summary.json", "multirun.yaml"} <= set(artifacts(uri, parent.info.run_id))
    assert parent.data.metrics["jobs"] == 3 and parent.data.metrics["jobs_failed"] == (refused is not None)
    assert parent.data.params["point.x"] == points.partition("=")[2]
    for num, child in children.items():
        log = json.loads((sweep_dir / str(num) / "results.json").read_text())
        assert log["tracking"]["mlflow"]["run_id"] == child.info.run_id
        assert log["tracking"]["mlflow"]["parent_run_id"] == parent.info.run_id
        tags, params, m = child.data.tags, child.data.params, child.data.metrics
        assert tags["runner.version"] and len(tags["mlflow.source.git.commit"]) == 40
        assert "results.json" in artifacts(uri, child.info.run_id)
        assert {".hydra/config.yaml", ".hydra/overrides.yaml"} <= set(artifacts(uri, child.info.run_id, ".hydra"))
        if num == refused:
            assert tags["runner.status"] == "error" and tags["runner.expect_met"] == "false"
            assert child.info.status == "FAILED" and params["point.x"] == "nope"
            continue
        x = float(points.partition("=")[2].split(",")[num])
        assert params["point.x"] == str(x) and params["experiment"] == "seed_cubic"
        assert params["tape.persistent"] in ("True", "False")
        assert m["values.y"] == pytest.approx(x**3) and m["derivatives.dy/dx"] == pytest.approx(3 * x**2)
        assert m["checks.dy/dx.passed"] == 1.0 and m["checks.dy/dx.max_abs_error"] >= 0
        assert m["timing.total_s"] > 0
        assert tags["runner.status"] == "ok" and tags["runner.expect_met"] == "true"
        assert child.info.status == "FINISHED"


def test_an_unreachable_store_leaves_the_sweep_as_it_was(tmp_path):
    args = ["-m", "experiment=seed_cubic", "point.x=1.0,nope,3.0", *QUIET]
    (tmp_path / "plain").mkdir()
    (tmp_path / "tracked").mkdir()
    t0 = time.monotonic()
    plain = cli(args, cwd=tmp_path / "plain", env=ENV)
    t1 = time.monotonic()
    uri = f"http://127.0.0.1:{closed_port()}"
    tracked = cli([*args, f"log.mlflow={uri}"], cwd=tmp_path / "tracked", env=ENV)
    t2 = time.monotonic()
    assert tracked.returncode == plain.returncode == 1, tracked.stderr[-3000:]
    assert (t2 - t1) - (t1 - t0) < 20, f"{t2 - t1:.1f} s tracked, {t1 - t0:.1f} s plain"
    [plain_dir], [sweep_dir] = sweep_dirs(tmp_path / "plain"), sweep_dirs(tmp_path / "tracked")
    assert "error" in json.loads((sweep_dir / mlflow_sweep.STATE_FILE).read_text())
    for num in "012":
        log = json.loads((sweep_dir / num / "results.json").read_text())
        before = json.loads((plain_dir / num / "results.json").read_text())
        assert (log["status"], log["values"], log["expect"]["met"]) == (
            before["status"],
            before["values"],
            before["expect"]["met"],
        )
        warning = log["tracking"]["mlflow"]["warning"]
        assert warning.startswith("not logged to MLflow") and warning in log["warnings"]
    said = [line for line in tracked.stderr.splitlines() if line.startswith("warning: ")]
    assert len(said) == 1 and "127.0.0.1" in said[0], tracked.stderr[-3000:]
    assert "mlflow run:" not in tracked.stdout


def test_resume_logs_the_kept_jobs_once_under_one_parent(tmp_path, empty_store):
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["-m", "experiment=seed_cubic", "point.x=1.0,2.0,3.0", *QUIET]
    first = cli(args, cwd=tmp_path, env=ENV)  # not tracked
    assert first.returncode == 0, first.stderr[-3000:]
    [sweep_dir] = sweep_dirs(tmp_path)
    assert not (sweep_dir / mlflow_sweep.STATE_FILE).exists()
    again = [*args, f"resume={sweep_dir}", f"log.mlflow={uri}"]
    second = cli(again, cwd=tmp_path, env=ENV)
    assert second.returncode == 0, second.stderr[-3000:]
    parent, children = parent_and_children(uri, sweep_dir)
    assert sorted(children) == [0, 1, 2]  # each kept job got its child now
    assert children[1].data.metrics["derivatives.dy/dx"] == 12.0
    third = cli(again, cwd=tmp_path, env=ENV)
    assert third.returncode == 0, third.stderr[-3000:]
    state = json.loads((sweep_dir / mlflow_sweep.STATE_FILE).read_text())
    assert state["parent_run_id"] == parent.info.run_id and state.get("resumed") is True
    parent_again, children_again = parent_and_children(uri, sweep_dir)  # still one parent
    assert parent_again.info.run_id == parent.info.run_id and parent_again.info.status == "FINISHED"
    assert {n: r.info.run_id for n, r in children_again.items()} == {n: r.info.run_id for n, r in children.items()}


# `python -m runner ARGS`, printing its exit code and whether TensorFlow and MLflow were imported
_PROBE = probe_script("'PROBE', done.code, 'tensorflow' in sys.modules, 'mlflow' in sys.modules")


def probe(args: List[str], cwd: Path) -> Tuple[List[str], str]:
    """(["PROBE", exit code, TF imported, MLflow imported], stderr) of `python -m runner ARGS`."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cwd,
        env=command_env(ENV),
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = [line for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    return (said[-1].split() if said else [proc.stdout[-500:]]), proc.stderr


@pytest.mark.parametrize("value", ["ftp://x", "42"])
def test_a_bad_log_mlflow_is_a_config_error_before_tensorflow(tmp_path, value):
    said, stderr = probe([f"log.mlflow={value}"], tmp_path)
    assert said == ["PROBE", "2", "False", "False"], stderr
    assert stderr.strip().startswith("config error: log.mlflow: expected true, false, null or a tracking URI")
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_a_bad_log_mlflow_in_a_sweep_touches_no_store(tmp_path):
    said, stderr = probe(["-m", "point.x=1.0,2.0", "log.mlflow=42"], tmp_path)
    assert said == ["PROBE", "1", "False", "False"], stderr
    [sweep_dir] = sweep_dirs(tmp_path)
    assert not (sweep_dir / mlflow_sweep.STATE_FILE).exists() and not (tmp_path / "mlflow.db").exists()
    assert "warning" not in stderr


@pytest.mark.parametrize(
    "args, code, tf",
    [
        (["--help"], "0", "False"),
        (["--cfg", "job", "log.mlflow=true"], "0", "False"),
        (["experiment=seed_cubic", *QUIET], "0", "True"),  # a whole run, without log.mlflow
    ],
    ids=["help", "cfg-job", "run"],
)
def test_mlflow_is_imported_only_when_a_run_logs_to_it(tmp_path, args, code, tf):
    said, stderr = probe(args, tmp_path)
    assert said == ["PROBE", code, tf, "False"], stderr[-2000:]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
