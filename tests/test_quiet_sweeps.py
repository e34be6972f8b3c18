"""What a sweep prints (`log.console: quiet | normal | verbose`) and what its summary.csv holds.

The sweeps run the real command line's entry point (`runner.cli.main`) in this process, under
the runner's launcher, so TensorFlow is imported once for all of them; one CLI subprocess test
(slow) checks the same console end to end. Expected numbers are analytic: seed_chain_rule
computes z = (x^2)^2, so dz/dx = 4 x^3.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
from pathlib import Path
from typing import List, Tuple

import pytest

from runner import cli, job
from runner.config import settings
from runner.errors import ConfigError
from runner.record import plots
from runner.sweep import summary
from tests.helpers import cli as run_cli
from tests.helpers import composed

SIX = ["experiment=seed_chain_rule", "point.x=1.0,2.0,3.0", "tape.persistent=true,false"]
JOB_LINE = re.compile(r"^\[(\d+)/(\d+)\] #(\d+) (.*?): (ok|FAILED)")


def sweep_in_process(args: List[str], folder: Path, capsys, monkeypatch) -> Tuple[int, List[str]]:
    """`python -m runner -m ARGS hydra.sweep.dir=FOLDER`, run by `runner.cli.main` in this
    process: (the exit code, the lines it printed on stdout and stderr)."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", ["runner", "-m", *args, f"hydra.sweep.dir={folder}"])
    monkeypatch.setattr(summary, "current_sweep_dir", None)
    monkeypatch.setattr(summary, "finished", False)
    monkeypatch.setattr(cli, "_exit_code", 0)
    if "absl.logging" in sys.modules:
        # Hydra reconfigures logging for every job (logging.config.dictConfig), which closes every
        # handler; absl's then closes its stream unless it is sys.stderr, and when TensorFlow was
        # imported by an earlier test, that stream is pytest's capture, not this test's capsys
        from absl import logging as absl_logging

        monkeypatch.setattr(absl_logging.get_absl_handler().python_handler, "stream", sys.__stderr__)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as done:
            cli.main()
    finally:
        GlobalHydra.instance().clear()
        for h in root.handlers:  # Hydra's console handler writes to this test's captured stream
            if h not in handlers:
                h.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    out = capsys.readouterr()
    return int(done.value.code or 0), (out.out + out.err).splitlines()


def job_lines(lines: List[str]) -> List[str]:
    return [line for line in lines if JOB_LINE.match(line)]


def table_lines(jobs: int) -> int:
    """The final table: its header, a row per job, the counts, the plot and the folder."""
    return 1 + jobs + 3


# ---------------------------------------------------------------- the console


def test_normal_sweep_prints_one_line_per_job_and_the_table(tmp_path, capsys, monkeypatch):
    code, lines = sweep_in_process(SIX, tmp_path / "sweep", capsys, monkeypatch)
    assert code == 0
    jobs = job_lines(lines)
    assert len(jobs) == 6 and len(lines) == 6 + table_lines(6), "\n".join(lines)
    assert lines[:6] == jobs  # the job lines first, then the table
    assert [JOB_LINE.match(j).groups()[:4] for j in jobs] == [
        (str(n + 1), "6", str(n), f"point.x={x} tape.persistent={p}")
        for n, (x, p) in enumerate((x, p) for x in ("1.0", "2.0", "3.0") for p in ("True", "False"))
    ]
    # the third job's line: its swept values, its outcome and its result, then the counts
    assert re.fullmatch(
        r"\[3/6\] #2 point\.x=2\.0 tape\.persistent=True: ok  dz/dx=32\.0 \| failed 0 \| [\d.]+ s elapsed, ~[\d.]+ s left",
        jobs[2],
    ), jobs[2]
    for n, x in enumerate((1.0, 1.0, 2.0, 2.0, 3.0, 3.0)):
        assert f"dz/dx={4 * x**3}" in jobs[n]
    printed = "\n".join(lines)
    for absent in ("run folder:", "#0 :", "[HYDRA]", "value     x", "status: ok"):
        assert absent not in printed
    assert lines[-3:] == [
        "sweep: 6 jobs, 0 failed",
        f"sweep plot: {tmp_path / 'sweep' / plots.SWEEP_PLOT}",
        f"sweep folder: {tmp_path / 'sweep'}",
    ]


