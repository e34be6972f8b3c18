"""A sweep always ends with its summary, and only one sweep at a time writes a folder.

- A job that raises (a real fault: its `results.json` path is a directory, so the log's
  final rename fails) still leaves `summary.json` and `summary.csv` listing every job, the
  failing one `raised`, and the command exits 1, under every launcher; a stale summary
  from an earlier launch never survives.
- A `results.json` that is not a whole run log gives a `corrupt` row, never a crash.
- A second sweep into a folder a sweep holds is refused (exit 2, one line) and writes
  nothing there; the first's results are intact; the folder can be resumed once the
  first has ended, even when it was killed.
- A sweep folder from someone else (`resume=PATH`, `hydra.sweep.dir=PATH`) that holds a
  link where the sweep writes (the runner's files, or Hydra's `multirun.yaml` and job
  files) is refused (exit 2, one line naming the link) before anything is written; the
  runner's own writers never write through a link either (they open with O_NOFOLLOW or
  rename a new file into place); a decoy file the link points to is never changed.

The lock held by this test process itself is a real `flock` on the same file, taken
without the runner's code.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.sweep import lock
from runner.sweep import summary as sweep_summary
from tests.helpers import cli, command_env, start_cli, summary

LAUNCHERS = {
    "runner": [],
    "basic": ["hydra/launcher=basic", "hydra/sweeper=basic"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "submitit_local": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=3"],
}
STALE = '{"jobs": 99, "rows": []}\n'  # a summary left by an earlier launch


def _cubic(x: float):
    return {"dy/dx": 3 * x * x}  # the default experiment, seed_cubic: y = x**3


# ---- a job raises -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher, env",
    [("runner", {}), ("basic", {}), ("joblib", {}), ("runner", {"HYDRA_FULL_ERROR": "1"})],
    ids=["runner", "basic", "joblib", "runner-HYDRA_FULL_ERROR"],
)
def test_a_job_that_raises_still_ends_the_sweep_with_its_summary(tmp_path, launcher, env):
    folder = tmp_path / "sweep"
    (folder / "1" / "results.json").mkdir(parents=True)  # job 1's log cannot be renamed into place
    (folder / "summary.json").write_text(STALE)
    (folder / "summary.csv").write_text("stale\n")

    proc = cli(["-m", *LAUNCHERS[launcher], "point.x=1.0,2.0,3.0", "resume=sweep"], cwd=tmp_path, env=env, timeout=300)

    assert proc.returncode == 1, proc.stderr[-2000:]
    result = summary(folder)
    assert (result["jobs"], result["failed"]) == (3, 1)
    assert [(r["job"], r["overrides"], r["status"], r["met"]) for r in result["rows"]] == [
        ("0", ["point.x=1.0"], "ok", True),
        ("1", ["point.x=2.0"], "raised", False),
        ("2", ["point.x=3.0"], "ok", True),
    ]
    rows = result["rows"]
    assert rows[0]["derivatives"] == _cubic(1.0) and rows[2]["derivatives"] == _cubic(3.0)
    assert rows[1]["error"].startswith("IsADirectoryError: ") and "\n" not in rows[1]["error"]
    csv_lines = (folder / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and csv_lines[2].startswith("1,point.x=2.0,2.0,raised,False,")
    assert "sweep: 3 jobs, 1 failed" in proc.stdout
    if env:  # the user asked for the traceback: the summary is written all the same
        assert "Traceback" in proc.stderr and "IsADirectoryError" in proc.stderr
    else:
        assert "Traceback" not in proc.stderr
        (line,) = [x for x in proc.stderr.splitlines() if x.startswith("sweep ended by an error: ")]
        assert "IsADirectoryError" in line and "1 of 3 job(s) failed" in line and "summary in sweep" in line


# ---- a resume over tampered logs ----------------------------------------------------------


@pytest.mark.slow
def test_a_resume_over_tampered_logs_rewrites_the_summary(tmp_path):
    first = cli(["-m", "point.x=1.0,2.0,3.0", "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    folder = tmp_path / "sweep"
    logs = [folder / str(i) / "results.json" for i in range(3)]
    whole = logs[0].read_text()
    logs[0].write_text(whole[: len(whole) // 2])  # cut short
    logs[1].write_text("[1, 2, 3]\n")  # JSON, not an object
    record = json.loads(logs[2].read_text())
    del record["status"], record["derivatives"]  # keys missing; its config digest still matches
    logs[2].write_text(json.dumps(record))
    (folder / "summary.json").write_text(STALE)

    proc = cli(["-m", "point.x=1.0,2.0,3.0", "resume=sweep"], cwd=tmp_path, timeout=300)

    result = summary(folder)  # rewritten, not the stale one
    assert result["jobs"] == 3 and [r["job"] for r in result["rows"]] == ["0", "1", "2"]
    for x, row in zip((1.0, 2.0, 3.0), result["rows"]):
        assert row["overrides"] == [f"point.x={x}"]
        if row["met"]:  # run again: a whole, right log now
            assert row["status"] == "ok" and row["derivatives"] == _cubic(x) and not row["resumed"]
            assert json.loads((folder / row["job"] / "results.json").read_text())["status"] == "ok"
        else:  # or named as what it is, in one short line
            assert row["status"] in ("raised", "corrupt") and len(row["error"]) <= 240 and "\n" not in row["error"]
    failed = sum(1 for r in result["rows"] if not r["met"])
    assert result["failed"] == failed
    assert proc.returncode == (1 if failed else 0), proc.stderr[-2000:]
    assert f"sweep: 3 jobs, {failed} failed" in proc.stdout
    assert "Traceback" not in proc.stderr


# ---- what a job folder holds never crashes the summary --------------------------------------
# (a results.json that is not a run log: tests/test_log_integrity.py, the BAD_LOGS table)


@pytest.fixture(scope="module")
def a_log(tmp_path_factory) -> Path:
    """A real job's folder: the seed's non-persistent tape (a value, then a declared error)."""
    from runner import job
    from tests.helpers import composed

    folder = tmp_path_factory.mktemp("log") / "run"
    assert job.run(composed(["experiment=seed_non_persistent"]), folder, name="x", echo=False) == 0
    return folder


OVERRIDES = [
    ("malformed YAML", lambda p: p.write_text("- [unclosed\n")),
    ("a number", lambda p: p.write_text("3\n")),
    ("a link to a file elsewhere", lambda p: p.symlink_to("/etc/passwd")),
    ("a directory", lambda p: p.mkdir()),
    ("a FIFO", lambda p: os.mkfifo(p)),
]


@pytest.mark.parametrize("make", [o[1] for o in OVERRIDES], ids=[o[0] for o in OVERRIDES])
def test_an_unreadable_overrides_file_still_gives_a_row(tmp_path, a_log, make):
    shutil.copytree(a_log, tmp_path / "0")
    (tmp_path / "0" / ".hydra").mkdir()
    make(tmp_path / "0" / ".hydra" / "overrides.yaml")
    (row,) = sweep_summary.collect(tmp_path)
    assert (row["overrides"], row["status"], row["met"]) == ([], "error", True)  # the declared error


def test_the_table_escapes_what_a_tampered_log_holds(tmp_path, a_log):
    shutil.copytree(a_log, tmp_path / "0")
    rec = json.loads((a_log / "results.json").read_text())
    rec["error"].update(type="E\x1b[2J", message="\x1b]0;owned\x07 x")
    rec["derivatives"][0].update(name="d\x1b[31m")
    (tmp_path / "0" / "results.json").write_text(json.dumps(rec))
    text = sweep_summary.table(sweep_summary.collect(tmp_path))
    assert "\x1b" not in text and "\x07" not in text
    assert "E\\x1b[2J: \\x1b]0;owned\\x07 x" in text and "d\\x1b[31m" in text


# ---- one sweep per folder ---------------------------------------------------------------


def _tree(folder: Path):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", list(LAUNCHERS))
@pytest.mark.parametrize("key", ["hydra.sweep.dir", "resume"])
def test_a_sweep_into_a_locked_folder_is_refused_and_writes_nothing(tmp_path, launcher, key):
    folder = tmp_path / "sweep"
    folder.mkdir()
    fd = os.open(folder / lock.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this test process holds the folder
        os.write(fd, f"{os.getpid()}\n".encode())
        before = _tree(folder)
        proc = cli(["-m", *LAUNCHERS[launcher], "point.x=1.0,2.0", f"{key}=sweep"], cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.splitlines() == [
            f"config error: {key}: 'sweep' is in use by another sweep (pid {os.getpid()}); "
            "wait for it to end, or choose another folder"
        ]
        assert _tree(folder) == before
        assert not (tmp_path / "outputs").exists()
    finally:
        os.close(fd)


def _wait_for(predicate, proc, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert predicate(), "the sweep did not get going"


@pytest.mark.slow
def test_a_second_sweep_is_refused_while_the_first_runs_which_ends_intact_and_can_be_resumed(tmp_path):
    folder = tmp_path / "sweep"
    jobs = 60  # TensorFlow's import, then about a second of jobs: the second sweep comes meanwhile
    first = start_cli(["-m", f"point.x=range(0,{jobs})", "hydra.sweep.dir=sweep"], tmp_path)
    try:
        _wait_for(lambda: _read(folder / lock.LOCK_FILE) == f"{first.pid}\n", first, 120)  # it holds the lock
        second = cli(["-m", "point.x=7.0,8.0", "hydra.sweep.dir=sweep"], cwd=tmp_path, timeout=120)
        running = first.poll() is None
        out, err = first.communicate(timeout=240)
    finally:
        first.kill()
        first.wait()
    assert running, "the first sweep ended before the second started; the test proves nothing"
    assert second.returncode == 2, second.stdout[-2000:]
    assert second.stderr.splitlines() == [
        f"config error: hydra.sweep.dir: 'sweep' is in use by another sweep (pid {first.pid}); "
        "wait for it to end, or choose another folder"
    ]
    assert first.returncode == 0, err[-2000:]
    result = summary(folder)
    assert result["failed"] == 0
    assert [(r["overrides"], r["derivatives"]) for r in result["rows"]] == [
        ([f"point.x={i}"], _cubic(i)) for i in range(jobs)
    ]
    plan = json.loads((folder / ".progress" / "plan.json").read_text())
    assert plan["total"] == jobs and (folder / ".progress" / "done").stat().st_size == jobs  # not reset
    assert "point.x=7.0,8.0" not in (folder / "multirun.yaml").read_text()
    assert f"sweep: {jobs} jobs, 0 failed" in out

    # the first sweep has ended: its folder is free to resume, every job kept
    again = cli(["-m", f"point.x=range(0,{jobs})", "resume=sweep"], cwd=tmp_path, timeout=240)
    assert again.returncode == 0, again.stderr[-2000:]
    assert summary(folder)["resumed"] == jobs
    assert f"sweep: {jobs} jobs, 0 failed, {jobs} kept from an earlier launch (resume)" in again.stdout


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@pytest.mark.slow
def test_a_killed_sweep_leaves_its_folder_unlocked(tmp_path):
    folder = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "-m", "point.x=range(0,200)", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: (folder / "0" / "results.json").exists(), proc, 240)
        fd = os.open(folder / lock.LOCK_FILE, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # held while the sweep runs
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel: no error
        finally:
            os.close(fd)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


# ---- a sweep folder from someone else ------------------------------------------------------
# A sweep folder can be shared, or come from someone else (a copy, an archive). A link in it
# where the sweep writes would make the runner, or Hydra, write into the file it points to.

DECOY = "the decoy: no sweep may change this file\n"


@pytest.fixture(scope="module")
def a_sweep(tmp_path_factory) -> Path:
    """A real finished sweep of two jobs (point.x=1.0,2.0); each test works on a copy."""
    root = tmp_path_factory.mktemp("made")
    proc = cli(["-m", "point.x=1.0,2.0", "hydra.sweep.dir=sw"], cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "sw"


# (where, what): a link where the sweep writes, to a decoy file or to a folder elsewhere
# (a copy of what was there); or a FIFO, which Hydra's writer would block on forever.
PLANTED = [
    (".progress/done", "file"),  # the runner's counters: reset, then appended to
    (".progress/raised", "file"),
    (".progress/plan.json", "file"),
    (".progress", "folder"),
    (".sweep.lock", "file"),
    ("multirun.yaml", "file"),  # Hydra's, written before any job
    ("0/.hydra/hydra.yaml", "file"),  # Hydra's, written for job 0 although it is skipped
    ("0/.hydra/overrides.yaml", "file"),
    ("0/.hydra", "folder"),
    ("0/runner.log", "file"),  # the job's log file (Hydra's logging)
    ("0/results.json", "file"),  # the run log: read as corrupt, so the job runs again
    ("0", "folder"),
    ("2", "folder"),  # the folder of a job this resume adds (a third point): Hydra makes it
    ("2/.hydra", "folder"),  # ... and its .hydra, in a job folder that holds nothing else
    ("summary.json", "file"),
    ("summary.csv", "file"),
    ("sweep_plot.png", "file"),
    (".submitit/1_0/x", "file"),  # submitit's folders (a link of submitit's own is allowed)
    ("multirun.yaml", "fifo"),
    ("0/.hydra/config.yaml", "fifo"),
]


def _plant(sweep: Path, where: str, what: str, elsewhere: Path) -> None:
    """Put a link (or a FIFO) at `sweep/where`; the link points into `elsewhere`."""
    path = sweep / where
    path.parent.mkdir(parents=True, exist_ok=True)
    if what == "folder" and path.is_dir():
        shutil.copytree(path, elsewhere / "folder", symlinks=True)  # what the sweep would see
    elif what == "folder":
        (elsewhere / "folder").mkdir()
    if path.is_dir():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if what == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(elsewhere / ("folder" if what == "folder" else "decoy.txt"))


def _copy_with(tmp_path: Path, a_sweep: Path, where: str, what: str) -> Path:
    """A copy of the sweep in tmp_path/sw, with `where` planted; a decoy in tmp_path/elsewhere."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "decoy.txt").write_text(DECOY)
    sweep = tmp_path / "sw"
    shutil.copytree(a_sweep, sweep, symlinks=True)
    _plant(sweep, where, what, elsewhere)
    return sweep


