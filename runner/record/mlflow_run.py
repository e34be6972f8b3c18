"""A job's run in MLflow (`log.mlflow`), logged after its `results.json` is complete.

A single run is a run of its own in the experiment named by `log.mlflow_experiment`, else
$MLFLOW_EXPERIMENT_NAME, else the runner's experiment; a job of a sweep is a child of the
sweep's parent run, in the parent's experiment (runner/sweep/mlflow_sweep.py). What goes in:
runner/record/mlflow_content.py. The outcome goes back into the run log as `tracking.mlflow`:
the store, experiment and run ids, or the warning that says why nothing was logged (also
one of the log's `warnings`, and said once on stderr). The job's outcome and exit code
never depend on it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, Union

from runner.record import mlflow_content


@dataclass(frozen=True)
class JobContext:
    """Where a job sits: its overrides, and for a job of a sweep its sweep folder and number."""

    overrides: Tuple[str, ...] = ()
    sweep_dir: Optional[Path] = None
    job_num: Optional[int] = None
    # the folder the command ran in: MLflow's default store and a relative URI are found
    # from there, where the sweep's parent found them, even when `hydra.job.chdir=true`
    cwd: Optional[Path] = None


def log_job(
    record: Mapping[str, Any],
    cfg: Mapping[str, Any],
    output_dir: Path,
    setting: Union[bool, str],
    experiment: Optional[str],
    context: JobContext,
) -> Dict[str, Any]:
    """Log one finished job (its run log `record`, complete on disk); return `tracking.mlflow`."""
    from runner.record import mlflow_store
    from runner.sweep import mlflow_sweep

    t0 = time.perf_counter()
    out: Dict[str, Any] = {"uri": mlflow_store.uri_of(setting)}
    with _working_folder(context.cwd):  # MLflow finds `true` and relative URIs from there
        state = mlflow_sweep.read_state(context.sweep_dir) if context.sweep_dir is not None else {}
        try:
            store = mlflow_store.Store(mlflow_store.uri_of(setting))
            out["uri"] = store.uri
            # the sweep's parent only in the store this job names (`-m log.mlflow=A,B` over a
            # file's C, or an mlflow.json planted in a resumed folder, name another)
            if state.get("uri") != mlflow_store.absolute(store.uri):
                state = {}
            if state.get("error"):  # said once when the sweep started; each job's log says it too
                out["warning"] = f"not logged to MLflow: {state['error']} (when the sweep started)"
                return out
            parent = state.get("parent_run_id")
            if parent:
                eid, out["parent_run_id"] = str(state["experiment_id"]), parent
            else:
                eid = store.experiment_id(mlflow_sweep.experiment_name(experiment, str(record.get("experiment"))))
            tags = mlflow_content.tags(record, output_dir, context.overrides)
            tags["runner.kind"] = "job" if context.sweep_dir is not None else "run"
            if context.sweep_dir is not None:
                tags["runner.sweep_dir"] = str(context.sweep_dir.resolve())
            if context.job_num is not None:
                tags["runner.job_num"] = str(context.job_num)
            name = str(record.get("experiment")) + (f" #{context.job_num}" if context.job_num is not None else "")
            started = (record.get("timing") or {}).get("started")
            run_id = store.start_run(eid, name, tags, parent=parent, started=started)
            out.update(experiment_id=eid, run_id=run_id)
            try:
                store.log(
                    run_id,
                    params=mlflow_content.params(cfg, context.overrides),
                    metrics=mlflow_content.metrics(record),
                    files=mlflow_content.artifacts(output_dir),
                )
            except BaseException as err:  # the run is not left RUNNING: FAILED, or KILLED by a signal
                with contextlib.suppress(mlflow_store.TrackingError):
                    store.end_run(run_id, ok=False, status=None if isinstance(err, Exception) else "KILLED")
                raise
            store.end_run(run_id, ok=bool((record.get("expect") or {}).get("met")))
        except mlflow_store.TrackingError as err:
            out["warning"] = f"not logged to MLflow: {err}"
            mlflow_sweep.warn(f"{err}; the run's own log in {output_dir} is whole")
    out["seconds"] = time.perf_counter() - t0
    return out


@contextlib.contextmanager
def _working_folder(folder: Optional[Path]) -> Iterator[None]:
    here = os.getcwd()
    if folder is None or os.path.realpath(folder) == os.path.realpath(here):
        yield
        return
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)