def test_verbose_sweep_prints_each_jobs_table_and_hydras_lines(tmp_path, capsys, monkeypatch):
    args = ["experiment=seed_chain_rule", "point.x=1.0,2.0", "log.console=verbose"]
    code, lines = sweep_in_process(args, tmp_path / "sweep", capsys, monkeypatch)
    assert code == 0
    printed = "\n".join(lines)
    assert len(job_lines(lines)) == 2
    assert printed.count("run folder: ") == 2 and printed.count("status: ok (as declared)") == 2
    assert re.search(r"^  gradient  dz/dx = 32\.0", printed, re.M)
    assert "Launching 2 jobs locally" in printed
    assert re.search(r"#1 : experiment=seed_chain_rule point\.x=2\.0 log\.console=verbose$", printed, re.M)


def test_quiet_sweep_prints_only_the_table(tmp_path, capsys, monkeypatch):
    code, lines = sweep_in_process([*SIX, "log.console=quiet"], tmp_path / "sweep", capsys, monkeypatch)
    assert code == 0
    assert job_lines(lines) == []
    assert len(lines) == table_lines(6) and lines[0].split()[:2] == ["job", "overrides"]


@pytest.mark.parametrize("console, ok_lines", [("normal", 1), ("quiet", 0)])
def test_a_failed_job_says_failed_and_why_in_one_line(tmp_path, capsys, monkeypatch, console, ok_lines):
    # job 1 declares a RuntimeError that a persistent tape does not raise
    args = ["experiment=seed_non_persistent", "tape.persistent=false,true", f"log.console={console}"]
    code, lines = sweep_in_process(args, tmp_path / "sweep", capsys, monkeypatch)
    assert code == 1
    jobs = job_lines(lines)
    assert len(jobs) == ok_lines + 1 and len(lines) == len(jobs) + table_lines(2)  # the plot's line says why none
    assert jobs[-1].startswith(
        "[2/2] #1 tape.persistent=True: FAILED (exit 1): expected RuntimeError, got no error  dy/dx=6.0 dz/dx=108.0"
        " | failed 1 | "
    )
    if ok_lines:
        assert jobs[0].startswith("[1/2] #0 tape.persistent=False: ok (RuntimeError as declared)  dy/dx=6.0 | ")
    assert "sweep plot: none drawn, no swept key is a number in every job" in lines


def test_a_refused_job_says_its_config_error_in_one_line(tmp_path, capsys, monkeypatch):
    code, lines = sweep_in_process(
        ["experiment=seed_cubic", "point.x=2.0,oops"], tmp_path / "sweep", capsys, monkeypatch
    )
    assert code == 1
    jobs = job_lines(lines)
    assert [j.split(" | ")[0] for j in jobs] == [
        "[1/2] #0 point.x=2.0: ok  dy/dx=12.0",
        "[2/2] #1 point.x=oops: FAILED (exit 2): config error: point.x: expected a number, a nested list or a"
        " generator, got str",
    ]
    assert not any(line.startswith("config error") for line in lines)  # said once, in the job's line


def test_single_runs_print_as_log_console_says(tmp_path, capsys):
    for console, want in (("normal", "table"), ("verbose", "table"), ("quiet", "status")):
        code = job.run(composed(["experiment=seed_cubic", "point.x=2.0", f"log.console={console}"]), tmp_path / console)
        out = capsys.readouterr().out
        assert code == 0
        if want == "status":
            assert out == "status: ok (as declared)\n"
        else:
            assert "  gradient  dy/dx = 12.0" in out and f"run folder: {tmp_path / console}" in out


@pytest.mark.parametrize("value", ["loud", 1, None, ["quiet"]])
def test_log_console_must_be_one_of_three(value):
    """(Hydra refuses the same on the command line: test_the_command_line_prints_the_same_console.)"""
    with pytest.raises(ConfigError) as refused:
        settings.build({"log": {"console": value}})
    assert refused.value.key == "log.console" and "quiet, normal, verbose" in str(refused.value)