def _state(folder: Path):
    """Everything about a tree that a write would change, read without following links or
    opening a FIFO: each entry's type, size, modification time and link target."""
    out = []
    for p in sorted(folder.rglob("*")):
        info = p.lstat()
        target = os.readlink(p) if p.is_symlink() else None
        out.append((str(p.relative_to(folder)), info.st_mode, info.st_size, info.st_mtime_ns, target))
    return out


def _refusal(key: str, folder: str, where: str, what: str) -> str:
    if what == "fifo":
        return (
            f"config error: {key}: {folder!r} holds a FIFO, {where!r}; a sweep folder holds only folders "
            "and regular files: remove it, or choose another folder"
        )
    return (
        f"config error: {key}: {folder!r} holds a symbolic link, {where!r}; the sweep would write "
        "through it: remove it, or choose another folder"
    )


@pytest.mark.parametrize("where, what", PLANTED, ids=[f"{w} ({k})" for w, k in PLANTED])
def test_a_link_where_the_sweep_writes_is_refused_when_its_lock_is_taken(tmp_path, a_sweep, where, what):
    sweep = _copy_with(tmp_path, a_sweep, where, what)
    before, decoy = _state(sweep), _state(tmp_path / "elsewhere")
    with pytest.raises(lock.UnsafeFolder) as refused:
        lock.acquire(sweep, "resume")
    assert refused.value.headline() == _refusal("resume", str(sweep), where, what)
    assert _state(sweep) == before and _state(tmp_path / "elsewhere") == decoy
    with pytest.raises(lock.UnsafeFolder):  # not taken: every try is refused alike
        lock.acquire(sweep, "resume")


