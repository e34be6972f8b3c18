"""The benchmark script works: its smoke version measures and prints all five figures.

Not a timed test: the figures of a smoke run (tiny sizes, one repeat) say nothing about
speed, and no bound is checked here. `python benchmarks/run.py` gives the real figures.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, command_env


@pytest.mark.slow
def test_benchmark_smoke_prints_all_five_figures(tmp_path):
    env = command_env()
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--json", str(tmp_path / "figures.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    for figure in (
        "B1 one cold run",
        "B2 sweep, marginal cost per job",
        "B3 grid of",
        "B4 peak memory",
        "B5 a callable job",
    ):
        assert any(line.startswith(figure) for line in lines), f"{figure!r} missing from:\n{res.stdout}"
    assert "machine: " in res.stdout and "x  (goal" in res.stdout
    figures = json.loads((tmp_path / "figures.json").read_text())["figures"]
    for section, keys in {
        "B1": ("runner_s", "baseline_s", "ratio"),
        "B2": ("runner_ms_per_job", "hydra_floor_ms_per_job", "loop_ms_per_job", "hydra_floor_over_runner"),
        "B3": ("runner_s", "tf_function_s", "ratio", "speedup_over_eager_loop"),
        "B4": ("runner_mb", "tf_function_mb", "ratio"),
        "B5": tuple(
            f"{measure}_{side}_{unit}"
            for measure, unit in (
                ("cold", "s"),
                ("cold", "cpu_s"),
                ("sweep", "ms_per_job"),
                ("sweep", "cpu_ms_per_job"),
            )
            for side in ("code_same_work", "steps_same_work", "code_defaults", "steps_defaults", "script")
        )
        + tuple(
            f"job_{side}_ms"
            for side in ("code_same_work", "steps_same_work", "code_defaults", "steps_defaults", "script")
        )
        + ("cold_code_same_work_ratio", "sweep_code_defaults_overhead_ms", "cold_same_work_met", "sweep_defaults_met"),
    }.items():
        for key in keys:
            assert isinstance(figures[section][key], float) and figures[section][key] == figures[section][key], (
                section,
                key,
            )
    assert figures["B4"]["runner_mb"] > 0 and figures["B1"]["runner_s"] > 0
    # B5's runner sides ran the callable and the steps (both gave dz/dx = 108 or the script
    # stops), cold and as sweeps, and said whether the goal was met for each measure and mode
    assert figures["B5"]["cold_code_defaults_s"] > 0 and figures["B5"]["cold_steps_defaults_s"] > 0
    assert sum(line.count("callable's overhead <= the steps' (goal): cold ") for line in lines) == 2
    assert any(line.startswith("   one job in one process") for line in lines)


@pytest.mark.slow
def test_mlflow_cost_smoke_measures_both_stores(tmp_path):
    # a real sqlite store and a real `mlflow server` over http on localhost, which the
    # script starts and stops; three repeats: the figures say nothing about speed
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "mlflow_cost.py"), "--smoke", "--json", str(tmp_path / "f.json")],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads((tmp_path / "f.json").read_text())["figures"]
    for store in ("sqlite", "http"):
        for key in ("ms_per_job", "overhead_ms_per_job", "ratio", "log_job_ms", "parent_start_ms", "parent_end_ms"):
            assert isinstance(figures[f"{store}_{key}"], float), (store, key)
        # every tracked job was logged (the script stops otherwise) and took some time to log
        assert figures[f"{store}_log_job_ms"] > 0
        assert any(line.startswith(f"  {store} ") for line in res.stdout.splitlines()), res.stdout
    assert figures["none_ms_per_job"] > 0