@pytest.mark.slow
def test_the_command_line_prints_the_same_console(tmp_path):
    proc = run_cli(["-m", *SIX, "hydra.sweep.dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert len(job_lines(lines)) == 6 and len(lines) == 6 + table_lines(6), lines
    bad = run_cli(["experiment=seed_cubic", "log.console=loud"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "config error: log.console: Invalid value 'loud', expected one of [quiet, normal, verbose]\n"


def test_log_console_is_not_part_of_the_digest_resume_compares():
    from runner.sweep import resume

    digests = {
        resume.config_digest(composed(["experiment=seed_cubic", f"log.console={c}"])) for c in ("quiet", "verbose")
    }
    assert len(digests) == 1


# ---------------------------------------------------------------- summary.csv and the plot


def test_summary_csv_has_a_column_per_swept_key(tmp_path, capsys, monkeypatch):
    sweep_dir = tmp_path / "sweep"
    sweep_in_process(SIX, sweep_dir, capsys, monkeypatch)
    with open(sweep_dir / summary.SUMMARY_CSV, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == [
        "job",
        "overrides",
        "point.x",
        "tape.persistent",
        "status",
        "met",
        "resumed",
        "dz/dx",
        "check:dz/dx",
        "error",
        "mismatches",
        "duration_s",
    ]
    assert [(r["point.x"], r["tape.persistent"], float(r["dz/dx"])) for r in rows] == [
        (x, p, 4 * float(x) ** 3) for x in ("1.0", "2.0", "3.0") for p in ("True", "False")
    ]
    assert rows[2]["overrides"] == "experiment=seed_chain_rule point.x=2.0 tape.persistent=True"  # kept whole
    assert not any(cell.startswith(("{", "[")) for r in rows for cell in r.values())


TWO_SOURCES = """\
# @package _global_
function:
  inputs: [x, y]
  steps:
    f: x ** 2 * y
point: {x: 1.0, y: 3.0}
tape: {persistent: true}
derivatives:
  - {target: f, sources: [x, y]}
  - {target: f, sources: [x, y], kind: hessian, unconnected: zero}
  - {target: f, sources: [x], name: grid_part, kind: jacobian}
"""


def test_several_sources_give_a_column_and_a_panel_per_component(tmp_path, capsys, monkeypatch):
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "two_sources.yaml").write_text(TWO_SOURCES)
    sweep_dir = tmp_path / "sweep"
    args = [f"--config-dir={tmp_path / 'conf'}", "experiment=two_sources", "point.x=1.0,2.0"]
    code, lines = sweep_in_process(args, sweep_dir, capsys, monkeypatch)
    assert code == 0, lines
    with open(sweep_dir / summary.SUMMARY_CSV, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    parts = ["df/d(x,y)[x]", "df/d(x,y)[y]", *[f"hessian(f; x, y)[{a},{b}]" for a in "xy" for b in "xy"]]
    assert reader.fieldnames[2:4] == ["point.x", "status"]
    assert [n for n in reader.fieldnames if n.startswith(("df/", "hessian(", "grid_part"))] == [*parts, "grid_part"]
    y = 3.0
    for r, x in zip(rows, (1.0, 2.0)):  # f = x^2 y: df = (2xy, x^2), its Hessian [[2y, 2x], [2x, 0]]
        want = [2 * x * y, x**2, 2 * y, 2 * x, 2 * x, 0.0, 2 * x * y]
        assert [float(r[n]) for n in [*parts, "grid_part"]] == want
    # summary.json keeps the full values
    json_rows = summary.collect(sweep_dir)
    assert json_rows[1]["derivatives"]["hessian(f; x, y)"] == {"x": {"x": 6.0, "y": 4.0}, "y": {"x": 4.0, "y": 0.0}}
    # the job line shows the parts too, and the plot has a panel per part
    assert "df/d(x,y)[x]=12.0 df/d(x,y)[y]=4.0" in job_lines(lines)[1]
    fig, why = plots.sweep_figure("sweep", [{**r, "derivatives": summary.flat(r)} for r in json_rows])
    assert why == "" and [ax.get_ylabel() for ax in fig.get_axes()] == [*parts, "grid_part"]
    assert f"sweep plot: {sweep_dir / plots.SWEEP_PLOT}" in lines


def test_no_sweep_plot_says_why_in_one_line(tmp_path, capsys, monkeypatch):
    # a derivative over a grid in each job: more elements than columns, no scalar part to plot
    args = ["experiment=grid", "seed=0,1", "point.x={grid:{linspace:[0.0,3.0,20]}}"]
    code, lines = sweep_in_process(args, tmp_path / "sweep", capsys, monkeypatch)
    said = [line for line in lines if line.startswith("sweep plot")]
    assert said == ["sweep plot: none drawn, no derivative has a scalar value (arrays are in summary.json)"], lines
    rows = summary.collect(tmp_path / "sweep")
    assert plots.sweep_figure("s", [{**r, "derivatives": {}} for r in rows])[0] is None
    assert code == 0