# the attacks the review found, and a job folder the resume makes: through the command line
ATTACKS = [
    ("resume", ".progress/done", "file"),
    ("resume", "multirun.yaml", "file"),
    ("resume", "0/.hydra/hydra.yaml", "file"),
    ("resume", "0/results.json", "file"),
    ("resume", "summary.json", "file"),
    ("resume", "2", "folder"),
    ("resume", "multirun.yaml", "fifo"),
    ("hydra.sweep.dir", "0/.hydra/hydra.yaml", "file"),
]


@pytest.mark.slow
@pytest.mark.parametrize("key, where, what", ATTACKS, ids=[f"{k}: {w} ({x})" for k, w, x in ATTACKS])
def test_a_shared_sweep_folder_with_a_link_is_refused_and_the_decoy_is_unchanged(tmp_path, a_sweep, key, where, what):
    sweep = _copy_with(tmp_path, a_sweep, where, what)
    before, decoy = _state(sweep), _state(tmp_path / "elsewhere")

    proc = cli(["-m", "point.x=1.0,2.0,3.0", f"{key}=sw"], cwd=tmp_path, timeout=120)

    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert proc.stderr.splitlines() == [_refusal(key, "sw", where, what)]
    assert _state(sweep) == before, "the refused sweep wrote into its folder"
    assert _state(tmp_path / "elsewhere") == decoy
    assert (tmp_path / "elsewhere" / "decoy.txt").read_text() == DECOY
    assert not (tmp_path / "outputs").exists()


