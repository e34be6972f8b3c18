"""Run logs are read as untrusted files: report, rerun and resume name a bad one and go on.

Real logs come from a real sweep (`python -m runner -m ...`, two jobs, each with an
`arrays.npz`); each row of `BAD_LOGS` corrupts a copy of one job folder. `runner.report` and
`runner.rerun` name the bad log in one line, without a traceback, and show the good ones (each
row in-process; the commands in subprocesses with a timeout, every row at once for report, so
a FIFO that hangs fails the test); `resume.kept` refuses it, so a resumed sweep runs that job
again. `rerun` never writes through a `.rerun` link, and a changed point file reruns its job.

A run folder is read where it is: a job folder or `.hydra` that is a link is not followed.
Each row of `BAD_OVERRIDES` spoils a job's `.hydra/overrides.yaml`, which then shows as none,
at once; each row of `BAD_SAVED_CONFIGS` a saved config, which `rerun` refuses in one line
within its budget of time and memory. The digest of a point file reads it as points.py does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest

from runner import report, rerun
from runner.config import overrides, points
from runner.errors import ConfigError
from runner.record import log_reader, runlog
from runner.sweep import resume
from runner.sweep import summary as sweep_summary
from tests.helpers import cli, command_env, summary, sweep_dirs

RESULTS = runlog.RESULTS_FILE
ARRAYS = runlog.ARRAYS_FILE
GRID_SWEEP = [
    "-m",
    "experiment=seed_chain_rule",
    "point.x={linspace: [-2, 2, 41]}",
    "derivatives=[{target: z, sources: x}]",
    "log.max_inline_elements=10",
    "seed=0,1",
]


def tool(module: str, *args: Any, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m runner.MODULE ARGS` in a subprocess (killed after `timeout` seconds)."""
    return subprocess.run(
        [sys.executable, "-m", f"runner.{module}", *map(str, args)],
        cwd=cwd,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    """A real two-job sweep whose jobs keep their tensors in arrays.npz; copy it, never edit it."""
    cwd = tmp_path_factory.mktemp("grid_sweep")
    proc = cli(GRID_SWEEP, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    [sweep_dir] = sweep_dirs(cwd)
    return cwd, sweep_dir


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> Path:
    """The same job run in-process (no subprocess), with the config Hydra would save beside it."""
    from omegaconf import OmegaConf

    from runner import job
    from tests.helpers import composed

    cfg = composed([a for a in GRID_SWEEP if a not in ("-m", "seed=0,1")])
    folder = tmp_path_factory.mktemp("grid_run") / "run"
    assert job.run(cfg, folder, name="seed_chain_rule", echo=False) == 0
    (folder / rerun.SAVED_CONFIG).parent.mkdir()
    OmegaConf.save(OmegaConf.create(cfg), folder / rerun.SAVED_CONFIG)
    return folder


# ---------------------------------------------------------------- the table of bad logs


def _write(data: bytes, name: str = RESULTS) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


def _edit(change: Callable[[Dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        rec = json.loads((folder / RESULTS).read_text())
        change(rec)
        (folder / RESULTS).write_text(json.dumps(rec, indent=2))

    return apply


def _truncate(name: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return apply


def _fifo(name: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / name).unlink()
        os.mkfifo(folder / name)

    return apply


def _compressed(folder: Path) -> None:
    import numpy as np

    with np.load(folder / ARRAYS) as npz:
        arrays = {k: npz[k] for k in npz.files}
    np.savez_compressed(folder / ARRAYS, **arrays)  # the same arrays, deflated: a zip bomb's form


def _arrays_link(folder: Path) -> None:
    elsewhere = folder.parent / f".{folder.name}-arrays.npz"
    (folder / ARRAYS).rename(elsewhere)
    (folder / ARRAYS).symlink_to(elsewhere)


def _huge(folder: Path) -> None:
    with open(folder / RESULTS, "r+b") as f:  # sparse: costs no disk, and must not be read
        f.truncate(log_reader.LOG_LIMIT + 1)


def _folder(folder: Path) -> None:
    (folder / RESULTS).unlink()
    (folder / RESULTS).mkdir()


def _link(target: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        (folder / RESULTS).unlink()
        (folder / RESULTS).symlink_to(target)

    return apply


def _link_to_a_good_log_outside(folder: Path) -> None:
    elsewhere = folder.parent / f".{folder.name}-elsewhere"  # hidden: not listed itself
    shutil.copytree(folder, elsewhere, symlinks=True)
    _link(str(elsewhere / RESULTS))(folder)


def _forged_member(shape: Tuple[int, ...], lie: bool = False) -> Callable[[Path], None]:
    """arrays.npz with `values/x.npy` replaced by a float32 header of `shape` (and the log
    saying so) over the member's 164 bytes of data; `lie`: the zip's directory then states the
    size the header needs, which the file does not have."""

    def apply(folder: Path) -> None:
        import io
        import zipfile

        import numpy as np

        with zipfile.ZipFile(folder / ARRAYS) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()}
        npy = io.BytesIO()
        np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": shape})
        members["values/x.npy"] = npy.getvalue() + b"\0" * 164
        with zipfile.ZipFile(folder / ARRAYS, "w", zipfile.ZIP_STORED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        if lie:  # the sizes of values/x.npy in the zip's central directory
            data = bytearray((folder / ARRAYS).read_bytes())
            entry = data.index(b"PK\x01\x02")
            while data[entry + 46 : entry + 46 + len(b"values/x.npy")] != b"values/x.npy":
                entry = data.index(b"PK\x01\x02", entry + 4)
            needs = len(npy.getvalue()) + math.prod(shape) * 4
            data[entry + 20 : entry + 28] = needs.to_bytes(4, "little") * 2  # compressed, uncompressed
            (folder / ARRAYS).write_bytes(bytes(data))
        _edit(_set("values.x.array.shape", list(shape)))(folder)

    return apply


def _hydra_link(folder: Path) -> None:
    elsewhere = folder.parent / f".{folder.name}-hydra"
    (folder / ".hydra").rename(elsewhere)
    (folder / ".hydra").symlink_to(elsewhere, target_is_directory=True)


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def change(rec: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = rec
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value

    return change


def _delete(key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda rec: rec.pop(key)


BAD_LOGS = [
    # (id, corruption of a copied job folder, words the one line must hold)
    ("truncated", _truncate(RESULTS), "truncated"),
    ("empty", _write(b""), "empty"),
    ("not-json", _write(b"results: fine\n"), "not JSON"),
    ("nan-literal", _write(b'{"schema_version": NaN}'), "not strict JSON"),
    ("nested-too-deeply", _write(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    ("a-list", _write(b"[1, 2, 3]"), "not an object"),
    ("a-string", _write(b'"ok"'), "not an object"),
    ("not-utf8", _write(b'{"experiment": "caf\xe9"}'), "not UTF-8"),
    ("utf16", _write('{"schema_version": 1}'.encode("utf-16")), "not UTF-8"),
    ("schema-version-2", _edit(_set("schema_version", 2)), "schema_version"),
    ("schema-version-text", _edit(_set("schema_version", "1")), "schema_version"),
    ("no-status", _edit(_delete("status")), "status"),
    ("no-expect", _edit(_delete("expect")), "expect"),
    ("no-derivatives", _edit(_delete("derivatives")), "derivatives"),
    ("status-unknown", _edit(_set("status", "fine")), "status"),
    ("digest-a-number", _edit(_set("config_sha256", 5)), "config_sha256"),
    ("values-a-list", _edit(_set("values", [])), "values"),
    ("derivative-a-number", _edit(_set("derivatives", [1])), "derivatives[0]"),
    ("derivative-without-kind", _edit(lambda r: r["derivatives"][0].pop("kind")), "derivatives[0].kind"),
    ("met-a-string", _edit(_set("expect.met", "yes")), "expect.met"),
    ("mismatches-a-string", _edit(_set("expect.mismatches", "none")), "expect.mismatches"),
    ("error-without-message", _edit(_set("error", {"type": "X"})), "error.message"),
    ("check-without-method", _edit(_set("derivatives.0.check", {"passed": True})), "check.method"),
    ("warnings-numbers", _edit(_set("warnings", [1])), "warnings"),
    ("ragged-value", _edit(_set("values.x", [[1.0], [1.0, 2.0]])), "values.x"),
    ("text-value", _edit(_set("values.x", "seven")), "values.x"),
    ("started-text", _edit(_set("timing.started", "noon")), "timing.started"),
    ("timing-a-list", _edit(_set("timing", [])), "timing"),
    ("environment-a-string", _edit(_set("environment", "linux")), "environment"),
    ("array-path-leaves", _edit(_set("derivatives.0.value.array.file", "../../../etc/passwd")), "'../../../etc/"),
    ("array-shape-text", _edit(_set("values.x.array.shape", "41")), "values.x.array.shape"),
    ("arrays-missing", lambda f: (f / ARRAYS).unlink(), "arrays.npz, which holds values.x, is missing"),
    ("arrays-truncated", _truncate(ARRAYS), "arrays.npz"),
    ("arrays-not-a-zip", _write(b"PK\x03\x04 not really", ARRAYS), "arrays.npz"),
    ("arrays-fifo", _fifo(ARRAYS), "FIFO"),
    ("arrays-link", _arrays_link, "symbolic link"),
    ("arrays-compressed", _compressed, "compressed"),
    ("arrays-key-missing", _edit(_set("derivatives.0.value.array.key", "derivatives/nope")), "derivatives/nope"),
    ("arrays-shape-differs", _edit(_set("values.x.array.shape", [42])), "shape"),
    ("arrays-header-claims-2-to-the-40", _forged_member((2**40,)), "needs 4,398,046,511,232"),
    ("arrays-size-beyond-the-file", _forged_member((2**28,), lie=True), "beyond"),
    ("huge", _huge, "limit"),
    ("fifo", _fifo(RESULTS), "FIFO"),
    ("a-folder", _folder, "folder"),
    ("link-to-dev-zero", _link("/dev/zero"), "symbolic link"),
    ("link-to-a-log-outside", _link_to_a_good_log_outside, "symbolic link"),
    ("link-loop", _link(RESULTS), "symbolic link"),
    ("hydra-a-link", _hydra_link, "symbolic link"),
]
IDS = [row[0] for row in BAD_LOGS]
ROWS = [row[1:] for row in BAD_LOGS]


def bad_copy(src: Path, dst: Path, corrupt: Callable[[Path], None]) -> Path:
    """A copy of a real run folder, corrupted."""
    folder = Path(shutil.copytree(src, dst, symlinks=True))
    corrupt(folder)
    return folder


def one_line(stream: str) -> str:
    lines = stream.splitlines()
    assert len(lines) == 1, stream
    return lines[0]


def assert_names(line: str, folder: Path, words: str) -> None:
    assert "Traceback" not in line
    assert line.startswith("bad run log: ") and str(folder) in line, line
    assert words in line, line
    assert len(line) < len(str(folder)) + 160, line  # short: names the file and what is wrong


@pytest.mark.parametrize("corrupt, words", ROWS, ids=IDS)
def test_report_names_a_bad_run_in_one_line(grid_run, tmp_path, capsys, corrupt, words):
    folder = bad_copy(grid_run, tmp_path / "run", corrupt)
    assert report.main([str(folder)]) == 2  # nothing could be read
    out, err = capsys.readouterr()
    assert out == ""
    assert_names(one_line(err), folder, words)


@pytest.mark.parametrize("corrupt, words", ROWS, ids=IDS)
def test_rerun_names_a_bad_run_in_one_line_and_runs_nothing(grid_run, tmp_path, capsys, corrupt, words):
    folder = bad_copy(grid_run, tmp_path / "run", corrupt)
    assert rerun.main([str(folder)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert_names(one_line(err), folder, words)
    assert not os.path.lexists(folder / rerun.RERUN_DIR)


@pytest.mark.parametrize("corrupt, words", ROWS, ids=IDS)
def test_the_sweep_summary_lists_a_bad_log_as_corrupt_and_goes_on(grid_run, tmp_path, corrupt, words):
    sweep_dir = tmp_path / "sweep"
    shutil.copytree(grid_run, sweep_dir / "0", symlinks=True)
    bad_copy(grid_run, sweep_dir / "1", corrupt)
    rows = sweep_summary.collect(sweep_dir)  # a FIFO must not hang it, nor a link be followed
    sweep_summary.write(sweep_dir, rows)
    text = sweep_summary.table(rows)
    assert [(r["job"], r["status"], r["met"]) for r in rows] == [("0", "ok", True), ("1", "corrupt", False)]
    assert words in rows[1]["error"] and len(rows[1]["error"]) < 200, rows[1]["error"]
    assert json.loads((sweep_dir / sweep_summary.SUMMARY_JSON).read_text())["failed"] == 1
    assert "2 jobs, 1 failed" in text and "Traceback" not in text


@pytest.mark.slow
@pytest.mark.parametrize("row", ["truncated", "fifo", "arrays-truncated", "schema-version-2"])
def test_the_rerun_command_names_a_bad_run_in_one_line(grid_sweep, tmp_path, row):
    [(corrupt, words)] = [r[1:] for r in BAD_LOGS if r[0] == row]
    folder = bad_copy(grid_sweep[1] / "0", tmp_path / "run", corrupt)
    proc = tool("rerun", folder, cwd=tmp_path, timeout=60)  # a FIFO must not hang it
    assert proc.returncode == 2 and proc.stdout == ""
    assert_names(one_line(proc.stderr), folder, words)


@pytest.mark.parametrize("corrupt, words", ROWS, ids=IDS)
def test_resume_keeps_no_bad_result(grid_run, tmp_path, corrupt, words):
    digest = json.loads((grid_run / RESULTS).read_text())["config_sha256"]
    assert resume.kept(grid_run, digest)[1] is None  # the good original is kept
    folder = bad_copy(grid_run, tmp_path / "run", corrupt)
    record, why = resume.kept(folder, digest)
    assert record is None
    assert why is not None and words in why and str(folder) in why, why


@pytest.mark.slow
def test_report_lists_the_good_logs_and_names_each_bad_one(grid_sweep, tmp_path):
    """Every row of the table at once, through the command (a FIFO must not hang it)."""
    root = tmp_path / "outputs"
    shutil.copytree(grid_sweep[1], root / "sweep", symlinks=True)
    shutil.copytree(grid_sweep[1] / "1", root / "single", symlinks=True)
    bad = [bad_copy(grid_sweep[1] / "0", root / "bad" / name, corrupt) for name, corrupt, _ in BAD_LOGS]
    proc = tool("report", root, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr  # some logs were read
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == len(bad), proc.stderr
    for folder, line in zip(sorted(bad, key=str), sorted(lines)):
        assert line.startswith("bad run log: ") and str(folder) + os.sep in line
    assert f"{root / 'single'}" in proc.stdout and f"{root / 'sweep'}" in proc.stdout
    assert "2 jobs, 0 failed" in proc.stdout
    assert proc.stdout.rstrip().endswith(f"1 runs, 1 sweeps under {root}; {len(bad)} run logs unreadable")


@pytest.mark.slow
def test_report_of_a_sweep_with_a_bad_job_shows_the_rest(grid_sweep, tmp_path):
    sweep_dir = Path(shutil.copytree(grid_sweep[1], tmp_path / "sweep", symlinks=True))
    _fifo(RESULTS)(sweep_dir / "1")
    proc = tool("report", sweep_dir, cwd=tmp_path)
    assert proc.returncode == 0
    assert_names(one_line(proc.stderr), sweep_dir / "1", "FIFO")
    assert "sweep: 2 jobs, 1 failed" in proc.stdout
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip().startswith("#")}
    assert " ok " in rows["#0"] and " corrupt " in rows["#1"]


def _sweep(grid_run: Path, root: Path, jobs: int = 1) -> Path:
    """A sweep folder of copies of a real run, as Hydra lays one out (with `multirun.yaml`)."""
    for job in range(jobs):
        shutil.copytree(grid_run, root / str(job), symlinks=True)
        (root / str(job) / ".hydra" / "overrides.yaml").write_text(f"- seed={job}\n")
    (root / report.MULTIRUN_FILE).write_text("hydra: {}\n")
    return root


def test_report_shows_a_sweep_as_its_summary_does(grid_run, tmp_path):
    """One reading of a sweep: report's rows are the summary's (`corrupt`, overrides [])."""
    sweep_dir = _sweep(grid_run, tmp_path / "sweep", jobs=3)
    _truncate(RESULTS)(sweep_dir / "1")
    (sweep_dir / "1" / ".hydra" / "overrides.yaml").write_text("- 1\n")  # not a list of strings
    (sweep_dir / "2" / RESULTS).unlink()
    logs = report.Logs()
    rows = report.sweep_rows(sweep_dir, logs)
    assert rows == sweep_summary.collect(sweep_dir)
    assert [(r["status"], r["overrides"]) for r in rows] == [
        ("ok", ["seed=0"]),
        ("corrupt", []),
        ("missing", ["seed=2"]),
    ]
    assert logs.read == 1 and len(logs.bad) == 1
    assert_names(logs.bad[0], sweep_dir / "1", "truncated")


# ---------------------------------------------------------------- a job folder is read where it is


def test_a_job_folder_that_is_a_link_is_not_followed(grid_run, tmp_path, capsys):
    sweep_dir = _sweep(grid_run, tmp_path / "sweep")
    elsewhere = Path(shutil.copytree(sweep_dir / "0", tmp_path / "elsewhere", symlinks=True))
    (sweep_dir / "1").symlink_to(elsewhere, target_is_directory=True)
    rows = sweep_summary.collect(sweep_dir)
    assert [(r["job"], r["status"], r["overrides"]) for r in rows] == [("0", "ok", ["seed=0"]), ("1", "corrupt", [])]
    assert "symbolic link" in rows[1]["error"]
    assert report.main([str(sweep_dir)]) == 0
    out, err = capsys.readouterr()
    assert_names(one_line(err), sweep_dir / "1", "symbolic link")
    assert "sweep: 2 jobs, 1 failed" in out
    digest = json.loads((elsewhere / RESULTS).read_text())["config_sha256"]
    record, why = resume.kept(sweep_dir / "1", digest)
    assert record is None and why is not None and "symbolic link" in why


def test_a_run_folder_named_on_the_command_line_may_be_a_link(grid_run, tmp_path, capsys):
    """The command line is trusted (docs/threat-model.md): `report latest` follows `latest`."""
    link = tmp_path / "latest"
    link.symlink_to(grid_run, target_is_directory=True)
    assert report.main([str(link)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "gradient  dz/dx" in out


# ---------------------------------------------------------------- overrides.yaml is untrusted too


def _nested_anchors() -> str:
    """Under 400 bytes that expand to 10^9 strings (the review's attack: 33 s, 3.4 GB)."""
    lines = ['- &a0 "xxxxxxxxxx"'] + [f"- &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def _aliased_megabyte() -> str:
    """One megabyte of text, named 4,900 times: under the alias bound (10,000 values), 4.9 GB as text."""
    return f'- &a "{"x" * 1_000_000}"\n- [{", ".join(["*a"] * 4900)}]\n'


def _overrides_file(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(job: Path) -> None:
        path = job / ".hydra" / "overrides.yaml"
        path.unlink()
        make(path)

    return apply


def _text(text: str) -> Callable[[Path], None]:
    return _overrides_file(lambda path: path.write_text(text))


def _outside_hydra(job: Path) -> None:
    elsewhere = job.parent / f".{job.name}-hydra"
    shutil.copytree(job / ".hydra", elsewhere)
    shutil.rmtree(job / ".hydra")
    (job / ".hydra").symlink_to(elsewhere, target_is_directory=True)


def _outside_file(path: Path) -> None:
    elsewhere = path.parent.parent.parent / f".{path.parent.parent.name}-overrides.yaml"
    elsewhere.write_text("- seed=7\n")
    path.symlink_to(elsewhere)


def _huge_overrides(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(overrides.OVERRIDES_LIMIT + 1)


BAD_OVERRIDES = [
    ("nested-anchors", _text(_nested_anchors())),
    ("aliased-megabyte", _text(_aliased_megabyte())),
    ("a-mapping", _text("seed: 1\n")),
    ("numbers", _text("- 1\n- 2\n")),
    ("nested-lists", _text("- [seed=1]\n")),
    ("recursive-alias", _text("- &a [seed=1, *a]\n")),
    ("malformed", _text("- [unclosed\n")),
    ("fifo", _overrides_file(os.mkfifo)),
    ("huge", _overrides_file(_huge_overrides)),
    ("a-folder", _overrides_file(lambda path: path.mkdir())),
    ("link-outside", _overrides_file(_outside_file)),
    ("link-to-dev-zero", _overrides_file(lambda path: path.symlink_to("/dev/zero"))),
    ("hydra-a-link", _outside_hydra),
]


IDS_OVERRIDES = [row[0] for row in BAD_OVERRIDES]


@pytest.mark.parametrize("corrupt", [row[1] for row in BAD_OVERRIDES], ids=IDS_OVERRIDES)
def test_unreadable_overrides_are_none(grid_run, tmp_path, corrupt):
    sweep_dir = _sweep(grid_run, tmp_path / "sweep")
    corrupt(sweep_dir / "0")
    assert overrides.overrides(sweep_dir / "0") == []
    assert [row["overrides"] for row in sweep_summary.collect(sweep_dir)] == [[]]
    assert report.sweep_rows(sweep_dir, report.Logs())[0]["overrides"] == []


def test_report_of_a_sweep_with_hostile_overrides_answers_at_once(grid_run, tmp_path):
    """Every row at once, through the command (before: 28 s and 4.8 GB for `aliased-megabyte`)."""
    sweep_dir = _sweep(grid_run, tmp_path / "sweep", jobs=len(BAD_OVERRIDES) + 1)
    for job, (_, corrupt) in enumerate(BAD_OVERRIDES, 1):
        corrupt(sweep_dir / str(job))
    proc = tool("report", sweep_dir, cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    linked = sweep_dir / str(IDS_OVERRIDES.index("hydra-a-link") + 1)  # its log is bad too: not followed
    assert_names(one_line(proc.stderr), linked, ".hydra is a symbolic link")
    assert f"sweep: {len(BAD_OVERRIDES) + 1} jobs, 1 failed" in proc.stdout
    assert " seed=0 " in proc.stdout and "seed=7" not in proc.stdout


# ---------------------------------------------------------------- rerun writes only in its run folder


def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / RESULTS).write_text("precious\n")
    (out / ARRAYS).write_text("precious too\n")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("target", ["folder", "file", "dangling"])
def test_rerun_refuses_a_rerun_folder_that_is_a_link(grid_sweep, tmp_path, target):
    outside = _outside(tmp_path)
    folder = Path(shutil.copytree(grid_sweep[1] / "0", tmp_path / "run", symlinks=True))
    link = folder / rerun.RERUN_DIR
    link.symlink_to({"folder": outside, "file": outside / RESULTS, "dangling": outside / "new"}[target])
    proc = tool("rerun", folder, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_line(proc.stderr)
    assert "Traceback" not in line and str(link) in line and "link" in line, line
    assert sorted(p.name for p in outside.iterdir()) == [ARRAYS, RESULTS]
    assert (outside / RESULTS).read_text() == "precious\n" and (outside / ARRAYS).read_text() == "precious too\n"
    assert link.is_symlink()  # left as it was, for its owner to look at


@pytest.mark.slow
def test_rerun_refuses_a_rerun_fifo_without_hanging(grid_sweep, tmp_path):
    folder = Path(shutil.copytree(grid_sweep[1] / "0", tmp_path / "run", symlinks=True))
    os.mkfifo(folder / rerun.RERUN_DIR)
    proc = tool("rerun", folder, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "FIFO" in one_line(proc.stderr)


@pytest.mark.slow
def test_rerun_replaces_links_in_an_old_rerun_folder_without_following_them(grid_sweep, tmp_path):
    outside = _outside(tmp_path)
    folder = Path(shutil.copytree(grid_sweep[1] / "0", tmp_path / "run", symlinks=True))
    old = folder / rerun.RERUN_DIR
    old.mkdir()
    for name in (RESULTS, ARRAYS):  # the very files the rerun writes
        (old / name).symlink_to(outside / name)
    proc = tool("rerun", folder, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("\nreproduced")
    assert (outside / RESULTS).read_text() == "precious\n" and (outside / ARRAYS).read_text() == "precious too\n"
    for name in (RESULTS, ARRAYS):
        assert not (old / name).is_symlink() and (old / name).is_file()


@pytest.mark.slow
def test_rerun_names_a_bad_saved_config_in_one_line(grid_sweep, tmp_path):
    folder = Path(shutil.copytree(grid_sweep[1] / "0", tmp_path / "run", symlinks=True))
    config = folder / ".hydra" / "config.yaml"
    config.write_text("function: [unclosed\n")
    proc = tool("rerun", folder, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_line(proc.stderr)
    assert str(config) in line and "YAML" in line and "Traceback" not in line
    config.unlink()
    os.mkfifo(config)
    proc = tool("rerun", folder, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "FIFO" in one_line(proc.stderr)


def _append(text: str) -> Callable[[Path], None]:
    def apply(folder: Path) -> None:
        with open(folder / rerun.SAVED_CONFIG, "a") as f:
            f.write(text)

    return apply


def _doubling(first: str, steps: int, join: str = "") -> str:
    """`s0: first`, then each `s{i}` twice the one before: 2^steps resolutions, and that much text."""
    return f"s0: {first}\n" + "".join(f's{i}: "${{s{i - 1}}}{join}${{s{i - 1}}}"\n' for i in range(1, steps + 1))


def _config_link(folder: Path) -> None:
    elsewhere = folder.parent / f".{folder.name}-config.yaml"
    (folder / rerun.SAVED_CONFIG).rename(elsewhere)
    (folder / rerun.SAVED_CONFIG).symlink_to(elsewhere)


BAD_SAVED_CONFIGS = [
    # (id, change to a real run's .hydra/config.yaml, words the one line must hold, environment)
    ("interpolations-doubling", _append(_doubling("ab", 40, "+")), "took over 3 s", {"RUNNER_COMPOSE_SECONDS": "3"}),
    ("text-doubling", _append(_doubling("x" * 2**20, 14)), "MiB", {}),
    ("nested-anchors", _append("z:\n" + textwrap.indent(_nested_anchors(), "  ")), "expands", {}),
    ("recursive-alias", _append("z: &a [x, *a]\n"), "alias inside its own anchor", {}),
    ("a-link", _config_link, "symbolic link", {}),
]
# Runs `python -m MODULE ARGS` and reports its peak memory on a last line of stderr.
# VmHWM, this process's own peak: ru_maxrss keeps the peak of the process it was forked from
# (a pytest holding TensorFlow: 1.6 GB) across exec
_MEASURED = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
finally:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
    print("peak KiB", hwm, file=sys.stderr)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "corrupt, words, env", [row[1:] for row in BAD_SAVED_CONFIGS], ids=[r[0] for r in BAD_SAVED_CONFIGS]
)
def test_rerun_bounds_the_work_of_a_saved_config(grid_sweep, tmp_path, corrupt, words, env):
    """Before: `interpolations-doubling` ran past 60 s; `text-doubling` took 12.6 GB in 120 s."""
    folder = bad_copy(grid_sweep[1] / "0", tmp_path / "run", corrupt)
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, "runner.rerun", str(folder)],
        cwd=tmp_path,
        env=command_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    *lines, peak = proc.stderr.splitlines()
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    line = one_line("\n".join(lines))
    assert line.startswith("cannot rerun: ") and str(folder / rerun.SAVED_CONFIG) in line and words in line, line
    assert len(line) < len(str(folder)) + 200, line
    assert int(peak.split()[-1]) < 1_500_000, peak  # KiB: the resolution was stopped, not finished
    assert not os.path.lexists(folder / rerun.RERUN_DIR)


@pytest.mark.slow
def test_rerun_leaves_out_a_hydra_node_of_the_saved_config(grid_sweep, tmp_path):
    """Hydra saves the job's config without `hydra:`; one added there is not resolved."""
    folder = bad_copy(grid_sweep[1] / "0", tmp_path / "run", _append("hydra:\n  run:\n    dir: ${nowhere}\n"))
    proc = tool("rerun", folder, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("\nreproduced")


# ---------------------------------------------------------------- resume: the digest covers files


def _old_digest(cfg: Dict[str, Any]) -> str:
    """The digest as every earlier version computed it (files not included), of the config as
    they composed it: without `limits`, which came later and says how to run, not what."""
    data = {k: v for k, v in cfg.items() if k not in ("resume", "limits")}
    # nor `log.console`, which came later still and says how to print, nor `log.mlflow` and
    # `log.mlflow_experiment`, later again, which say where else the log goes
    if "log" in data:
        data["log"] = {k: v for k, v in data["log"].items() if k not in ("console", "mlflow", "mlflow_experiment")}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def test_a_config_without_files_keeps_its_digest():
    from tests.helpers import composed

    for args in (["experiment=seed_cubic"], ["experiment=grid"], ["experiment=seed_cubic", "resume=x"]):
        cfg = composed(args)
        assert resume.config_digest(cfg) == _old_digest(cfg)


def _cfg(point: Any, **derivative: Any) -> Dict[str, Any]:
    return {"point": {"x": point}, "derivatives": [{"target": "y", "sources": "x", **derivative}]}


@pytest.mark.parametrize(
    "place",
    [
        lambda f: _cfg({"file": f}),
        lambda f: _cfg({"grid": {"file": f}}),
        lambda f: _cfg(1.0, output_gradients={"file": f}),
        lambda f: _cfg(1.0, tangents={"x": {"file": f}}),
    ],
    ids=["point", "grid-axis", "output-gradients", "tangents"],
)
def test_the_digest_holds_the_content_of_every_file_the_config_reads(tmp_path, monkeypatch, place):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.csv").write_text("1,2,3\n")
    cfg = place("p.csv")
    first = resume.config_digest(cfg)
    assert first != _old_digest(cfg)
    os.utime(tmp_path / "p.csv", (0, 0))
    assert resume.config_digest(cfg) == first  # the same bytes: the same digest
    (tmp_path / "p.csv").write_text("1,2,4\n")
    assert resume.config_digest(cfg) != first
    assert resume.config_digest(place(str(tmp_path / "p.csv"))) != first  # the path differs, the content not


@pytest.mark.parametrize(
    "make",
    [
        lambda p: None,
        lambda p: os.mkfifo(p),
        lambda p: p.mkdir(),
        lambda p: p.symlink_to("/dev/zero"),
        lambda p: p.symlink_to(p),
    ],
    ids=["missing", "fifo", "folder", "device", "loop"],
)
def test_the_digest_of_an_unreadable_file_is_made_without_reading_it(tmp_path, monkeypatch, make):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "p.csv"
    make(path)
    cfg = _cfg({"file": "p.csv"})
    unreadable = resume.config_digest(cfg)  # made at once: a FIFO does not block, a device is not read
    assert unreadable == resume.config_digest(cfg) != _old_digest(cfg)
    if path.is_dir() and not path.is_symlink():
        path.rmdir()
    elif path.is_symlink() or path.exists():
        path.unlink()
    path.write_text("1\n")
    assert resume.config_digest(cfg) != unreadable  # the file is there now: the job runs again


def _outside_link(path: Path) -> Path:
    """`path` made a link to a file outside its folder, which points.py refuses to read."""
    outside = path.parent.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / path.name).write_text("1,2\n")
    path.symlink_to(outside / path.name)
    return outside / path.name


def _sparse(size: int) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        with open(path, "wb") as f:
            f.truncate(size)
        return path

    return make


def _under_dev(path: Path) -> Path:
    """A regular file under /dev (a tmpfs at /dev/shm), named with the path as is."""
    shm = Path("/dev/shm")
    if not os.access(shm, os.W_OK):
        pytest.skip("no writable /dev/shm")
    target = shm / f"runner-test-{os.getpid()}-{path.name}"
    target.write_text("1,2\n")
    return target


@pytest.mark.parametrize(
    "name, make",
    [
        ("sub/p.csv", _outside_link),
        ("p.csv", _sparse(points.CSV_MAX_BYTES + 1)),
        ("p.npy", _sparse(resume.FILE_LIMITS[".npy"] + 1)),
        ("dev", _under_dev),
    ],
    ids=["link-out-of-its-folder", "csv-over-its-cap", "npy-over-the-largest", "under-dev"],
)
def test_the_digest_reads_no_file_points_would_refuse(tmp_path, monkeypatch, name, make):
    """As points.py reads it or not at all: the digest of a file it refuses unread does not
    depend on the file's bytes (before: a link's target outside the folder was hashed, and a
    1 GiB .csv took 3.8 s to hash)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    path = tmp_path / name
    target = make(path)
    cfg = _cfg({"file": str(target) if name == "dev" else name})
    try:
        with pytest.raises(ConfigError):  # points.py refuses it
            points.evaluate("point.x", cfg["point"]["x"])
        first = resume.config_digest(cfg)
        with open(target, "r+b") as f:
            f.write(b"9")
        assert resume.config_digest(cfg) == first
    finally:
        if name == "dev":
            target.unlink()


def test_the_hash_cap_is_the_largest_point_file_points_reads():
    """The largest .npy points.py reads: MAX_ELEMENTS numbers of 8 bytes after its header."""
    import io

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (points.MAX_ELEMENTS,)}
    )
    largest_npy = len(header.getvalue()) + points.MAX_ELEMENTS * 8
    assert largest_npy <= resume.FILE_LIMITS[".npy"] <= largest_npy + points.NPY_MAX_HEADER
    assert resume.FILE_LIMITS[".csv"] == points.CSV_MAX_BYTES


FILE_SWEEP = ["-m", "experiment=seed_cubic", "point.x={file: p.csv}", "seed=0,1"]


@pytest.mark.slow
def test_a_changed_point_file_reruns_its_jobs_on_resume(tmp_path):
    (tmp_path / "p.csv").write_text("1,2\n")
    first = cli(FILE_SWEEP, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    [sweep_dir] = sweep_dirs(tmp_path)
    assert [r["derivatives"]["dy/dx"] for r in summary(sweep_dir)["rows"]] == [[3.0, 12.0]] * 2

    same = cli([*FILE_SWEEP, f"resume={sweep_dir}"], cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert [r["resumed"] for r in summary(sweep_dir)["rows"]] == [True, True]

    (tmp_path / "p.csv").write_text("3,4\n")
    changed = cli([*FILE_SWEEP, f"resume={sweep_dir}"], cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    rows = summary(sweep_dir)["rows"]
    assert [r["resumed"] for r in rows] == [False, False]
    assert [r["derivatives"]["dy/dx"] for r in rows] == [[27.0, 48.0]] * 2
    lines = [line for line in changed.stderr.splitlines() if "running it again (resume)" in line]
    assert len(lines) == 2 and all("config_sha256" in line for line in lines), changed.stderr


@pytest.mark.slow
def test_a_tampered_kept_result_is_run_again_not_resumed(grid_sweep, tmp_path):
    cwd, original = grid_sweep
    sweep_dir = Path(shutil.copytree(original, tmp_path / "sweep", symlinks=True))
    _truncate(RESULTS)(sweep_dir / "0")
    (sweep_dir / "1" / ARRAYS).unlink()
    proc = cli([*GRID_SWEEP, f"resume={sweep_dir}"], cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert [r["resumed"] for r in summary(sweep_dir)["rows"]] == [False, False]
    lines = [line for line in proc.stderr.splitlines() if "running it again (resume)" in line]
    assert len(lines) == 2, proc.stderr
    assert "truncated" in lines[0] and str(sweep_dir / "0") in lines[0]
    assert "arrays.npz, which holds values.x, is missing" in lines[1] and str(sweep_dir / "1") in lines[1]
    for job in ("0", "1"):
        assert resume.kept(sweep_dir / job, _digest_of(sweep_dir / job))[1] is None  # whole again

    again = cli([*GRID_SWEEP, f"resume={sweep_dir}"], cwd=cwd)  # and now kept
    assert [r["resumed"] for r in summary(sweep_dir)["rows"]] == [True, True], again.stderr
    assert "running it again" not in again.stderr


def _digest_of(folder: Path) -> str:
    return json.loads((folder / RESULTS).read_text())["config_sha256"]


def test_a_kept_result_of_another_config_is_named(grid_run):
    record, why = resume.kept(grid_run, "0" * 64)
    assert record is None and why is not None and "config_sha256" in why
    assert resume.kept(grid_run.parent / "nowhere", "0" * 64) == (None, None)  # nothing kept, nothing to say
