"""Runs that can be compared: `runner.report` shows overrides, prints JSON and Markdown, diffs
two runs and aggregates repeats of a sweep; `runner.rerun SWEEP_DIR` reruns a whole sweep.

Single runs are made in-process with `runner.job.run` (one TensorFlow import); each gets the
`.hydra/overrides.yaml` Hydra writes beside every run, listing what was changed. One real
sweep over seed x point.x is made by the command line (slow). Expected numbers come from the
chain rule of the seed example: y = x^2, z = y^2, so dy/dx = 2x and dz/dx = 4x^3.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import yaml

from runner import job, report, rerun
from runner.record import runlog
from tests.helpers import ROOT, cli, sweep_dirs
from tests.helpers.configs import composed

# (folder name, overrides): what each run changes from `experiment=seed_persistent`
RUNS = {
    "x2": ["point.x=2.0"],
    "x3": ["point.x=3.0"],
    "x2_seed1": ["point.x=2.0", "seed=1"],
    "x2_fd": ["point.x=2.0", "verify=finite_difference"],
}
# The keys `--json` gives, as docs/reproducing.md lists them (view -> keys)
JSON_KEYS = {
    "listing": {"view", "root", "entries", "runs", "sweeps", "unreadable"},
    "entry": {"date", "kind", "experiment", "overrides", "outcome", "derivatives", "folder"},
    "run": {
        "view",
        "folder",
        "experiment",
        "status",
        "met",
        "error",
        "overrides",
        "values",
        "derivatives",
        "started",
        "environment",
        "timing",
        "files",
        "rerun",
    },
    "sweep": {"view", "folder", "rows", "jobs", "failed", "progress", "over", "groups", "unreadable"},
    "group": {"overrides", "over", "jobs", "failed", "size", "results"},
    "diff": {"view", "a", "b", "differences", "count"},
    "difference": {"what", "name", "a", "b"},
}


def y(x: float) -> float:
    return x**2


def z(x: float) -> float:
    return x**4


def dy(x: float) -> float:
    return 2 * x


def dz(x: float) -> float:
    return 4 * x**3


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """`outputs/NAME/` for each of RUNS, made in this process, with Hydra's overrides file."""
    root = tmp_path_factory.mktemp("runs") / "outputs"
    for name, changes in RUNS.items():
        over = ["experiment=seed_persistent", *changes]
        cfg = composed(over)
        cfg["log"] = {**cfg["log"], "tensorboard": False, "plots": False}
        folder = root / name
        (folder / ".hydra").mkdir(parents=True)
        assert job.run(cfg, folder, name="seed_persistent", echo=False) == 0
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(over))
    return root