@pytest.mark.slow
def test_a_normal_resume_still_works_also_through_a_link_the_user_typed(tmp_path, a_sweep):
    shutil.copytree(a_sweep, tmp_path / "sw", symlinks=True)
    (tmp_path / "here").symlink_to("sw")  # the folder itself may be reached through a link

    proc = cli(["-m", "point.x=1.0,2.0,3.0", "resume=here"], cwd=tmp_path, timeout=300)

    assert proc.returncode == 0, proc.stderr[-2000:]
    result = summary(tmp_path / "sw")
    assert (result["jobs"], result["failed"], result["resumed"]) == (3, 0, 2)
    assert [(r["overrides"], r["derivatives"]) for r in result["rows"]] == [
        ([f"point.x={x}"], _cubic(x)) for x in (1.0, 2.0, 3.0)
    ]
    assert "sweep: 3 jobs, 0 failed, 2 kept from an earlier launch (resume)" in proc.stdout
    lock.check_folder(tmp_path / "sw", "resume")  # what a sweep leaves passes its own check


def test_a_link_of_submitits_own_is_allowed_and_nothing_else_in_its_folder(tmp_path):
    # submitit's SLURM executor leaves `.submitit/.submission_file_<uuid4 hex>.sh` links to each
    # job's script; nothing writes through them (every submission draws a new uuid)
    sweep = tmp_path / "sw"
    (sweep / ".submitit" / "123").mkdir(parents=True)
    (sweep / ".submitit" / "123" / "123_submission.sh").write_text("#!/bin/sh\n")
    own = sweep / ".submitit" / f".submission_file_{'0123456789abcdef' * 2}.sh"
    own.symlink_to(sweep / ".submitit" / "123" / "123_submission.sh")
    lock.check_folder(sweep, "resume")
    for name in [".submission_file_x.sh", f".submission_file_{'0' * 32}.sh.tmp", "123_submission.sh"]:
        odd = sweep / ".submitit" / "123" / name if name.startswith("123") else sweep / ".submitit" / name
        if odd.exists():
            odd.unlink()
        odd.symlink_to(tmp_path / "decoy.txt")
        with pytest.raises(lock.UnsafeFolder):
            lock.check_folder(sweep, "resume")
        odd.unlink()
    moved = sweep / f".submission_file_{'0' * 32}.sh"  # the name, but not in .submitit/
    moved.symlink_to(tmp_path / "decoy.txt")
    with pytest.raises(lock.UnsafeFolder):
        lock.check_folder(sweep, "resume")


