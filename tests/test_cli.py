"""What users type: the command line end to end, in subprocesses (each pays TF's import)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli

pytestmark = pytest.mark.slow


def results(cwd: Path):
    found = sorted(cwd.glob("outputs/*/*/results.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


SEED = [
    ("seed_cubic", ["dy/dx = 75.0"], 0),
    ("seed_chain_rule", ["dz/dx = 108.0"], 0),
    ("seed_non_persistent", ["dy/dx = 6.0", "error: RuntimeError at dz/dx", "status: error (as declared)"], 0),
    ("seed_persistent", ["dy/dx = 6.0", "dz/dx = 108.0"], 0),
]


@pytest.mark.parametrize("experiment, lines, code", SEED, ids=[s[0] for s in SEED])
def test_seed_experiments_from_the_command_line(tmp_path, experiment, lines, code):
    proc = cli([f"experiment={experiment}"], cwd=tmp_path)
    assert proc.returncode == code, proc.stderr
    for line in lines:
        assert line in proc.stdout
    assert proc.stderr.strip() == "", "TensorFlow's start-up noise is hidden"
    log = results(tmp_path)
    assert log["experiment"] == experiment
    assert f"run folder: {tmp_path}/outputs/" in proc.stdout


def test_default_run_prints_75_and_leaves_results(tmp_path):
    proc = cli([], cwd=tmp_path)
    assert proc.returncode == 0
    assert "gradient  dy/dx = 75.0" in proc.stdout
    assert results(tmp_path)["derivatives"][0]["value"] == 75.0


def test_undeclared_error_exits_non_zero(tmp_path):
    proc = cli(["experiment=seed_non_persistent", "expect.error=null"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "NOT met: unexpected RuntimeError" in proc.stdout


def imported_tensorflow(proc) -> bool:
    return any(line.split("|")[-1].strip() == "tensorflow" for line in proc.stderr.splitlines())


@pytest.mark.parametrize("flags", [["--help"], ["--cfg", "job"], ["--info"]], ids=["help", "cfg", "info"])
def test_hydra_flags_work_without_tensorflow(tmp_path, flags):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", *flags],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not imported_tensorflow(proc)
    assert not (tmp_path / "outputs").exists()


def test_config_error_is_one_line_exit_2_without_tensorflow(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "runner", "experiment=seed_chain_rule", "function.steps.z=y * q"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    messages = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert messages[0] == "config error: function.steps.z: unknown name 'q'; known here: x, y (column 5)"
    assert "Traceback" not in proc.stderr
    assert not imported_tensorflow(proc)
    log = results(tmp_path)
    assert log["status"] == "error" and log["expect"]["met"] is False


def test_config_dir_from_the_users_own_folder(tmp_path):
    own = tmp_path / "myconf" / "experiment"
    own.mkdir(parents=True)
    (own / "quartic.yaml").write_text(
        "# @package _global_\n"
        "function:\n  inputs: [x]\n  steps:\n    y: x ** 4\n"
        "point:\n  x: 2.0\n"
        "derivatives:\n  - {target: y, sources: x}\n"
        "expect:\n  derivatives: {dy/dx: 32.0}\n"
    )
    proc = cli(["--config-dir", str(tmp_path / "myconf"), "experiment=quartic"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dy/dx = 32.0" in proc.stdout
    assert list(results(tmp_path)["values"]) == ["x", "y"]


def test_non_editable_install_finds_its_configs_from_any_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    site = tmp_path / "site"
    wheel = next(wheels.glob("runner-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (site / "runner" / "conf" / "experiment" / "seed_chain_rule.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "experiment=seed_chain_rule"],
        cwd=elsewhere,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dz/dx = 108.0" in proc.stdout
    assert results(elsewhere)["derivatives"][0]["value"] == 108.0
