"""`log.mlflow` in this process (runner.job.run), against real MLflow stores in tmp_path.

What a single run puts into MLflow, read back with `mlflow.MlflowClient(uri).search_runs`:

| config                                   | MLflow gets                                         | the run log gets                    |
| ---------------------------------------- | --------------------------------------------------- | ----------------------------------- |
| seed_cubic, `sqlite:///TMP/mlflow.db`    | one run, not nested: params, metrics, tags, files   | tracking.mlflow.run_id; table line  |
| seed_cubic, `true` (cwd = TMP)           | the same, in TMP/mlflow.db (MLflow's default store) | tracking.mlflow.uri = that store    |
| `http://127.0.0.1:<closed port>`         | nothing; a few seconds at most                      | a warning (once on stderr), same code |
| a refused config (point.x=nope)          | a run, runner.status=error                          | exit 2, tracking.mlflow.run_id      |
| values/derivatives NaN, +-Infinity       | metrics NaN, +-Infinity (MLflow's +-1.8e308)        | as always                           |
| 210 steps (params over MLflow's 100/req) | every param                                         |                                     |
| SWEEP/mlflow.json a FIFO, link, garbage, 1 GB sparse | a run of its own; no hang, no whole read | tracking.mlflow.run_id              |

and mlflow_content's pure parts: keys, params, metrics, which files are artifacts.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from runner import job
from runner.record import mlflow_content, mlflow_store
from runner.record.mlflow_run import JobContext
from runner.sweep import mlflow_sweep
from tests.helpers import composed, function_config, tracking
from tests.helpers.tracking import runs


@pytest.fixture(autouse=True)
def mlflow_env(monkeypatch, tmp_path):
    """MLflow's env as the runner sets it, undone after the test; cwd = tmp_path (MLflow's
    default store and a sqlite store's artifacts `./mlruns` land there, never in the checkout)."""
    tracking.isolate(monkeypatch)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def store(tmp_path, empty_store) -> str:
    """A fresh sqlite store in tmp_path (a copy of `empty_store`), as a URI."""
    return tracking.copy_store(empty_store, tmp_path)


def tracked(cfg: Dict[str, Any], setting: Any) -> Dict[str, Any]:
    cfg = json.loads(json.dumps(cfg))
    cfg["log"] = {**cfg["log"], "mlflow": setting, "tensorboard": False, "plots": False}
    return cfg


def artifact_paths(uri: str, run_id: str, folder: str = "") -> List[str]:
    import mlflow

    return sorted(f.path for f in mlflow.MlflowClient(uri).list_artifacts(run_id, folder or None))


def log_of(folder: Path) -> Dict[str, Any]:
    return json.loads((folder / "results.json").read_text())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed once the socket is: nothing listens there


CUBIC = composed(["experiment=seed_cubic", "point.x=2.0"])


# ---- mlflow_content: pure -------------------------------------------------------------------


def test_keys_keep_what_mlflow_takes_and_map_the_rest():
    assert mlflow_content.key("df/d(x,y)[x]") == "df/d_x_y.x"
    assert mlflow_content.key("hessian(f; u, v)[u,v]") == "hessian_f_ u_ v.u_v"
    assert mlflow_content.key("a*b!") == "a_b_"
    assert len(mlflow_content.key("k" * 400)) == mlflow_content.MAX_KEY


def test_params_are_the_overrides_then_the_resolved_scalars():
    cfg = {"point": {"x": 2.0, "xs": [1, 2]}, "tape": {"persistent": True}, "log": {"console": "x"}}
    got = mlflow_content.params(cfg, ["point.x=3.0", "+experiment@_global_=seed_cubic", "~seed"])
    assert got["point.x"] == "3.0"  # the override as given comes first
    assert got["experiment"] == "seed_cubic" and got["seed"] == ""
    assert got["point.xs"] == "[1, 2]" and got["tape.persistent"] == "True"
    assert not any(k.startswith("log.") for k in got)  # only the sections that say what ran
    assert mlflow_content.params({"function": {"doc": "d" * 7000}})["function.doc"].endswith("...")


