"""Plots: a run over a grid (`plot.png`), a sweep's derivatives against its parameter.

A run's plot overlays each derivative's check reference and, below, the error against the
tolerance the check allowed, with the elements where the check fails in red.

Matplotlib is imported here only, and this module only when a plot is due, so a job that
has nothing to plot pays nothing. The figures use the Agg canvas directly (no pyplot, no
global backend), which is safe in worker processes and on machines without a display.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from runner.config.overrides import parse_overrides

RUN_PLOT = "plot.png"
SWEEP_PLOT = "sweep_plot.png"


def grid_input(inputs: Sequence[str], values: Dict[str, Any]) -> Optional[str]:
    """The one input that is a 1-D grid (several elements, every other input a scalar)."""
    grids = [n for n in inputs if np.ndim(values.get(n, 0)) == 1 and np.size(values[n]) > 1]
    scalars = [n for n in inputs if np.size(values.get(n, 0)) == 1]  # a missing value counts as a scalar
    if len(grids) == 1 and len(grids) + len(scalars) == len(inputs):
        return grids[0]
    return None


MAX_PLOTTED_POINTS = 4000  # evenly spaced along the grid (plus the elements a check failed at)
OUTCOME_WORDS = {"passed": "passed", "failed": "FAILED", "unverified": "unverified"}


@dataclasses.dataclass
class Curve:
    """One derivative (or one source's part of it) over the grid, and its check where there is one."""

    label: str  # "dy/dx", or "dy/d(x,w) [x]" for the part of source x
    value: np.ndarray  # TensorFlow's, in float64
    status: str = ""  # "passed", "FAILED: 3 / 41 elements disagree", "unverified"; "" unchecked
    method: str = ""  # of the reference: symbolic, finite_difference
    reference: Optional[np.ndarray] = None  # float64, the grid's shape
    error: Optional[np.ndarray] = None  # |TF - reference|
    allowed: Optional[np.ndarray] = None  # atol + rtol * |reference|
    failing: Optional[np.ndarray] = None  # where the check parts from TF: bool, the grid's shape


def run_plot(
    folder: Path,
    title: str,
    inputs: Sequence[str],
    values: Dict[str, Any],
    derivatives: List[Tuple[str, Any]],
    checks: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Optional[str]:
    """`run_figure` saved as `plot.png` in `folder`: the file name, or None (nothing to plot)."""
    fig = run_figure(title, inputs, values, derivatives, checks)
    if fig is None:
        return None
    fig.canvas.print_png(str(folder / RUN_PLOT))
    return RUN_PLOT


def run_figure(
    title: str,
    inputs: Sequence[str],
    values: Dict[str, Any],
    derivatives: List[Tuple[str, Any]],
    checks: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Any:
    """For a run over a 1-D grid: the steps (top), the derivatives with their references
    dashed (middle) and, where a check has a reference, the error |TF - reference| against
    what the check allowed, the failing elements in red (bottom, log scale). Each panel's
    Axes is labelled "steps", "derivatives", "error". None when the run is not over a grid.
    """
    x_name = grid_input(inputs, values)
    if x_name is None:
        return None
    x = np.asarray(values[x_name], dtype=np.float64)
    steps = [(n, v) for n, v in values.items() if n not in inputs and np.shape(v) == x.shape]
    curves = grid_curves(x_name, x.shape, derivatives, checks or {})
    judged = [c for c in curves if c.reference is not None]
    panels = [(label, rows) for label, rows in (("steps", steps), ("derivatives", curves), ("error", judged)) if rows]
    if not panels:
        return None
    fig, _ = _figure(len(panels), (6.4, 0.8 + 2.8 * len(panels)))
    axes = dict(zip((label for label, _ in panels), fig.get_axes()))
    order = np.argsort(x, kind="stable")
    # a line of more points than the image has pixels only costs time (1.7 s at 10^6)
    stride = max(1, order.size // MAX_PLOTTED_POINTS)
    plain = order[::stride]
    with np.errstate(all="ignore"):
        if "steps" in axes:
            for name, v in steps:
                axes["steps"].plot(x[plain], _finite(np.asarray(v, dtype=np.float64)[plain]), label=name)
        shown = [(c, _plotted(order, stride, c.failing)) for c in curves]
        for c, (at, bad) in shown:
            _draw_derivative(axes["derivatives"], x, c, at, bad)
        if "error" in axes:
            _draw_errors(axes["error"], x, [(c, at, bad) for c, (at, bad) in shown if c.reference is not None])
    for label, ax in axes.items():
        ax.set_label(label)
        ax.set_ylabel({"steps": "value", "derivatives": "derivative", "error": "error |TF - reference|"}[label])
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    finite = x[np.isfinite(x)]
    if finite.size and finite.min() < finite.max():  # the whole grid, where a derivative is NaN too
        fig.get_axes()[0].set_xlim(finite.min(), finite.max())
    fig.get_axes()[-1].set_xlabel(x_name)
    fig.get_axes()[0].set_title(title)
    return fig


def grid_curves(
    x_name: str, shape: Tuple[int, ...], derivatives: List[Tuple[str, Any]], checks: Mapping[str, Mapping[str, Any]]
) -> List[Curve]:
    """The derivatives (a mapping source -> value: each part) of the grid's shape, each with
    its check's reference, error and failing elements where the check has a reference."""
    curves = []
    for name, v in derivatives:
        for part, value in v.items() if isinstance(v, Mapping) else [(None, v)]:
            if value is None or np.shape(value) != shape:
                continue
            curve = Curve(name if part is None else f"{name} [{part}]", np.asarray(value, dtype=np.float64))
            if isinstance(checks.get(name), Mapping):
                _judge(curve, checks[name], part, x_name)
            curves.append(curve)
    return curves


def _judge(curve: Curve, rec: Mapping[str, Any], part: Optional[str], x_name: str) -> None:
    """The check's outcome on the curve; its reference, the error and the failing elements
    when it has a reference of the grid's shape and a tolerance, judged as compare judges."""
    outcome = rec.get("outcome") or ("passed" if rec.get("passed") else "failed")
    curve.status = OUTCOME_WORDS.get(outcome, str(outcome))
    ref, tol = rec.get("reference"), rec.get("tolerance")
    if part is not None:  # several sources: a reference and a tolerance per source
        ref = ref.get(part) if isinstance(ref, Mapping) else None
        tol = tol.get(part) if isinstance(tol, Mapping) else None
    if ref is None or np.shape(ref) != curve.value.shape or not isinstance(tol, Mapping):
        return
    if not all(isinstance(tol.get(k), (int, float)) for k in ("atol", "rtol")):
        return
    g, r = curve.value, np.asarray(ref, dtype=np.float64)
    with np.errstate(all="ignore"):
        err = np.abs(g - r)
        allowed = tol["atol"] + tol["rtol"] * np.abs(r)
        # agreeing: within the tolerance, or the same infinity on both sides, or both NaN
        failing = ~((np.isfinite(err) & (err <= allowed)) | (g == r) | (np.isnan(g) & np.isnan(r)))
    count = int(np.count_nonzero(failing))
    kinks = _kinks(str(rec.get("reason") or ""), x_name, g.size)
    failing[kinks] = True
    said = [f"{count} / {g.size} elements disagree"] if count else []
    said += [f"kink at {x_name}[{i}]" for i in kinks[:3]]
    if said and outcome == "failed":
        curve.status += ": " + ", ".join(said)
    curve.method = str(rec.get("method", ""))
    curve.reference, curve.error, curve.allowed, curve.failing = r, err, allowed, failing


def _kinks(reason: str, x_name: str, size: int) -> List[int]:
    """The grid elements a failed check names as non-differentiable points (compare's reason
    says "non-differentiable point at x[5]: ..."): a kink within the tolerance fails too."""
    found = re.findall(rf"non-differentiable point at {re.escape(x_name)}\[(\d+)\]", reason)
    return sorted({int(i) for i in found if int(i) < size})


def _plotted(order: np.ndarray, stride: int, failing: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(the elements a curve's lines are drawn through, in the grid's order; the failing
    elements marked). Every failing element is drawn even where the stride skips it, up to
    MAX_PLOTTED_POINTS of them (evenly spaced among them beyond that)."""
    keep = np.arange(0, order.size, stride)
    if failing is None or not failing.any():
        return order[keep], order[:0]
    bad = np.flatnonzero(failing[order])
    bad = bad[:: max(1, bad.size // MAX_PLOTTED_POINTS)]
    return order[np.union1d(keep, bad)], order[bad]


def _draw_derivative(ax: Any, x: np.ndarray, c: Curve, at: np.ndarray, bad: np.ndarray) -> None:
    label = f"{c.label}: {c.status}" if c.status else c.label
    if c.reference is None:
        ax.plot(x[at], _finite(c.value[at]), label=label)
    else:  # TF's line wide and pale, the reference dashed and dark over it: both seen where they agree
        ax.plot(x[at], _finite(c.value[at]), linewidth=3.5, alpha=0.55, label=label)
        ref = f"{c.label} reference ({c.method})"
        ax.plot(x[at], _finite(c.reference[at]), "--", color="black", linewidth=1.1, label=ref)
    if bad.size:  # TF's value where the check fails (a NaN or an infinity is marked in the error panel)
        ax.plot(x[bad], _finite(c.value[bad]), "o", color="red", markersize=4, label="_failing")


def _draw_errors(ax: Any, x: np.ndarray, rows: List[Tuple[Curve, np.ndarray, np.ndarray]]) -> None:
    """|TF - reference| on a log scale, the allowed error dotted, failing elements in red.
    An error of 0 is drawn at the smallest positive value on the panel (the legend says
    which); where either side is NaN or infinite there is no error to draw, and a failing
    element there is a red cross along the panel's top edge."""
    from matplotlib.ticker import LogFormatter, NullLocator

    ax.set_yscale("log")
    # "1e-08", not mathtext's 10^-8, and no minor ticks: they were most of this panel's time
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_locator(NullLocator())
    shown = []
    for c, at, bad in rows:
        err, allowed, failing = c.error, c.allowed, c.failing
        assert err is not None and allowed is not None and failing is not None  # judged curves only
        shown.append((c.label, err, allowed, failing, at, bad))
    positive = [a[np.isfinite(a) & (a > 0)] for _, e, al, _, at, _ in shown for a in (e[at], al[at])]
    floor = min((float(p.min()) for p in positive if p.size), default=None)
    if floor is None:  # nothing finite and positive to draw: a log axis needs limits given
        ax.set_ylim(1e-16, 1.0)
    for name, err, allowed, failing, at, bad in shown:
        zeros = bool(np.any(err[at] == 0))
        label = f"|{name} - reference|" + (f" (0 drawn at {floor:.1e})" if zeros and floor else "")
        (line,) = ax.plot(x[at], _at_least(err[at], floor), label=label)
        ax.plot(x[at], _at_least(allowed[at], floor), ":", color=line.get_color(), label=f"{name} allowed")
        if not bad.size:
            continue
        measured = np.isfinite(err)
        counts = [int(np.count_nonzero(failing & m)) for m in (measured, ~measured)]
        finite = measured[bad]
        if finite.any():
            ys = _at_least(err[bad[finite]], floor)
            ax.plot(x[bad[finite]], ys, "o", color="red", markersize=4, label=f"{name} failing ({counts[0]})")
        if not finite.all():  # NaN or inf on one side: along the top edge
            at_top = np.full(int(np.count_nonzero(~finite)), 0.95)
            label = f"{name} failing, NaN or inf ({counts[1]})"
            ax.plot(x[bad[~finite]], at_top, "x", color="red", transform=ax.get_xaxis_transform(), label=label)


def _finite(a: np.ndarray) -> np.ndarray:
    """NaN where `a` is not finite: a gap in the line (an infinity would stretch the axis)."""
    return np.where(np.isfinite(a), a, np.nan)


def _at_least(a: np.ndarray, floor: Optional[float]) -> np.ndarray:
    """`a` for a log axis: 0 at `floor`, what is not finite a gap."""
    out = _finite(a)
    return out if floor is None else np.where(out == 0, floor, out)


MAX_SWEEP_PANELS = 12


def sweep_plot(sweep_dir: Path, rows: List[Dict[str, Any]]) -> Tuple[Optional[str], str]:
    """`sweep_figure` saved as `sweep_plot.png` in `sweep_dir`: (the file name, "") or (None, why not)."""
    fig, why = sweep_figure(sweep_dir.name, rows)
    if fig is None:
        return None, why
    fig.canvas.print_png(str(sweep_dir / SWEEP_PLOT))
    return SWEEP_PLOT, ""


def sweep_figure(title: str, rows: List[Dict[str, Any]]) -> Tuple[Any, str]:
    """Each scalar derivative against the swept numeric parameter, one panel per derivative
    (per component: the summary passes a several-source request's parts as derivatives),
    its y axis labelled with the derivative's name.

    The x axis is the first override that varies across jobs and is numeric in every job;
    other varying overrides give one line each. Returns (the figure, "") or (None, why no
    plot can be drawn, in a few words).
    """
    params = [parse_overrides(r["overrides"]) for r in rows]
    varying = [k for k in dict.fromkeys(k for p in params for k in p) if len({repr(p.get(k)) for p in params}) > 1]
    numeric = [
        k for k in varying if all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool) for p in params)
    ]
    if not numeric:
        return None, "no swept key is a number in every job" if varying else "no key varies between jobs"
    x_key = numeric[0]
    others = [k for k in varying if k != x_key]
    names = [n for n in dict.fromkeys(n for r in rows for n in r["derivatives"]) if _scalar_rows(rows, n)]
    if not names:
        return None, "no derivative has a scalar value (arrays are in summary.json)"
    if len(names) > MAX_SWEEP_PANELS:
        return None, f"{len(names)} scalar results, more than {MAX_SWEEP_PANELS} panels (all are in summary.csv)"
    fig, _ = _figure(len(names), (6.4, 2.8 * len(names)))
    for ax, name in zip(fig.get_axes(), names):
        series: Dict[str, List[Tuple[float, float]]] = {}
        for p, r in zip(params, rows):
            y = _as_float(r["derivatives"].get(name))
            if y is None:
                continue
            label = ", ".join(f"{k}={p.get(k)}" for k in others) or name
            series.setdefault(label, []).append((float(p[x_key]), y))
        for label, pts in series.items():
            pts.sort()
            ax.plot([a for a, _ in pts], [b for _, b in pts], marker="o", label=label)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        if others:
            ax.legend(loc="best", fontsize="small")
    fig.get_axes()[-1].set_xlabel(x_key)
    fig.get_axes()[0].set_title(f"sweep {title}: derivatives against {x_key}")
    return fig, ""


def _figure(panels: int, size: Tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    canvas = FigureCanvasAgg(fig)
    first = fig.add_subplot(panels, 1, 1)
    for i in range(1, panels):  # one x axis: a panel whose values are NaN in part still spans the grid
        fig.add_subplot(panels, 1, i + 1, sharex=first)
    # fixed margins: tight_layout would cost a third of the plot's time (~90 ms)
    fig.subplots_adjust(left=0.13, right=0.97, top=1 - 0.45 / size[1], bottom=0.5 / size[1], hspace=0.3)
    return fig, canvas


def _as_float(v: Any) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    if isinstance(v, list) and np.size(v) == 1:
        return _as_float(np.asarray(v).ravel()[0].item())
    return None


def _scalar_rows(rows: List[Dict[str, Any]], name: str) -> bool:
    return any(_as_float(r["derivatives"].get(name)) is not None for r in rows)