@pytest.mark.slow
def test_listing_shows_each_runs_overrides(runs, capsys):
    assert report.main([str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["date", "kind", "experiment", "overrides", "outcome"]
    shown = {name: next(line for line in lines if line.rstrip().endswith(f"/{name}")) for name in RUNS}
    assert "experiment=seed_persistent point.x=2.0  " in shown["x2"]
    assert "experiment=seed_persistent point.x=3.0  " in shown["x3"]
    assert "point.x=2.0 seed=1" in shown["x2_seed1"]
    # the same outcome and derivatives apart from the overrides: no longer identical lines
    assert len({re.sub(r"^\S+ \S+", "", line) for line in shown.values()}) == len(RUNS)


def _json(capsys, args: List[str]):
    code = report.main(["--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)  # one document: the whole of stdout


@pytest.mark.slow
def test_json_has_the_documented_keys(runs, capsys):
    code, doc = _json(capsys, [str(runs)])
    assert code == 0 and set(doc) == JSON_KEYS["listing"] and doc["view"] == "listing"
    assert doc["runs"] == len(RUNS) and doc["sweeps"] == 0 and doc["unreadable"] == []
    assert all(set(e) == JSON_KEYS["entry"] for e in doc["entries"])
    by_folder = {Path(e["folder"]).name: e for e in doc["entries"]}
    assert by_folder["x3"]["overrides"] == ["experiment=seed_persistent", "point.x=3.0"]

    code, doc = _json(capsys, [str(runs / "x3")])
    assert code == 0 and set(doc) == JSON_KEYS["run"] and doc["view"] == "run"
    assert doc["values"] == {"x": 3.0, "y": y(3.0), "z": z(3.0)}
    assert {d["name"]: d["value"] for d in doc["derivatives"]} == {"dy/dx": dy(3.0), "dz/dx": dz(3.0)}
    assert {d["check"]["outcome"] for d in doc["derivatives"]} == {"passed"}
    assert runlog.RESULTS_FILE in doc["files"]


def test_documented_keys_are_in_the_docs():
    text = (ROOT / "docs" / "reproducing.md").read_text()
    section = text[text.index("### Machine-readable output") :]
    missing = sorted({k for keys in JSON_KEYS.values() for k in keys if f"`{k}`" not in section})
    assert missing == []


def _is_md_table(lines: List[str]) -> bool:
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
    return (
        len(lines) >= 3
        and all(line.startswith("| ") and line.endswith(" |") for line in [lines[0], *lines[2:]])
        and re.fullmatch(r"\|(---\|)+", lines[1]) is not None
        and len(set(cells)) == 1
    )


@pytest.mark.slow
@pytest.mark.parametrize("target", ["", "x3"], ids=["listing", "run"])
def test_md_is_a_table(runs, capsys, target):
    assert report.main(["--md", str(runs / target)]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(next(line for line in lines if line.startswith("| "))) :]
    assert _is_md_table(table), lines
    if not target:
        assert len(table) == 2 + len(RUNS)
        assert any("| experiment=seed_persistent point.x=3.0 |" in line for line in table)
    else:
        assert f"| gradient | dz/dx | {dz(3.0)} | [symbolic: ok, error 0] |" in table


@pytest.mark.slow
def test_diff_names_the_values_and_derivatives_that_differ(runs, capsys):
    assert report.main(["--diff", str(runs / "x2"), str(runs / "x3")]) == 1
    out = capsys.readouterr().out.splitlines()
    want = [
        "  overrides: experiment=seed_persistent point.x=2.0 -> experiment=seed_persistent point.x=3.0",
        f"  value x: 2.0 -> 3.0 (largest |difference| {3.0 - 2.0:.3g})",
        f"  value y: {y(2.0)} -> {y(3.0)} (largest |difference| {y(3.0) - y(2.0):.3g})",
        f"  value z: {z(2.0)} -> {z(3.0)} (largest |difference| {z(3.0) - z(2.0):.3g})",
        f"  gradient dy/dx: {dy(2.0)} -> {dy(3.0)} (largest |difference| {dy(3.0) - dy(2.0):.3g})",
        f"  gradient dz/dx: {dz(2.0)} -> {dz(3.0)} (largest |difference| {dz(3.0) - dz(2.0):.3g})",
    ]
    assert out[1:] == [*want, f"{len(want)} differences"]


@pytest.mark.slow
def test_diff_of_a_run_with_itself_is_empty(runs, capsys):
    assert report.main(["--diff", str(runs / "x2"), str(runs / "x2")]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["no differences"]


@pytest.mark.slow
def test_diff_names_checks_and_environment(runs, capsys):
    # the same numbers, checked another way: only the overrides and the checks differ
    assert report.main(["--diff", str(runs / "x2"), str(runs / "x2_fd")]) == 1
    out = capsys.readouterr().out
    assert "  check dy/dx method: symbolic -> finite_difference" in out
    assert "  check dz/dx method: symbolic -> finite_difference" in out
    assert not re.search(r"^  (value|gradient) ", out, re.M)
    # another seed: the environment's record of it
    code, doc = _json(capsys, ["--diff", str(runs / "x2"), str(runs / "x2_seed1")])
    assert code == 1 and set(doc) == JSON_KEYS["diff"]
    assert all(set(d) == JSON_KEYS["difference"] for d in doc["differences"])
    assert {"what": "environment", "name": "reproducibility.seed", "a": 0, "b": 1} in doc["differences"]
    assert doc["count"] == len(doc["differences"])


@pytest.mark.slow
def test_diff_of_a_corrupt_log_is_one_line_exit_2(runs, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(runs / "x2", bad)
    (bad / runlog.RESULTS_FILE).write_text('{"schema_version": 1, "values": {')
    assert report.main(["--diff", str(runs / "x2"), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("bad run log: ") and "truncated" in err and len(err.splitlines()) == 1


# ---- a real sweep over seed x point.x, by the command line --------------------------------

SEEDS, XS = (0, 1, 2), (1.0, 2.0)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sweep")
    proc = cli(
        ["-m", "experiment=seed_persistent", f"seed={','.join(map(str, SEEDS))}", f"point.x={','.join(map(str, XS))}"],
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (found,) = sweep_dirs(cwd)
    return found


@pytest.mark.slow
def test_over_seed_groups_a_sweep_by_point(sweep, capsys):
    code, doc = _json(capsys, [str(sweep)])
    assert code == 0 and set(doc) == JSON_KEYS["sweep"] and doc["over"] == ["seed"]
    assert doc["jobs"] == len(SEEDS) * len(XS) and doc["failed"] == 0
    groups = {tuple(g["overrides"]): g for g in doc["groups"]}
    assert list(groups) == [("experiment=seed_persistent", f"point.x={x}") for x in XS]
    for x in XS:
        g = groups[("experiment=seed_persistent", f"point.x={x}")]
        assert set(g) == JSON_KEYS["group"]
        assert g["size"] == len(SEEDS) and g["failed"] == 0 and g["over"] == {"seed": [str(s) for s in SEEDS]}
        for name, want in (("x", x), ("y", y(x)), ("z", z(x)), ("dy/dx", dy(x)), ("dz/dx", dz(x))):
            assert g["results"][name] == {"mean": want, "std": 0.0, "max": want, "n": len(SEEDS)}
    # the text: the jobs' table, then one row per point
    assert report.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert f"over seed: {len(XS)} groups of {len(SEEDS) * len(XS)} jobs; each result's mean / std / max" in out
    for x in XS:
        row = next(line for line in out.splitlines() if line.startswith(f"  experiment=seed_persistent point.x={x} "))
        assert row.split()[2:5] == [str(len(SEEDS)), "0", f"{x:g}"]
        assert f"{dz(x):g} / 0 / {dz(x):g}" in row


@pytest.mark.slow
def test_over_several_keys_aggregates_across_points(sweep, capsys):
    code, doc = _json(capsys, [str(sweep), "--over", "seed,point.x"])
    (g,) = doc["groups"]
    dzs = np.array([dz(x) for _ in SEEDS for x in XS])
    assert g["size"] == len(dzs) and g["overrides"] == ["experiment=seed_persistent"]
    assert g["results"]["dz/dx"] == {"mean": dzs.mean(), "std": dzs.std(), "max": dzs.max(), "n": len(dzs)}
    assert report.main(["--md", str(sweep), "--over", "seed,point.x"]) == 0
    tables = capsys.readouterr().out.split("\n\n")
    assert _is_md_table(tables[0].splitlines()) and _is_md_table(tables[1].splitlines()[1:])


@pytest.mark.slow
def test_report_imports_no_tensorflow(sweep, runs):
    for args in ([str(sweep), "--json"], ["--diff", str(runs / "x2"), str(runs / "x3")]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "runner.report", *args],
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
        assert "runner" in imported and "tensorflow" not in imported


@pytest.mark.slow
def test_rerun_of_an_untouched_sweep_reproduces_every_job(sweep, tmp_path, capsys):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    assert rerun.main([str(copy)]) == 0
    lines = capsys.readouterr().out.splitlines()
    jobs = len(SEEDS) * len(XS)
    assert lines[0] == f"rerun of sweep {copy}: {jobs} jobs"
    assert len(lines) == jobs + 2 and all(line.endswith(": reproduced") for line in lines[1:-1])
    assert lines[-1] == f"{jobs} of {jobs} jobs reproduced"


@pytest.mark.slow
def test_rerun_of_a_sweep_names_the_job_and_value_edited(sweep, tmp_path, capsys):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    log = copy / "3" / runlog.RESULTS_FILE
    rec = json.loads(log.read_text())
    rec["values"]["z"] += 1.0
    log.write_text(json.dumps(rec))
    assert rerun.main([str(copy)]) == 1
    lines = capsys.readouterr().out.splitlines()
    (bad,) = [line for line in lines if "NOT reproduced" in line]
    assert bad == "  #3 experiment=seed_persistent seed=1 point.x=2.0: NOT reproduced: value z differs"
    assert lines[-1] == "5 of 6 jobs reproduced, 1 not"


@pytest.mark.slow
def test_a_corrupt_job_is_named_not_a_crash(sweep, tmp_path, capsys):
    copy = shutil.copytree(sweep, tmp_path / "sweep")
    log = copy / "0" / runlog.RESULTS_FILE
    log.write_text(log.read_text()[:100])  # cut short
    assert report.main(["--json", str(copy)]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert err.splitlines() == doc["unreadable"] and len(doc["unreadable"]) == 1  # named in one line
    assert doc["unreadable"][0].startswith(f"bad run log: {log}: truncated")
    first = next(g for g in doc["groups"] if "point.x=1.0" in g["overrides"])
    assert first["size"] == len(SEEDS) and first["failed"] == 1 and first["results"]["dz/dx"]["n"] == len(SEEDS) - 1
    assert rerun.main([str(copy)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("  #0 experiment=seed_persistent seed=0 point.x=1.0: cannot rerun: bad run log: ")
    assert "truncated" in lines[1] and lines[-1] == "5 of 6 jobs reproduced, 1 not"


@pytest.mark.slow
def test_a_reader_that_closes_the_pipe_gets_no_traceback(runs, tmp_path):
    # `python -m runner.report | head -1` on a listing longer than a pipe holds (64 KiB): the
    # report is still writing when head leaves
    many = tmp_path / "many"
    one = next(p for p in runs.iterdir() if (p / "results.json").is_file())
    for i in range(700):
        shutil.copytree(one, many / f"run{i:03d}")
    head = subprocess.run(
        f"{sys.executable} -m runner.report {many} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert head.stdout.startswith("date"), head.stdout
    assert "Traceback" not in head.stderr and "BrokenPipeError" not in head.stderr, head.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target", ["x2", "."], ids=["a run", "a folder of runs"])
def test_over_on_anything_but_a_sweep_is_refused(runs, capsys, target):
    """`--over` groups a sweep's jobs: on a run or a listing it would be ignored, so it is refused."""
    with pytest.raises(SystemExit) as stop:
        report.main([str(runs / target), "--over", "seed"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--over groups a sweep's jobs" in err and "is no sweep folder" in err
    with pytest.raises(SystemExit) as stop:
        report.main(["--diff", str(runs / "x2"), str(runs / "x3"), "--over", "seed"])
    assert stop.value.code == 2