def test_metrics_spell_non_finite_numbers_as_numbers():
    record = {
        "values": {"y": "NaN", "z": "-Infinity", "v": [1.0, 2.0], "s": "text"},
        "derivatives": [
            {
                "name": "dz/dx",
                "value": "Infinity",
                "check": {"max_abs_error": 0.5, "max_rel_error": None, "outcome": "failed"},
            },
            {"name": "df/d(x,y)", "value": {"x": 1.0, "y": [2.0, 3.0]}},
        ],
        "timing": {"started": 1.7e9, "total_s": 0.25},
    }
    got = mlflow_content.metrics(record)
    assert math.isnan(got["values.y"]) and got["values.z"] == -math.inf and "values.s" not in got
    assert "values.v" not in got  # a vector value is not one metric
    assert got["derivatives.dz/dx"] == math.inf
    assert got["checks.dz/dx.max_abs_error"] == 0.5 and got["checks.dz/dx.passed"] == 0.0
    assert "checks.dz/dx.max_rel_error" not in got
    assert got["derivatives.df/d_x_y.x"] == 1.0 and got["derivatives.df/d_x_y.y.1"] == 3.0
    assert got["timing.total_s"] == 0.25 and "timing.started" not in got


def test_artifacts_are_regular_files_only(tmp_path):
    out = tmp_path / "job"
    (out / ".hydra").mkdir(parents=True)
    (out / "results.json").write_text("{}")
    (out / "plot.png").write_bytes(b"png")
    (out / ".hydra" / "config.yaml").write_text("a: 1")
    os.mkfifo(out / "arrays.npz")  # planted: a FIFO is never opened
    (out / "evil.png").symlink_to("/etc/passwd")
    (out / ".hydra" / "link.yaml").symlink_to(out / "results.json")
    got = [(p.name, folder) for p, folder in mlflow_content.artifacts(out)]
    assert got == [("results.json", ""), ("plot.png", ""), ("config.yaml", ".hydra")]


# ---- runs, in this process ------------------------------------------------------------------


def test_a_single_run_is_one_run_with_params_metrics_tags_and_its_log(tmp_path, store, capsys):
    uri = store
    out = tmp_path / "run"
    assert job.run(tracked(CUBIC, uri), out) == 0
    [run] = runs(uri)
    log = log_of(out)
    assert log["tracking"]["mlflow"]["run_id"] == run.info.run_id
    assert log["tracking"]["mlflow"]["uri"] == uri and "warning" not in log["tracking"]["mlflow"]
    assert mlflow_store.PARENT_TAG not in run.data.tags and run.data.tags["runner.kind"] == "run"
    assert run.info.status == "FINISHED"
    assert run.data.params["point.x"] == "2.0"
    assert run.data.params["function.steps.y"] == CUBIC["function"]["steps"]["y"]
    m = run.data.metrics
    assert m["values.y"] == 8.0 and m["derivatives.dy/dx"] == 12.0  # 2**3, 3 * 2**2
    assert m["checks.dy/dx.passed"] == 1.0 and m["checks.dy/dx.max_abs_error"] >= 0.0
    assert m["timing.total_s"] > 0 and m["timing.forward_s"] >= 0
    tags = run.data.tags
    assert tags["runner.status"] == "ok" and tags["runner.expect_met"] == "true"
    assert tags["runner.version"] and len(tags["mlflow.source.git.commit"]) == 40
    assert tags["runner.output_dir"] == str(out.resolve())
    assert artifact_paths(uri, run.info.run_id) == ["results.json"]  # a scalar point: no plot, no arrays
    # the console table's last line names the run; MLflow's own INFO lines stay off the console
    said = capsys.readouterr()
    assert "INFO" not in said.err and not said.err.strip(), said.err
    last = said.out.rstrip().splitlines()[-1]
    assert last == f"mlflow run: {run.info.run_id} (experiment {run.info.experiment_id}) at {uri}"


def test_true_is_mlflows_default_store_in_the_working_folder(tmp_path):
    out = tmp_path / "run"
    assert job.run(tracked(CUBIC, True), out, echo=False) == 0
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    [run] = runs(uri)
    assert log_of(out)["tracking"]["mlflow"]["run_id"] == run.info.run_id
    assert log_of(out)["tracking"]["mlflow"]["uri"] == uri  # made absolute: where it is
    assert "results.json" in artifact_paths(uri, run.info.run_id)
    assert (tmp_path / "mlruns").is_dir()  # its artifacts, beside it


