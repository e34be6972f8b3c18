"""A run over a 1-D grid draws `plot.png` (runner/record/plots.py): its steps, its derivatives
with each check's reference dashed over them, and an error panel (|TF - reference| against the
tolerance the check allowed, the failing elements in red), so a person sees where the tape and
the reference part. Real runs in-process; the figure is rebuilt from the run log with
`plots.run_figure` and must be the very image the job wrote."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest

from runner import job
from runner.record import plots
from runner.rerun import load_value

PANEL_HEIGHT_PX = {2: 640, 3: 920}  # (0.8 + 2.8 inches a panel) at 100 dpi


def _run(tmp_path, steps, point, verify="auto", inputs=None, sources="x"):
    """Run one job (plots on); return (its log, its folder, the figure rebuilt from the log,
    the Python warnings the job raised)."""
    inputs = inputs or {"x": {"dtype": "float32"}}
    cfg = {
        "function": {"inputs": inputs, "steps": steps},
        "point": point,
        "derivatives": [{"target": "y", "sources": sources}],
        "verify": verify,
        "log": {"tensorboard": False, "plots": True},
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        job.run(cfg, tmp_path, echo=False)
    log = json.loads((tmp_path / "results.json").read_text())
    assert log["artifacts"]["plot"] == plots.RUN_PLOT, log["artifacts"]
    values = {k: load_value(tmp_path, v) for k, v in log["values"].items()}
    derivatives = [(d["name"], load_value(tmp_path, d["value"])) for d in log["derivatives"]]
    checks = {
        d["name"]: {**d["check"], "reference": load_value(tmp_path, d["check"].get("reference"))}
        for d in log["derivatives"]
        if "check" in d
    }
    fig = plots.run_figure(log["experiment"], list(inputs), values, derivatives, checks)
    # the job drew this very figure: same pixels
    again = tmp_path / "again.png"
    fig.canvas.print_png(str(again))
    assert again.read_bytes() == (tmp_path / plots.RUN_PLOT).read_bytes()
    return (
        log,
        fig,
        [w for w in caught if "numpy" in w.filename or "matplotlib" in w.filename or "runner" in w.filename],
    )


def _png_height(path) -> int:
    return struct.unpack(">I", path.read_bytes()[20:24])[0]  # the IHDR chunk: width, height


def _panels(fig):
    return {ax.get_label(): ax for ax in fig.get_axes()}


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def _failing_x(ax):
    """The x of every red mark in the error panel (finite errors and NaN/inf ones)."""
    return np.sort(np.concatenate([ln.get_xdata() for lb, ln in _lines(ax).items() if " failing" in lb] or [[]]))


def test_a_passing_grid_run_draws_the_reference_and_the_error(tmp_path):
    log, fig, warned = _run(tmp_path, {"y": "sin(x) * x"}, {"x": {"linspace": [-3.0, 3.0, 61]}})
    check = log["derivatives"][0]["check"]
    assert check["outcome"] == "passed" and check["method"] == "symbolic", check
    assert not warned
    assert _png_height(tmp_path / plots.RUN_PLOT) == PANEL_HEIGHT_PX[3]
    panels = _panels(fig)
    assert list(panels) == ["steps", "derivatives", "error"]
    lines = _lines(panels["derivatives"])
    assert set(lines) == {"dy/dx: passed", "dy/dx reference (symbolic)"}
    x = np.asarray(load_value(tmp_path, log["values"]["x"]), dtype=np.float64)
    tf_value = np.asarray(load_value(tmp_path, log["derivatives"][0]["value"]), dtype=np.float64)
    exact = np.sin(x) + x * np.cos(x)  # the analytic derivative at the float32 grid points
    np.testing.assert_allclose(lines["dy/dx reference (symbolic)"].get_ydata(), exact, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(lines["dy/dx: passed"].get_ydata(), tf_value)

    errors = _lines(panels["error"])
    assert panels["error"].get_yscale() == "log"
    (err_label,) = [lb for lb in errors if lb.startswith("|dy/dx - reference|")]
    err = np.abs(tf_value - exact)
    drawn = errors[err_label].get_ydata()
    allowed = check["tolerance"]["atol"] + check["tolerance"]["rtol"] * np.abs(exact)
    moved = err > 1e-12  # where TF's float32 rounding shows
    np.testing.assert_allclose(drawn[moved], err[moved], rtol=1e-6)
    np.testing.assert_allclose(errors["dy/dx allowed"].get_ydata(), allowed, rtol=1e-9)
    if "0 drawn at" in err_label:  # an error of exactly 0 sits at the smallest positive value drawn
        floor = min(err[err > 0].min(), allowed.min())
        assert np.all(drawn[err == 0] == pytest.approx(floor))
    assert np.all(drawn <= errors["dy/dx allowed"].get_ydata())
    assert _failing_x(panels["error"]).size == 0


@pytest.mark.parametrize("verify", ["symbolic", "auto"])
def test_a_kink_on_the_grid_is_marked_where_it_is(tmp_path, verify):
    """checks_kinks over a grid: abs(x) through 0. TF's 0 at the kink is within the tolerance
    of the differences' 0, yet the check fails there (left slope -1, right slope 1): the mark
    is at x = 0 and nowhere else."""
    log, fig, warned = _run(tmp_path, {"y": "abs(x)"}, {"x": {"linspace": [-1.0, 1.0, 11]}}, verify=verify)
    check = log["derivatives"][0]["check"]
    assert check["outcome"] == "failed" and "non-differentiable" in check["reason"], check
    assert not warned
    panels = _panels(fig)
    assert list(panels) == ["steps", "derivatives", "error"]
    (tf_label,) = [lb for lb in _lines(panels["derivatives"]) if lb.startswith("dy/dx:")]
    assert tf_label.startswith("dy/dx: FAILED")
    np.testing.assert_array_equal(_failing_x(panels["error"]), [0.0])
    # and on TF's curve: its value at the kink, in red
    np.testing.assert_array_equal(_lines(panels["derivatives"])["_failing"].get_xydata(), [[0.0, 0.0]])


def test_verify_off_draws_no_reference_and_no_error_panel(tmp_path):
    log, fig, _ = _run(tmp_path, {"y": "sin(x) * x"}, {"x": {"linspace": [-3.0, 3.0, 61]}}, verify="off")
    assert "check" not in log["derivatives"][0]
    assert _png_height(tmp_path / plots.RUN_PLOT) == PANEL_HEIGHT_PX[2]
    panels = _panels(fig)
    assert list(panels) == ["steps", "derivatives"]
    assert list(_lines(panels["derivatives"])) == ["dy/dx"]  # as before checks were drawn


@pytest.mark.parametrize("step", ["sqrt(x)", "log(x)", "1 / x"])
def test_nan_and_inf_draw_without_a_warning(tmp_path, step):
    """NaN or inf on either side (sqrt, log of a negative x, 1/x at 0): gaps in the lines, a
    red cross along the top for a failing NaN/inf element, and no warning."""
    log, fig, warned = _run(tmp_path, {"y": step}, {"x": {"linspace": [-1.0, 1.0, 11]}})
    check = log["derivatives"][0]["check"]
    assert not warned, [str(w.message) for w in warned]
    tf_value = np.asarray(load_value(tmp_path, log["derivatives"][0]["value"]), dtype=np.float64)
    assert not np.isfinite(tf_value).all()
    panels = _panels(fig)
    assert list(panels) == ["steps", "derivatives", "error"]
    tf_line = next(ln for lb, ln in _lines(panels["derivatives"]).items() if lb.startswith("dy/dx:"))
    drawn = np.asarray(tf_line.get_ydata())
    assert np.array_equal(np.isnan(drawn), ~np.isfinite(tf_value))  # a gap, never an infinity
    # every element the check counts as disagreeing is marked, once
    assert _failing_x(panels["error"]).size == check["mismatched"]


def test_a_large_grid_marks_every_failing_element_the_thinning_skips(tmp_path):
    """exp(x) in float32 over 9,001 points up to 89: TF's exp overflows past 88.72, so its
    derivative is inf there where the float64 reference is finite. The lines are thinned to
    every other point, yet each of the 25 failing elements is drawn and marked. (Kept under
    log.max_inline_elements: a float32 array over it whose sum overflows breaks the run log,
    runlog.array_reference's mean.)"""
    n = 9_001
    log, fig, warned = _run(tmp_path, {"y": "exp(x)"}, {"x": {"linspace": [-10.0, 89.0, n]}})
    check = log["derivatives"][0]["check"]
    assert check["outcome"] == "failed", check
    assert not warned
    x = np.asarray(load_value(tmp_path, log["values"]["x"]), dtype=np.float64)
    tf_value = np.asarray(load_value(tmp_path, log["derivatives"][0]["value"]), dtype=np.float64)
    broken = np.flatnonzero(~np.isfinite(tf_value))  # where TF's own derivative overflows
    stride = n // plots.MAX_PLOTTED_POINTS
    assert 0 < broken.size < plots.MAX_PLOTTED_POINTS and np.any(broken % stride)  # most are off the stride
    assert check["mismatched"] == broken.size
    panels = _panels(fig)
    np.testing.assert_array_equal(_failing_x(panels["error"]), x[broken])
    tf_line = next(ln for lb, ln in _lines(panels["derivatives"]).items() if lb.startswith("dy/dx:"))
    assert np.isin(x[broken], tf_line.get_xdata()).all()  # the line passes through them too
    assert len(tf_line.get_xdata()) == np.union1d(np.arange(0, n, stride), broken).size


def test_several_sources_draw_each_grid_part(tmp_path):
    """dy/d(x, w) with x a grid and w a scalar: the x part is drawn with its reference and error."""
    inputs = {"x": {"dtype": "float32"}, "w": {"dtype": "float32"}}
    point = {"x": {"linspace": [-1.0, 1.0, 21]}, "w": 2.0}
    log, fig, warned = _run(tmp_path, {"y": "sin(x) * w"}, point, inputs=inputs, sources=["x", "w"])
    assert log["derivatives"][0]["check"]["outcome"] == "passed"
    assert not warned
    panels = _panels(fig)
    name = log["derivatives"][0]["name"]
    lines = _lines(panels["derivatives"])
    assert set(lines) == {f"{name} [x]: passed", f"{name} [x] reference (symbolic)"}
    x = np.asarray(load_value(tmp_path, log["values"]["x"]), dtype=np.float64)
    np.testing.assert_allclose(lines[f"{name} [x] reference (symbolic)"].get_ydata(), 2.0 * np.cos(x), rtol=1e-12)
    assert any(lb.startswith(f"|{name} [x] - reference|") for lb in _lines(panels["error"]))