# ---- the runner's own writers never write through a link ------------------------------------
# (the check above refuses a folder at rest; these hold even for a link planted during a sweep)


def _decoy(tmp_path: Path) -> Path:
    decoy = tmp_path / "decoy.txt"
    decoy.write_text(DECOY)
    return decoy


def test_progress_files_are_replaced_or_opened_without_following_links(tmp_path):
    from runner.sweep import progress

    decoy, sweep = _decoy(tmp_path), tmp_path / "sw"
    folder = sweep / progress.PROGRESS_DIR
    folder.mkdir(parents=True)
    for name in ("done", "failed", "raised", "plan.json"):
        (folder / name).symlink_to(decoy)
    progress.start(sweep, total=2)  # each file is replaced by a new one, the link with it
    for name in ("done", "failed", "raised", "plan.json"):
        assert not (folder / name).is_symlink() and (folder / name).is_file()
    assert progress.record(sweep, failed=True)["done"] == 1

    for name in ("done", "failed", "raised"):  # a link planted while the sweep runs
        (folder / name).unlink()
        (folder / name).symlink_to(decoy)
    with pytest.raises(OSError):  # ELOOP: O_NOFOLLOW
        progress.record(sweep, failed=True)
    with pytest.raises(OSError):
        progress.record_raised(sweep, sweep / "0", RuntimeError("x"))
    assert decoy.read_text() == DECOY

    shutil.rmtree(folder)  # .progress itself a link to a folder elsewhere
    (tmp_path / "elsewhere").mkdir()
    folder.symlink_to(tmp_path / "elsewhere")
    for call in (lambda: progress.start(sweep, 2), lambda: progress.record(sweep, failed=False)):
        with pytest.raises(OSError):
            call()
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_run_log_is_renamed_into_place_replacing_a_link(tmp_path):
    import numpy as np

    from runner.record import runlog

    decoy, job = _decoy(tmp_path), tmp_path / "0"
    job.mkdir()
    for name in (runlog.RESULTS_FILE, runlog.ARRAYS_FILE):
        (job / name).symlink_to(decoy)
    runlog.write(job, {"status": "ok"}, {"a": np.arange(3.0)})
    assert json.loads((job / runlog.RESULTS_FILE).read_text()) == {"status": "ok"}
    assert np.load(job / runlog.ARRAYS_FILE)["a"].tolist() == [0.0, 1.0, 2.0]
    assert not any(p.is_symlink() for p in job.iterdir()) and decoy.read_text() == DECOY
    assert sorted(p.name for p in job.iterdir()) == [runlog.ARRAYS_FILE, runlog.RESULTS_FILE]  # no temp left


