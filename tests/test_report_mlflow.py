"""`python -m runner.report --mlflow URI [RUN_ID]` shows what `python -m runner.report FOLDER`
shows, read back from a real MLflow store (sqlite) that real runs logged to.

The store is made once for the module by the command line as a user types it: one sweep of
4 jobs (seed=0,1 x point.x=1.0,2.0) and one single run, both with `log.mlflow=sqlite:///...`.
Each report is then made twice, from the folders and from the store, and compared: the same
lines but where a folder is named (the store names the run instead).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from runner import report
from runner.record import mlflow_store
from tests.helpers import start_cli
from tests.helpers.cli import ROOT, command_env

pytestmark = pytest.mark.slow

RUN = ["experiment=seed_persistent", "point.x=3.0"]
SWEEP = ["-m", "experiment=seed_persistent", "seed=0,1", "point.x=1.0,2.0"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Dict[str, object]:
    """The outputs folder, the store's URI, the sweep's folder and parent run, the run's folder and run id."""
    root = tmp_path_factory.mktemp("mlreport")
    uri = f"sqlite:///{root}/mlflow.db"
    # the database's tables made once, before the two commands below use it at the same time
    with pytest.MonkeyPatch.context() as mp:  # MLflow's settings as the store sets them, then unset
        for name, value in mlflow_store.ENV_DEFAULTS.items():
            mp.setenv(name, value)
        mp.chdir(root)  # the experiment's artifacts go to ./mlruns, as the commands' own would
        mlflow_store.Store(uri).experiment_id("seed_persistent")
    procs = [start_cli([*args, f"log.mlflow={uri}"], root) for args in (SWEEP, RUN)]
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, out + err
            assert "warning" not in err, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    (sweep_dir,) = (root / "outputs" / "multirun").glob("*/*")
    (run_dir,) = (p.parent for p in (root / "outputs").glob("2*/*/results.json"))
    run_log = json.loads((run_dir / "results.json").read_text())
    return {
        "outputs": root / "outputs",
        "uri": uri,
        "sweep_dir": sweep_dir,
        "parent": json.loads((sweep_dir / "mlflow.json").read_text())["parent_run_id"],
        "run_dir": run_dir,
        "run_id": run_log["tracking"]["mlflow"]["run_id"],
        "experiment_id": run_log["tracking"]["mlflow"]["experiment_id"],
        "job0_id": json.loads((sweep_dir / "0" / "results.json").read_text())["tracking"]["mlflow"]["run_id"],
    }


@pytest.fixture(autouse=True)
def quick_http(monkeypatch):
    """MLflow's HTTP settings as `mlflow_store` sets them, restored after each test (no
    retry backoff: the unreachable store is refused at once)."""
    for name, value in mlflow_store.ENV_DEFAULTS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")


def shown(capsys, *argv: str) -> Tuple[int, List[str], str]:
    code = report.main(list(argv))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def test_the_listing_of_the_store_is_the_listing_of_the_folders(store, capsys):
    code, local, err = shown(capsys, str(store["outputs"]))
    assert (code, err) == (0, "")
    code, tracked, err = shown(capsys, "--mlflow", store["uri"])
    assert (code, err) == (0, "")
    # the same rows, in the same order; the folder column names the run (the last column)
    assert len(tracked) == len(local) == 4
    assert tracked[0] == local[0]
    ids = {"sweep": store["parent"], "run": store["run_id"]}  # the two ran at once: in either order
    for mine, theirs in zip(tracked[1:3], local[1:3]):
        assert mine.rsplit(None, 1) == [theirs.rsplit(None, 1)[0], ids[theirs.split()[2]]]
    assert local[3] == f"1 runs, 1 sweeps under {store['outputs']}"
    assert tracked[3] == f"1 runs, 1 sweeps under {store['uri']}"
    # an experiment named: the same; JSON and Markdown: the same but the folders
    assert shown(capsys, "--mlflow", store["uri"], "--experiment", "seed_persistent")[1] == tracked
    local_doc = json.loads("\n".join(shown(capsys, str(store["outputs"]), "--json")[1]))
    tracked_doc = json.loads("\n".join(shown(capsys, "--mlflow", store["uri"], "--json")[1]))
    assert [e.pop("folder") for e in tracked_doc["entries"]] == [ids[e["kind"]] for e in local_doc["entries"]]
    for e in local_doc["entries"]:
        e.pop("folder")
    assert {**tracked_doc, "root": "-"} == {**local_doc, "root": "-"}
    md_local, md_tracked = (
        shown(capsys, str(store["outputs"]), "--md")[1],
        shown(capsys, "--mlflow", store["uri"], "--md")[1],
    )
    assert [r.rsplit("|", 2)[0] for r in md_tracked] == [r.rsplit("|", 2)[0] for r in md_local]


