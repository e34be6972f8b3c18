"""`runner.rerun` reproduces logged runs; `runner.report` lists and shows them.

The runs are logged by the real command line (so they have Hydra's `.hydra/config.yaml`);
rerun and report then run in-process.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from runner import report, rerun
from runner.record import runlog
from tests.helpers import cli

GRID = [
    "experiment=seed_chain_rule",
    "point.x={linspace: [-2, 2, 41]}",
    "derivatives=[{target: z, sources: x}]",
    "log.max_inline_elements=10",
]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Two logged runs: the seed's persistent example, and a grid stored in arrays.npz."""
    cwd = tmp_path_factory.mktemp("logged")
    runs = {}
    for name, args in (("persistent", ["experiment=seed_persistent"]), ("grid", GRID)):
        proc = cli(args, cwd=cwd)
        assert proc.returncode == 0, proc.stderr
        runs[name] = Path(cwd / re.search(r"run folder: (.*)", proc.stdout).group(1))
    return cwd, runs


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("run", ["persistent", "grid"])
def test_rerun_of_a_logged_run_is_bit_identical(logged, capsys, run):
    folder = logged[1][run]
    assert rerun.main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("\nreproduced")
    verdicts = dict(re.findall(r"^  (\S+ \S+?)\s{2,}(\S.*)$", out, re.M))
    assert set(verdicts.values()) == {"identical"}
    if run == "grid":
        assert (
            json.loads((folder / runlog.RESULTS_FILE).read_text())["values"]["x"]["array"]["file"] == runlog.ARRAYS_FILE
        )
        assert verdicts["gradient dz/dx"] == "identical"
    else:
        assert verdicts["gradient dz/dx"] == "identical" and verdicts["value z"] == "identical"


@pytest.mark.slow
@pytest.mark.parametrize(
    "logged_value, options, code, verdict",
    [
        (108.00001, [], 1, r"MISMATCH \(largest \|difference\| 1e-05; rtol 0, atol 0\)"),
        (108.00001, ["--rtol", "1e-6"], 0, r"within tolerance \(largest \|difference\| 1e-05; rtol 1e-06, atol 0\)"),
        (109.0, ["--rtol", "1e-6"], 1, r"MISMATCH \(largest \|difference\| 1; rtol 1e-06, atol 0\)"),
    ],
    ids=["off-by-1e-5-exact", "off-by-1e-5-tolerated", "off-by-1"],
)
def test_rerun_reports_a_difference(logged, tmp_path, capsys, logged_value, options, code, verdict):
    folder = copy_run(logged[1]["persistent"], tmp_path / "run")
    rec = json.loads((folder / runlog.RESULTS_FILE).read_text())
    rec["derivatives"][1]["value"] = logged_value  # dz/dx, really 108.0
    (folder / runlog.RESULTS_FILE).write_text(json.dumps(rec))
    assert rerun.main([str(folder), *options]) == code
    out = capsys.readouterr().out
    assert re.search(r"gradient dz/dx\s+" + verdict, out), out
    assert re.search(r"gradient dy/dx\s+identical", out)


def test_rerun_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert rerun.main([str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_report_lists_runs_and_shows_one(logged):
    cwd, runs = logged
    text = report.listing(cwd / "outputs")
    assert re.search(
        r"run\s+seed_persistent\s+experiment=seed_persistent\s+ok \(as declared\)\s+dy/dx = 6\.0, dz/dx = 108\.0", text
    )
    overrides = re.escape(" ".join(GRID))  # each run's overrides, as typed
    assert re.search(rf"run\s+seed_chain_rule\s+{overrides}\s+ok \(as declared\)\s+dz/dx = array\(shape=\[41\]", text)
    assert "2 runs, 0 sweeps" in text
    detail = report.run_detail(runs["persistent"])
    for expected in (
        "gradient  dz/dx = 108.0",
        "overrides:  experiment=seed_persistent",
        "seed:       0, op determinism on",
        "results.json",
        "python -m runner.rerun",
    ):
        assert expected in detail


def test_report_of_an_empty_folder(tmp_path):
    assert report.listing(tmp_path) == f"no runs under {tmp_path}"


@pytest.mark.parametrize("module", ["runner.report", "runner.rerun", "runner.record.log_reader"])
def test_what_a_docstring_names_exists(module):
    """`runner.x.y` in a module's docstring is a module, or a name in one."""
    import importlib

    named = set(re.findall(r"`(runner(?:\.\w+)+)", importlib.import_module(module).__doc__ or ""))
    assert named, module
    for name in named:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                found = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                found = getattr(found, attr)
            break
        else:
            raise AssertionError(f"{module} names {name}, which does not exist")
