"""A sweep in MLflow (`log.mlflow`): one parent run, one nested child run per job.

The parent is made (or, for a resumed sweep, reopened) when the sweep starts, in the
process that launches the jobs (`SweepSummary.on_multirun_start`), and noted in the sweep
folder's `mlflow.json`: the store's absolute URI, the experiment, the parent's run id. Each
job, in whatever process or machine its launcher runs it (in-process, joblib, submitit,
SLURM), reads that file and logs its child there (runner/record/mlflow_run.py); nothing
depends on MLflow's per-process active run, which a forked worker does not inherit. When
the sweep ends (`summary.finish`, on every path: normal end, a job that raised, a
signal) the parent gets the summary's files and ends FINISHED, or FAILED when a job did
not complete as declared.

When the store cannot be reached at the start, that is said once, `mlflow.json` records the
error, and the jobs log nothing to MLflow (each job's log says why) instead of each waiting
for the store in turn. The local logs are whole either way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from runner.record import runlog

STATE_FILE = "mlflow.json"
_STATE_LIMIT = 1 << 16


def setting(config: Any) -> Any:
    """`log.mlflow` of a (primary) config: None, True, False or a URI."""
    from omegaconf import OmegaConf

    return OmegaConf.select(config, "log.mlflow", default=None)


def experiment_name(explicit: Optional[str], runner_name: Optional[str]) -> str:
    """`log.mlflow_experiment`, else $MLFLOW_EXPERIMENT_NAME, else the runner's experiment."""
    return explicit or os.environ.get("MLFLOW_EXPERIMENT_NAME") or runner_name or "runner"


def start(config: Any, sweep_dir: Path) -> None:
    """Make or reopen the sweep's parent run and note it in `mlflow.json` (see above)."""
    from omegaconf import OmegaConf

    from runner.config.settings import tracking_uri
    from runner.errors import ConfigError
    from runner.record import mlflow_store

    try:  # `log.mlflow=ftp://x` or `42`: each job refuses it (exit 2); no store is touched here
        value = tracking_uri(setting(config))
    except ConfigError:
        return
    if value is None:
        return
    from runner.sweep import progress

    swept = progress.swept_keys(config) or []
    runner_name = None if {"name", "experiment"} & set(swept) else (config.get("name") or _choice(config))
    name = experiment_name(OmegaConf.select(config, "log.mlflow_experiment", default=None), runner_name)
    overrides = [str(o) for o in OmegaConf.select(config, "hydra.overrides.task", default=[]) or []]
    state: Dict[str, Any] = {"uri": mlflow_store.uri_of(value)}
    try:
        store = mlflow_store.Store(mlflow_store.uri_of(value))
        state["uri"] = mlflow_store.absolute(store.uri)  # the jobs' working folders may differ
        before = read_state(sweep_dir)
        if before.get("parent_run_id") and before.get("uri") == state["uri"] and store.reopen(before["parent_run_id"]):
            state.update({k: before[k] for k in ("experiment", "experiment_id", "parent_run_id")})
            state["resumed"] = True
        else:
            eid = store.experiment_id(name)
            tags = {
                "runner.kind": "sweep",
                "runner.sweep_dir": str(sweep_dir.resolve()),
                "runner.overrides": " ".join(overrides),
            }
            from runner.record import mlflow_content

            parent = store.start_run(eid, f"sweep {sweep_dir.name}", {**tags, **_version_tags()})
            try:
                store.log(parent, params=mlflow_content.params({}, overrides))
            except mlflow_store.TrackingError:
                store.end_run(parent, ok=False)  # not left RUNNING, with no mlflow.json naming it
                raise
            state.update(experiment=name, experiment_id=eid, parent_run_id=parent)
    except mlflow_store.TrackingError as err:
        state["error"] = str(err)
        warn(f"{err}; the sweep's own logs in {sweep_dir} are whole")
    write_state(sweep_dir, state)


def _choice(config: Any) -> Optional[str]:
    from omegaconf import OmegaConf

    choice = OmegaConf.select(config, "hydra.runtime.choices.experiment", default=None)
    return str(choice) if choice else None


def _version_tags() -> Dict[str, str]:
    import runner

    return {"runner.version": runner.__version__}


# set by runner.cli when a signal stopped the sweep: the parent ends KILLED, not FINISHED
interrupted = False


def end(sweep_dir: Path, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> None:
    """The parent gets the summary's files (`names` in the sweep folder) and ends (FAILED
    if a job failed, KILLED if a signal stopped the sweep). A failure of the store is said
    once; the summary on disk is whole."""
    state = read_state(sweep_dir)
    parent = state.get("parent_run_id")
    if not parent:
        return
    from runner.record import mlflow_store

    failed = sum(1 for r in rows if not r.get("met"))
    files = [(sweep_dir / n, "") for n in names if (sweep_dir / n).is_file() and not (sweep_dir / n).is_symlink()]
    try:
        store = mlflow_store.Store(state.get("uri"))
        store.log(parent, metrics={"jobs": float(len(rows)), "jobs_failed": float(failed)}, files=files)
        if interrupted:  # a job cut between its run's creation and its end leaves it RUNNING
            running = f"tags.`{mlflow_store.PARENT_TAG}` = '{parent}' and attributes.status = 'RUNNING'"
            for run in store.runs([str(state.get("experiment_id"))], running):
                store.end_run(run.info.run_id, ok=False, status="KILLED")
        store.end_run(parent, ok=failed == 0, status="KILLED" if interrupted else None)
        print(f"mlflow run: {parent} (experiment {state.get('experiment_id')}) at {store.uri}", flush=True)
    except mlflow_store.TrackingError as err:
        warn(f"{err}; the sweep's summary in {sweep_dir} is whole")


def read_state(sweep_dir: Path) -> Dict[str, Any]:
    """`mlflow.json` of a sweep folder; {} when there is none or it is not one."""
    path = sweep_dir / STATE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        if not _regular_fd(fd):  # a FIFO or device planted under that name is not read
            return {}
        data = json.loads(os.read(fd, _STATE_LIMIT).decode())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)


def _regular_fd(fd: int) -> bool:
    import stat

    return stat.S_ISREG(os.fstat(fd).st_mode)


def write_state(sweep_dir: Path, state: Mapping[str, Any]) -> None:
    runlog.write_atomic(sweep_dir / STATE_FILE, (json.dumps(state, indent=2) + "\n").encode())


_said: set = set()


def warn(text: str) -> None:
    """Say a tracking failure on stderr, once per process and text."""
    if text not in _said:
        _said.add(text)
        print(f"warning: {text}", file=sys.stderr, flush=True)
