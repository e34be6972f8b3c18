"""Sweeps: summary rows, failures, progress, resume, collision-safe folders, artifacts.

The sweeps themselves run the real command line in subprocesses (marked slow, one sweep
per module-scoped fixture, checked by several tests); the pieces are tested in-process.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from runner.record import plots, runlog
from runner.sweep import folders, progress, resume
from runner.sweep import summary as sweep
from tests.helpers import cli, command_env, summary, sweep_dirs

# ---------------------------------------------------------------- a sweep of three points


@pytest.fixture(scope="module")
def cubic_sweep(tmp_path_factory):
    """`python -m runner -m experiment=seed_cubic point.x=1.0,2.0,3.0`, run once."""
    cwd = tmp_path_factory.mktemp("cubic_sweep")
    proc = cli(["-m", "experiment=seed_cubic", "point.x=1.0,2.0,3.0"], cwd=cwd)
    [sweep_dir] = sweep_dirs(cwd)
    return cwd, sweep_dir, proc


@pytest.mark.slow
def test_three_points_give_three_results_and_a_three_row_summary(cubic_sweep):
    _, sweep_dir, proc = cubic_sweep
    assert proc.returncode == 0, proc.stderr
    for job in ("0", "1", "2"):
        assert (sweep_dir / job / runlog.RESULTS_FILE).is_file()
    s = summary(sweep_dir)
    assert (s["jobs"], s["failed"]) == (3, 0)
    assert [(r["job"], r["overrides"], r["derivatives"], r["status"], r["met"]) for r in s["rows"]] == [
        ("0", ["experiment=seed_cubic", "point.x=1.0"], {"dy/dx": 3.0}, "ok", True),
        ("1", ["experiment=seed_cubic", "point.x=2.0"], {"dy/dx": 12.0}, "ok", True),
        ("2", ["experiment=seed_cubic", "point.x=3.0"], {"dy/dx": 27.0}, "ok", True),
    ]
    assert all(r["duration_s"] > 0 for r in s["rows"])
    with open(sweep_dir / sweep.SUMMARY_CSV) as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["dy/dx"], r["status"]) for r in rows] == [
        ("0", "3.0", "ok"),
        ("1", "12.0", "ok"),
        ("2", "27.0", "ok"),
    ]


@pytest.mark.slow
def test_sweep_prints_progress_and_the_table(cubic_sweep):
    _, sweep_dir, proc = cubic_sweep
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\[\d+/", line)]
    assert [
        re.match(r"\[(\d)/3\] #(\d) point\.x=(\S+): ok  dy/dx=\S+ \| failed 0", line).groups() for line in lines
    ] == [
        ("1", "0", "1.0"),
        ("2", "1", "2.0"),
        ("3", "2", "3.0"),
    ]
    assert "left" in lines[0] and "left" not in lines[-1]
    assert re.search(r"#1\s+experiment=seed_cubic point\.x=2\.0\s+ok\s+as declared\s+12\.0", proc.stdout)
    assert "sweep: 3 jobs, 0 failed" in proc.stdout
    assert f"sweep folder: {sweep_dir.relative_to(cubic_sweep[0])}" in proc.stdout


@pytest.mark.slow
def test_sweep_leaves_event_files_and_a_plot(cubic_sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, sweep_dir, _ = cubic_sweep
    png = sweep_dir / plots.SWEEP_PLOT
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = EventAccumulator(str(sweep_dir / "1"))
    acc.Reload()
    assert acc.Scalars("derivatives/dy/dx")[0].value == 12.0
    assert acc.Scalars("values/x")[0].value == 2.0
    # the job's overrides as HParams, so TensorBoard's HParams tab compares the jobs
    assert "_hparams_/session_start_info" in acc.Tags()["tensors"]
    info = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data
    assert info.plugin_name == "hparams" and b"point.x" in info.content


@pytest.mark.slow
def test_relaunch_with_resume_skips_every_complete_job(cubic_sweep):
    cwd, sweep_dir, _ = cubic_sweep
    before = {j: (sweep_dir / j / runlog.RESULTS_FILE).read_text() for j in "012"}
    proc = cli(["-m", "experiment=seed_cubic", "point.x=1.0,2.0,3.0", f"resume={sweep_dir}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert sweep_dirs(cwd) == [sweep_dir]  # no new sweep folder
    assert proc.stdout.count(": ok (kept, resume)  dy/dx=") == 3  # the job lines say so
    assert "3 kept from an earlier launch (resume)" in proc.stdout
    assert {j: (sweep_dir / j / runlog.RESULTS_FILE).read_text() for j in "012"} == before
    assert [r["resumed"] for r in summary(sweep_dir)["rows"]] == [True, True, True]


@pytest.mark.slow
def test_report_lists_the_sweep_and_shows_it(cubic_sweep):
    cwd, sweep_dir, _ = cubic_sweep
    out = subprocess.run(
        [sys.executable, "-m", "runner.report", "outputs"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=command_env(),
    )
    assert out.returncode == 0, out.stderr
    # the sweep's overrides in Hydra's sweep syntax: what varies, and over which values
    assert re.search(
        r"sweep\s+seed_cubic\s+experiment=seed_cubic point\.x=1\.0,2\.0,3\.0\s+3 jobs, 0 failed", out.stdout
    )
    assert "0 runs, 1 sweeps under outputs" in out.stdout


# ---------------------------------------------------------------- failures and resume


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """Job 1 declares a RuntimeError that a persistent tape does not raise: it fails."""
    cwd = tmp_path_factory.mktemp("failing_sweep")
    proc = cli(["-m", "experiment=seed_non_persistent", "tape.persistent=false,true,false"], cwd=cwd)
    [sweep_dir] = sweep_dirs(cwd)
    return cwd, sweep_dir, proc


@pytest.mark.slow
def test_a_failed_job_is_listed_and_the_sweep_exits_non_zero(failing_sweep):
    _, sweep_dir, proc = failing_sweep
    assert proc.returncode == 1
    s = summary(sweep_dir)
    assert (s["jobs"], s["failed"]) == (3, 1)
    assert [(r["job"], r["status"], r["met"]) for r in s["rows"]] == [
        ("0", "error", True),
        ("1", "ok", False),
        ("2", "error", True),
    ]
    assert [r["derivatives"] for r in s["rows"]] == [{"dy/dx": 6.0}, {"dy/dx": 6.0, "dz/dx": 108.0}, {"dy/dx": 6.0}]
    assert "[2/3] #1 tape.persistent=True: FAILED (exit 1): expected RuntimeError, got no error" in proc.stdout
    assert "sweep: 3 jobs, 1 failed" in proc.stdout


@pytest.mark.slow
def test_resume_reruns_only_the_incomplete_job(failing_sweep):
    cwd, sweep_dir, _ = failing_sweep
    (sweep_dir / "1" / runlog.RESULTS_FILE).unlink()  # as if the sweep was killed during job 1
    kept = (sweep_dir / "2" / runlog.RESULTS_FILE).read_text()
    proc = cli(
        ["-m", "experiment=seed_non_persistent", "tape.persistent=false,true,false", f"resume={sweep_dir}"], cwd=cwd
    )
    assert proc.returncode == 1  # job 1 fails again, as it should
    assert [r["resumed"] for r in summary(sweep_dir)["rows"]] == [True, False, True]
    assert (sweep_dir / "2" / runlog.RESULTS_FILE).read_text() == kept
    assert json.loads((sweep_dir / "1" / runlog.RESULTS_FILE).read_text())["derivatives"][1]["value"] == 108.0


def test_resume_trusts_a_result_only_for_the_same_config(run_job):
    ran = run_job(["experiment=seed_cubic"])
    cfg = OmegaConf.to_container(OmegaConf.create({"x": 1}))
    assert resume.kept(ran.folder, ran.log["config_sha256"])[0] is not None
    assert resume.kept(ran.folder, resume.config_digest(cfg))[0] is None
    assert resume.kept(ran.folder / "nowhere", ran.log["config_sha256"]) == (None, None)


@pytest.mark.parametrize(
    "argv, refused",
    [
        (["resume=true"], True),
        (["-m", "++resume=no/such/folder"], True),
        (["resume='{sweep}'"], False),
        (["resume={sweep}"], False),
        (["resume=null"], False),
        (["point.x=1.0"], False),
    ],
)
def test_resume_must_name_an_existing_sweep_folder(tmp_path, argv, refused):
    from runner.errors import ConfigError

    argv = [a.replace("{sweep}", str(tmp_path)) for a in argv]
    if refused:
        with pytest.raises(ConfigError, match="no sweep folder"):
            resume.check_argv(argv)
    else:
        resume.check_argv(argv)


def test_resume_key_is_not_part_of_the_digest():
    assert resume.config_digest({"a": 1, "resume": None}) == resume.config_digest({"a": 1, "resume": "outputs/x"})
    assert resume.config_digest({"a": 1}) != resume.config_digest({"a": 2})


# ---------------------------------------------------------------- the summary's columns


def test_summary_shows_check_outcomes_and_missing_jobs(run_job, tmp_path):
    """A derivative record with a `check` (added when checks run) gets a check column; a job
    folder without results.json (killed) is a failed `missing` row."""
    ran = run_job(["experiment=seed_persistent"])
    sweep_dir = tmp_path / "sweep"
    for num, passed in (("0", True), ("1", False)):
        job = sweep_dir / num
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- point.x={num}\n")
        rec = dict(ran.log)
        rec["derivatives"] = [
            {**d, "check": {**d["check"], "outcome": "passed" if passed or d["name"] != "dz/dx" else "failed"}}
            for d in rec["derivatives"]
        ]
        (job / runlog.RESULTS_FILE).write_text(json.dumps(rec))
    (sweep_dir / "2" / ".hydra").mkdir(parents=True)
    rows = sweep.collect(sweep_dir)
    sweep.write(sweep_dir, rows)
    with open(sweep_dir / sweep.SUMMARY_CSV) as f:
        table = list(csv.DictReader(f))
    assert [(r["job"], r["status"], r["check:dy/dx"], r["check:dz/dx"]) for r in table] == [
        ("0", "ok", "passed", "passed"),
        ("1", "ok", "passed", "failed"),
        ("2", "missing", "", ""),
    ]
    text = sweep.table(rows)
    assert re.search(r"#1\s+point\.x=1\s+ok\s+as declared\s+6\.0\s+108\.0\s+passed\s+FAILED", text)
    assert "sweep: 3 jobs, 1 failed" in text  # the missing job; checks are reported, not judged here


# ---------------------------------------------------------------- progress counting


def test_progress_counts_jobs_across_processes(tmp_path):
    progress.start(tmp_path, total=4)
    counts = [progress.record(tmp_path, failed=f) for f in (False, True, False)]
    assert [(c["done"], c["failed"], c["total"]) for c in counts] == [(1, 0, 4), (2, 1, 4), (3, 1, 4)]
    text = progress.line({**counts[-1], "elapsed_s": 3.0}, "2", "point.x=3.0", "ok")
    assert text == "[3/4] #2 point.x=3.0: ok | failed 1 | 3.0 s elapsed, ~1.0 s left"
    assert progress.counts(tmp_path) == {"done": 3, "failed": 1, "total": 4}


# ---------------------------------------------------------------- run folders


def test_pid_resolver_names_the_process():
    folders.register()
    assert OmegaConf.create({"d": "run-${pid:}"}).d == f"run-{os.getpid()}"
    assert OmegaConf.create({"r": None, "d": "${first:${r},fresh}"}).d == "fresh"
    assert OmegaConf.create({"r": "old", "d": "${first:${r},fresh}"}).d == "old"


@pytest.mark.slow
def test_three_runs_started_at_once_leave_three_folders(tmp_path):
    # a refused config exits before TensorFlow loads, so the three start within milliseconds
    env = command_env()
    args = [sys.executable, "-m", "runner", "experiment=seed_chain_rule", "function.steps.z=y * q"]
    procs = [
        subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)
    ]
    assert [p.wait(timeout=120) for p in procs] == [2, 2, 2]
    runs = list((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 3
    assert all((r / runlog.RESULTS_FILE).is_file() for r in runs)


# ---------------------------------------------------------------- environment and seeds


def test_environment_records_versions_command_seed_and_determinism(run_job):
    env = run_job(["experiment=seed_cubic", "seed=7"]).log["environment"]
    for key in ("python", "tensorflow", "numpy", "hydra", "omegaconf", "platform", "cpu", "command"):
        assert env[key], key
    assert env["reproducibility"]["seed"] == 7
    assert env["reproducibility"]["op_determinism"] is True
    assert re.fullmatch(r"[0-9a-f]{40}", env["runner_git"]["commit"])


def test_git_state_is_none_outside_a_repository(tmp_path):
    assert runlog.git_state(tmp_path) is None


def test_seed_fixes_tensorflow_random_state(run_job):
    """Two jobs in one process with the same seed start from the same random state."""
    import tensorflow as tf

    run_job(["experiment=seed_cubic", "seed=3"])
    first = tf.random.uniform([3]).numpy()
    run_job(["experiment=seed_cubic", "seed=3"])
    assert np.array_equal(tf.random.uniform([3]).numpy(), first)


def test_seeding_is_skipped_only_when_nothing_random_happened_since(monkeypatch):
    """`tf.random.set_seed` clears TF's kernel cache (1.6 ms a job), so apply skips it when
    the seed and the seed generator's state are unchanged, and only then."""
    import tensorflow as tf

    from runner.tape import reproducibility

    monkeypatch.setattr(reproducibility, "_tf_seeded", None)  # as in a fresh process
    calls = []
    real = tf.random.set_seed
    monkeypatch.setattr(tf.random, "set_seed", lambda seed: (calls.append(seed), real(seed)))  # counts, still seeds

    reproducibility.apply(tf, 5, True)
    first = tf.random.uniform([2]).numpy()  # draws from the generator: the next apply seeds
    reproducibility.apply(tf, 5, True)
    assert calls == [5, 5]
    reproducibility.apply(tf, 5, True)  # nothing drew since: skipped
    assert calls == [5, 5]
    assert np.array_equal(tf.random.uniform([2]).numpy(), first)  # the state set_seed would give
    reproducibility.apply(tf, 6, True)  # another seed always seeds
    assert calls == [5, 5, 6]
    assert not np.array_equal(tf.random.uniform([2]).numpy(), first)


