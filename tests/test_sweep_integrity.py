"""A sweep always ends with its summary, and only one sweep at a time writes a folder.

- A job that raises (a real fault: its `results.json` path is a directory, so the log's
  final rename fails) still leaves `summary.json` and `summary.csv` listing every job, the
  failing one `raised`, and the command exits 1, under every launcher; a stale summary
  from an earlier launch never survives.
- A `results.json` that is not a whole run log gives a `corrupt` row, never a crash.
- A second sweep into a folder a sweep holds is refused (exit 2, one line) and writes
  nothing there; the first's results are intact; the folder can be resumed once the
  first has ended, even when it was killed.

The lock held by this test process itself is a real `flock` on the same file, taken
without the runner's code.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.sweep import lock
from runner.sweep import summary as sweep_summary
from tests.helpers import cli, command_env, summary

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
    assert len(csv_lines) == 4 and csv_lines[2].startswith("1,point.x=2.0,raised,False,")
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
    first = subprocess.Popen(
        [sys.executable, "-m", "runner", "-m", f"point.x=range(0,{jobs})", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
