"""What a job leaves beside `results.json` for people to look at: TensorBoard events, plots.

Both are optional (`log.tensorboard`, `log.plots`) and neither may fail a job: an error
while writing them is recorded in the run log under `artifacts` and the job goes on. Their
cost is measured per job and logged in `timing` (`tensorboard_s`, `plots_s`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from runner.config.overrides import overrides
from runner.config.settings import LogSettings


def write(
    folder: Path,
    log: LogSettings,
    spec: Any,
    outcome: Any,
    timing: Dict[str, float],
    checks: Optional[Mapping[str, Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """Write the enabled artifacts into `folder`; return what was written (or what failed).
    `checks`: each derivative's check record by name (the plot draws their references)."""
    made: Dict[str, Any] = {}
    folder.mkdir(parents=True, exist_ok=True)
    derivatives = [(d.request.name, d.value) for d in outcome.derivatives]
    if log.tensorboard:
        t0 = time.perf_counter()
        try:
            from runner.record import tensorboard_log

            made["tensorboard"] = tensorboard_log.write(folder, outcome.values, derivatives, overrides(folder))
        except Exception as err:  # e.g. tensorboard not installed: the job's numbers stand
            made["tensorboard"] = {"error": f"{type(err).__name__}: {err}"}
        timing["tensorboard_s"] = time.perf_counter() - t0
    if _plot_runs(log.plots):
        t0 = time.perf_counter()
        try:
            from runner.record import plots

            inputs = [i.name for i in spec.inputs]
            made["plot"] = plots.run_plot(folder, spec.name, inputs, outcome.values, derivatives, checks)
        except Exception as err:
            made["plot"] = {"error": f"{type(err).__name__}: {err}"}
        timing["plots_s"] = time.perf_counter() - t0
    return made


def _plot_runs(setting: Optional[bool]) -> bool:
    """`log.plots`: true, false, or null (plot single runs, not each job of a sweep)."""
    if setting is not None:
        return setting
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return not (HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN)
    except Exception:  # outside a Hydra app: a single run
        return True