@pytest.mark.slow  # MLflow's 2 retries, ~3 s
@pytest.mark.parametrize("failing", [False, True], ids=["as-declared", "not-as-declared"])
def test_an_unreachable_store_changes_nothing_but_a_warning(tmp_path, capsys, failing):
    cfg = json.loads(json.dumps(CUBIC))
    if failing:
        cfg["expect"] = {"derivatives": {"dy/dx": 13.0}}
    plain = job.run(tracked(cfg, None), tmp_path / "plain", echo=False)
    t0 = time.monotonic()
    uri = f"http://127.0.0.1:{closed_port()}"
    code = job.run(tracked(cfg, uri), tmp_path / "tracked")
    seconds = time.monotonic() - t0
    assert code == plain == (1 if failing else 0)
    assert seconds < 15, f"an unreachable store cost {seconds:.1f} s"
    log, before = log_of(tmp_path / "tracked"), log_of(tmp_path / "plain")
    entry = log["tracking"]["mlflow"]
    assert entry["uri"] == uri and "run_id" not in entry and entry["warning"].startswith("not logged to MLflow")
    assert log["warnings"][-1] == entry["warning"]
    assert log["values"] == before["values"]
    assert [d["value"] for d in log["derivatives"]] == [d["value"] for d in before["derivatives"]]
    assert log["expect"] == before["expect"] and log["status"] == before["status"]
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and "127.0.0.1" in err, err


def test_a_refused_config_is_tracked_as_an_error(tmp_path, store):
    uri = store
    cfg = tracked(CUBIC, uri)
    cfg["point"]["x"] = "nope"
    assert job.run(cfg, tmp_path / "run", echo=False) == job.EXIT_CONFIG_ERROR
    [run] = runs(uri)
    assert run.data.tags["runner.status"] == "error" and run.data.tags["runner.expect_met"] == "false"
    assert run.info.status == "FAILED"
    assert log_of(tmp_path / "run")["tracking"]["mlflow"]["run_id"] == run.info.run_id


def test_non_finite_values_and_derivatives_are_metrics(tmp_path, store):
    uri = store
    cfg = function_config(
        {"y": "log(x)", "z": "sqrt(x)", "w": "log(x - 1.0)"}, {"x": 0.0}, [{"target": "z", "sources": "x"}]
    )
    out = tmp_path / "run"
    job.run(tracked(cfg, uri), out, echo=False)
    log = log_of(out)
    assert log["values"]["y"] == "-Infinity" and log["values"]["w"] == "NaN"
    assert log["derivatives"][0]["value"] == "Infinity"
    assert "warning" not in log["tracking"]["mlflow"], log["tracking"]
    [run] = runs(uri)
    m = run.data.metrics
    assert math.isnan(m["values.w"])
    assert m["values.y"] < -1e308 and m["derivatives.dz/dx"] > 1e308  # MLflow's +-Infinity


def test_more_params_than_one_request_takes_are_all_logged(tmp_path, store):
    uri = store
    steps = {f"s{i}": f"x + {i}.0" for i in range(210)}
    cfg = function_config({**steps, "y": "x * x"}, {"x": 3.0}, [{"target": "y", "sources": "x"}])
    out = tmp_path / "run"
    assert job.run(tracked(cfg, uri), out, echo=False) == 0
    [run] = runs(uri)
    p = run.data.params
    assert "warning" not in log_of(out)["tracking"]["mlflow"]
    assert all(p[f"function.steps.s{i}"] == f"x + {i}.0" for i in range(210)) and len(p) > 210
    assert len(run.data.metrics) > 210  # and every step's value is a metric
    assert run.data.metrics["derivatives.dy/dx"] == 6.0


def _plant(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        target = path.parent / "elsewhere.json"
        target.write_text(
            json.dumps({"uri": "sqlite:////nowhere/x.db", "parent_run_id": "0" * 32, "experiment_id": "9"})
        )
        path.symlink_to(target)
    elif kind == "garbage":
        path.write_bytes(b'{"parent_run_id": \x00\xff not json')
    elif kind == "sparse":
        with open(path, "wb") as f:
            f.truncate(1 << 30)  # 1 GB, no block of it on disk


@pytest.mark.parametrize("kind", ["fifo", "symlink", "garbage", "sparse"])
def test_a_planted_mlflow_json_is_not_followed_nor_read_whole(tmp_path, store, kind):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    _plant(kind, sweep_dir / mlflow_sweep.STATE_FILE)
    t0 = time.monotonic()
    assert mlflow_sweep.read_state(sweep_dir) == {}
    uri = store
    out = sweep_dir / "0"
    context = JobContext(("point.x=2.0",), sweep_dir, 0)
    assert job.run(tracked(CUBIC, uri), out, echo=False, in_sweep=True, context=context) == 0
    assert time.monotonic() - t0 < 30
    entry = log_of(out)["tracking"]["mlflow"]
    [run] = runs(uri)  # no parent to be had: a run of its own, in the store the job names
    assert entry["run_id"] == run.info.run_id and "parent_run_id" not in entry
    assert run.data.tags["runner.kind"] == "job" and mlflow_store.PARENT_TAG not in run.data.tags
