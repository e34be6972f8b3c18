"""The benchmark script works: its smoke version measures and prints all four figures.

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
def test_benchmark_smoke_prints_all_four_figures(tmp_path):
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
    for figure in ("B1 one cold run", "B2 sweep, marginal cost per job", "B3 grid of", "B4 peak memory"):
        assert any(line.startswith(figure) for line in lines), f"{figure!r} missing from:\n{res.stdout}"
    assert "machine: " in res.stdout and "x  (goal" in res.stdout
    figures = json.loads((tmp_path / "figures.json").read_text())["figures"]
    for section, keys in {
        "B1": ("runner_s", "baseline_s", "ratio"),
        "B2": ("runner_ms_per_job", "hydra_floor_ms_per_job", "loop_ms_per_job", "hydra_floor_over_runner"),
        "B3": ("runner_s", "tf_function_s", "ratio", "speedup_over_eager_loop"),
        "B4": ("runner_mb", "tf_function_mb", "ratio"),
    }.items():
        for key in keys:
            assert isinstance(figures[section][key], float) and figures[section][key] == figures[section][key], (
                section,
                key,
            )
    assert figures["B4"]["runner_mb"] > 0 and figures["B1"]["runner_s"] > 0