# ---------------------------------------------------------------- TensorBoard and plots

GRID = ["experiment=seed_chain_rule", "point.x={linspace: [-2, 2, 41]}", "derivatives=[{target: z, sources: x}]"]


def test_grid_run_writes_histograms_and_a_plot(run_job):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ran = run_job(GRID)
    assert ran.log["artifacts"]["plot"] == plots.RUN_PLOT
    assert (ran.folder / plots.RUN_PLOT).read_bytes()[:4] == b"\x89PNG"
    acc = EventAccumulator(str(ran.folder))
    acc.Reload()
    # TensorBoard's v2 histograms: tensors of (left edge, right edge, count) buckets
    assert set(acc.Tags()["tensors"]) == {"values/x", "values/y", "values/z", "derivatives/dz/dx"}
    buckets = tf.make_ndarray(acc.Tensors("derivatives/dz/dx")[0].tensor_proto)
    assert (buckets[0, 0], buckets[-1, 1], buckets[:, 2].sum()) == (pytest.approx(-32.0), pytest.approx(32.0), 41)


@pytest.mark.parametrize(
    "overrides, events, plot",
    [
        (["experiment=seed_cubic"], True, False),  # a point, not a grid: nothing to plot
        (GRID + ["log.tensorboard=false"], False, True),
        (GRID + ["log.plots=false"], True, False),
    ],
    ids=["scalar-run", "tensorboard-off", "plots-off"],
)
def test_artifacts_are_switchable(run_job, overrides, events, plot):
    ran = run_job(overrides)
    assert bool(list(ran.folder.glob("events.out.tfevents.*"))) is events
    assert (ran.folder / plots.RUN_PLOT).exists() is plot


@pytest.mark.parametrize(
    "mode, setting, plots_each_run",
    [("RUN", None, True), ("MULTIRUN", None, False), ("MULTIRUN", True, True), ("RUN", False, False)],
    ids=["single-run-default", "sweep-job-default", "sweep-job-forced", "single-run-off"],
)
def test_grid_plot_per_job_defaults_to_single_runs_only(mode, setting, plots_each_run):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from runner.cli import config_dir
    from runner.record import artifacts

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode[mode]
    HydraConfig.instance().set_config(cfg)
    try:
        assert artifacts._plot_runs(setting) is plots_each_run
    finally:
        HydraConfig.instance().cfg = None
