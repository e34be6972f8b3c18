"""Plots: a run over a grid (`plot.png`), a sweep's derivatives against its parameter.

Matplotlib is imported here only, and this module only when a plot is due, so a job that
has nothing to plot pays nothing. The figures use the Agg canvas directly (no pyplot, no
global backend), which is safe in worker processes and on machines without a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

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


MAX_PLOTTED_POINTS = 4000  # evenly spaced along the grid


def run_plot(
    folder: Path, title: str, inputs: Sequence[str], values: Dict[str, Any], derivatives: List[Tuple[str, Any]]
) -> Optional[str]:
    """For a run over a 1-D grid: the steps (top) and the derivatives (bottom) against it.

    Returns the file name, or None when the run is not over a grid (nothing is imported).
    """
    x_name = grid_input(inputs, values)
    if x_name is None:
        return None
    x = np.asarray(values[x_name], dtype=np.float64)
    steps = [(n, v) for n, v in values.items() if n not in inputs and np.shape(v) == x.shape]
    curves = []
    for name, v in derivatives:
        for label, part in v.items() if isinstance(v, dict) else [(None, v)]:
            if part is not None and np.shape(part) == x.shape:
                curves.append((name if label is None else f"{name} [{label}]", part))
    if not steps and not curves:
        return None
    fig, canvas = _figure(2 if steps and curves else 1, (6.4, 6.4 if steps and curves else 3.6))
    axes = fig.get_axes()
    order = np.argsort(x, kind="stable")
    # a line of more points than the image has pixels only costs time (1.7 s at 10^6)
    order = order[:: max(1, order.size // MAX_PLOTTED_POINTS)]
    for ax, (rows, ylabel) in zip(axes, [r for r in ((steps, "value"), (curves, "derivative")) if r[0]]):
        for name, v in rows:
            ax.plot(x[order], np.asarray(v, dtype=np.float64)[order], label=name)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    axes[-1].set_xlabel(x_name)
    axes[0].set_title(title)
    canvas.print_png(str(folder / RUN_PLOT))
    return RUN_PLOT


def sweep_plot(sweep_dir: Path, rows: List[Dict[str, Any]]) -> Optional[str]:
    """Each scalar derivative against the swept numeric parameter, one panel per derivative.

    The x axis is the first override that varies across jobs and is numeric in every job;
    other varying overrides give one line each. None when there is no such parameter.
    """
    params = [parse_overrides(r["overrides"]) for r in rows]
    varying = [k for k in dict.fromkeys(k for p in params for k in p) if len({repr(p.get(k)) for p in params}) > 1]
    numeric = [
        k for k in varying if all(isinstance(p.get(k), (int, float)) and not isinstance(p.get(k), bool) for p in params)
    ]
    if not numeric:
        return None
    x_key = numeric[0]
    others = [k for k in varying if k != x_key]
    names = [n for n in dict.fromkeys(n for r in rows for n in r["derivatives"]) if _scalar_rows(rows, n)]
    if not names:
        return None
    fig, canvas = _figure(len(names), (6.4, 2.8 * len(names)))
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
    fig.get_axes()[0].set_title(f"sweep {sweep_dir.name}: derivatives against {x_key}")
    canvas.print_png(str(sweep_dir / SWEEP_PLOT))
    return SWEEP_PLOT


def _figure(panels: int, size: Tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    canvas = FigureCanvasAgg(fig)
    for i in range(panels):
        fig.add_subplot(panels, 1, i + 1)
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