def test_the_summary_and_the_plot_replace_links_planted_during_the_sweep(tmp_path, a_sweep, capsys):
    from runner.record import plots

    decoy, sweep = _decoy(tmp_path), tmp_path / "sw"
    shutil.copytree(a_sweep, sweep, symlinks=True)
    for name in (sweep_summary.SUMMARY_JSON, sweep_summary.SUMMARY_CSV, plots.SWEEP_PLOT):
        (sweep / name).unlink()
        (sweep / name).symlink_to(decoy)
    rows = sweep_summary.finish(sweep, plot=True)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert decoy.read_text() == DECOY
    assert summary(sweep)["jobs"] == 2 and (sweep / sweep_summary.SUMMARY_CSV).read_text().startswith("job,")
    png = sweep / plots.SWEEP_PLOT
    assert not png.is_symlink() and png.read_bytes().startswith(b"\x89PNG")
    assert f"sweep plot: {png}" in capsys.readouterr().out
    assert sorted(p.name for p in sweep.iterdir() if p.name.startswith(".sweep_plot")) == []  # no temp left


# ---- the check is bounded ---------------------------------------------------------------------


def test_a_folder_with_more_entries_than_are_checked_is_refused(tmp_path):
    sweep = tmp_path / "sw"
    for i in range(5):
        (sweep / str(i) / ".hydra").mkdir(parents=True)  # 10 entries
    lock.check_folder(sweep, "resume", limit=10)
    (sweep / "4" / "results.json").write_text("{}")  # 11
    with pytest.raises(lock.UnsafeFolder) as refused:
        lock.check_folder(sweep, "resume", limit=10)
    assert refused.value.headline() == (
        f"config error: resume: {str(sweep)!r} holds more than 10 entries, more than a sweep checks "
        "for links before it writes into a folder: choose another folder"
    )
    assert f"{lock.MAX_ENTRIES:,}" == "1,000,000"


def test_a_missing_folder_has_nothing_to_check(tmp_path):
    lock.check_folder(tmp_path / "new", "hydra.sweep.dir")
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_sweep_folder_of_100000_entries_is_checked_in_about_a_second(tmp_path):
    sweep = tmp_path / "sw"
    jobs = 100_000 // 7  # a job folder: N/, .hydra/ and its three files, the log, results.json
    for i in range(jobs):
        hydra = sweep / str(i) / ".hydra"
        hydra.mkdir(parents=True)
        for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
            (hydra / name).touch()
        (sweep / str(i) / "runner.log").touch()
        (sweep / str(i) / "results.json").touch()
    last = sweep / str(jobs - 1) / ".hydra" / "hydra.yaml"
    started = time.perf_counter()
    lock.check_folder(sweep, "resume")
    took = time.perf_counter() - started
    print(f"checked {jobs * 7:,} entries in {took:.2f} s")
    assert took < 5, took  # 0.4 s on the development machine
    last.unlink()
    last.symlink_to(tmp_path / "decoy.txt")  # the last of them
    with pytest.raises(lock.UnsafeFolder, match=re.escape(repr(f"{jobs - 1}/.hydra/hydra.yaml"))):
        lock.check_folder(sweep, "resume")