def test_a_sweeps_parent_shows_the_sweeps_summary_and_groups(store, capsys):
    code, local, err = shown(capsys, str(store["sweep_dir"]))
    assert (code, err) == (0, "")
    code, tracked, err = shown(capsys, "--mlflow", store["uri"], store["parent"])
    assert (code, err) == (0, "")
    line = f"mlflow run: {store['parent']} (experiment {store['experiment_id']}) at {store['uri']}"
    # the progress line is the sweep folder's bookkeeping, which the store does not hold
    assert [x for x in local if not x.startswith("progress: ")][:-1] == tracked[:-1]
    assert tracked[-1] == line and local[-1] == f"sweep folder: {store['sweep_dir']}"
    assert "sweep: 4 jobs, 0 failed" in tracked
    assert any(x.startswith("over seed: 2 groups of 4 jobs") for x in tracked)
    # --over and --md: the same tables
    args = ("--over", "seed,point.x", "--md")
    assert (
        shown(capsys, "--mlflow", store["uri"], store["parent"], *args)[1]
        == shown(capsys, str(store["sweep_dir"]), *args)[1]
    )
    local_doc = json.loads("\n".join(shown(capsys, str(store["sweep_dir"]), "--json")[1]))
    tracked_doc = json.loads("\n".join(shown(capsys, "--mlflow", store["uri"], store["parent"], "--json")[1]))
    assert tracked_doc["rows"][0]["folder"] == store["job0_id"]
    for doc in (local_doc, tracked_doc):
        for key in ("folder", "progress"):
            doc.pop(key)
        for row in doc["rows"]:
            row.pop("folder")
    assert tracked_doc == local_doc


def test_one_run_in_full(store, capsys):
    code, local, err = shown(capsys, str(store["run_dir"]))
    assert (code, err) == (0, "")
    code, tracked, err = shown(capsys, "--mlflow", store["uri"], store["run_id"])
    assert (code, err) == (0, "")
    folder_lines = ("run folder: ", "files: ", "rerun: ")
    assert [x for x in tracked if not x.startswith(folder_lines)] == [
        x for x in local if not x.startswith(folder_lines)
    ]
    assert f"mlflow run: {store['run_id']} (experiment {store['experiment_id']}) at {store['uri']}" in tracked
    # the files are the run's artifacts (the event file stays in the folder)
    assert "files:      results.json" in tracked
    assert any(x.startswith("files:      events.out.tfevents.") for x in local)
    rerun = f"rerun:      mlflow artifacts download -r {store['run_id']} -d DIR, then python -m runner.rerun DIR"
    assert rerun in tracked
    # Markdown names no folder: identical; a sweep's job by its own run id: that job in full
    assert (
        shown(capsys, "--mlflow", store["uri"], store["run_id"], "--md")[1]
        == shown(capsys, str(store["run_dir"]), "--md")[1]
    )
    code, job, _ = shown(capsys, "--mlflow", store["uri"], store["job0_id"])
    assert (
        code == 0
        and "overrides:  experiment=seed_persistent seed=0 point.x=1.0 log.mlflow="
        + store["uri"].replace(":", "\\:", 1)
        in job
    )


@pytest.mark.parametrize(
    "args, said",
    [
        (["0123456789abcdef0123456789abcdef"], "no MLflow run 0123456789abcdef0123456789abcdef at "),
        (["--experiment", "nothing"], "no MLflow experiment 'nothing' at "),
    ],
)
def test_an_unknown_run_or_experiment_is_one_line(store, capsys, args, said):
    code, out, err = shown(capsys, "--mlflow", store["uri"], *args)
    assert (code, out) == (2, [])
    assert err.startswith(said) and err.count("\n") == 1


def test_a_missing_sqlite_file_is_one_line_and_not_made(tmp_path, capsys):
    db = tmp_path / "none.db"
    code, out, err = shown(capsys, "--mlflow", f"sqlite:///{db}")
    assert (code, out) == (2, [])
    assert err == f"no MLflow store at sqlite:///{db}: {db} is not a file\n"
    assert not db.exists()


def test_an_unreachable_store_is_one_line_exit_2_and_imports_mlflow_only_then(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    probe = (
        "import sys\nfrom runner import report\ncode = report.main(sys.argv[1:])\n"
        "print(code, 'mlflow' in sys.modules, file=sys.stderr)\n"
    )
    env = command_env({"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0"})
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", probe, "--mlflow", f"http://127.0.0.1:{port}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - began
    said, last = done.stderr.splitlines()
    assert last == "2 True" and done.stdout == ""
    assert said.startswith(f"MLflow experiments at http://127.0.0.1:{port}: ") and "NewConnectionError" in said
    assert seconds < 30, seconds
    plain = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert plain.stderr.splitlines() == ["0 False"], plain.stderr
    assert not list(Path(tmp_path).glob("*.db")) and not (tmp_path / "mlruns").exists()
