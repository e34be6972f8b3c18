"""The MLflow tracking store (`log.mlflow`): the only module that imports MLflow.

MLflow (`pip install -e ".[mlflow]"`) is imported on the first call here, so a run without
`log.mlflow` never pays its ~1 s import. Every call goes through `Store`, which turns any
failure (MLflow missing, the server unreachable, a database locked) into `TrackingError`,
one line; the caller records it as a warning and the job's outcome does not change.

Before the first request, and only where the user has not set them: MLflow's HTTP retries
are cut from 7 (about 4 minutes against an unreachable server) to 2 with a 1 s backoff
and a 10 s timeout, and its telemetry is off. MLflow's INFO lines (creating a database's
tables) and its warnings are kept off the console.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

# set only when unset: the user's values win (see the module's docstring)
ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # an int: MLflow refuses "0.5", failing every request
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}
PARENT_TAG = "mlflow.parentRunId"
_BATCH = 100  # MLflow takes at most 100 params (1,000 metrics) per log_batch


class TrackingError(Exception):
    """The tracking store failed: one line saying what, for the run log's warnings."""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's and its database layer's log lines and warnings stay off the console."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic", "sqlalchemy")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING if lg.name == "mlflow" else logging.ERROR)
    try:
        # and its "View run at http://..." lines, printed for each run ended on a server
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def failures(what: str) -> Iterator[None]:
    """Any error inside becomes a `TrackingError` saying `what` failed and why, in one line."""
    try:
        with _quiet():
            yield
    except TrackingError:
        raise
    except Exception as err:  # MlflowException, OSError, SQLAlchemy's, requests'...
        raise TrackingError(f"{what}: {type(err).__name__}: {_clipped(str(err))}") from err


def _clipped(message: str, width: int = 300) -> str:
    """An error's message on one line, cut after its last whole sentence within `width`."""
    text = " ".join(message.split())
    if len(text) <= width:
        return text
    end = text.rfind(". ", 0, width)
    return text[:end] if end > 0 else text[: width - 3] + "..."


def _client(uri: Optional[str]) -> Any:
    for name, value in ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow import MlflowClient
    except ImportError as err:
        raise TrackingError(f'MLflow is not installed (pip install -e ".[mlflow]"): {err}') from err
    # its import set its logger to INFO, under `_quiet` already: quiet it again, or the
    # first store's "Creating initial MLflow database tables..." reaches the console
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


class Store:
    """One tracking store: `uri` None is MLflow's default (MLFLOW_TRACKING_URI, else
    sqlite:///mlflow.db in the working folder), resolved to an absolute URI in `uri`."""

    def __init__(self, uri: Optional[str]):
        with failures("MLflow could not start"):
            self.client = _client(uri)
            self.uri: str = str(self.client.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The id of the experiment `name`, made if there is none (two processes racing to
        make it: the loser reads the winner's)."""
        with failures(f"MLflow experiment {name!r} at {self.uri}"):
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                return str(found.experiment_id)
            try:
                return str(self.client.create_experiment(name))
            except Exception:
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
                return str(found.experiment_id)

    def start_run(
        self,
        experiment_id: str,
        name: str,
        tags: Mapping[str, str],
        parent: Optional[str] = None,
        started: Optional[float] = None,
    ) -> str:
        with failures(f"MLflow run {name!r} at {self.uri}"):
            all_tags = {**tags, **({PARENT_TAG: parent} if parent else {})}
            start = int((started or time.time()) * 1000)
            run = self.client.create_run(experiment_id, start_time=start, tags=all_tags, run_name=name)
            return str(run.info.run_id)

    def log(
        self,
        run_id: str,
        params: Optional[Mapping[str, str]] = None,
        metrics: Optional[Mapping[str, float]] = None,
        tags: Optional[Mapping[str, str]] = None,
        files: Sequence[Tuple[Path, str]] = (),
    ) -> None:
        """Params, metrics and tags in as few requests as MLflow allows, then the files."""
        from mlflow.entities import Metric, Param, RunTag

        with failures(f"MLflow logging to run {run_id} at {self.uri}"):
            now = int(time.time() * 1000)
            ps = [Param(k, v) for k, v in (params or {}).items()]
            ms = [Metric(k, v, now, 0) for k, v in (metrics or {}).items()]
            ts = [RunTag(k, v) for k, v in (tags or {}).items()]
            while ps or ms or ts:
                self.client.log_batch(run_id, metrics=ms[:1000], params=ps[:_BATCH], tags=ts[:_BATCH])
                ps, ms, ts = ps[_BATCH:], ms[1000:], ts[_BATCH:]
            for path, folder in files:
                self.client.log_artifact(run_id, str(path), folder or None)

    def end_run(self, run_id: str, ok: bool, status: Optional[str] = None) -> None:
        with failures(f"MLflow ending run {run_id} at {self.uri}"):
            self.client.set_terminated(run_id, status or ("FINISHED" if ok else "FAILED"))

    def reopen(self, run_id: str) -> bool:
        """Mark a run RUNNING again (a resumed sweep's parent); False if the store has no such run."""
        with failures(f"MLflow run {run_id} at {self.uri}"):
            try:
                run = self.client.get_run(run_id)
            except Exception:
                return False
            if run.info.lifecycle_stage != "active":
                return False
            self.client.update_run(run_id, status="RUNNING")
            return True

    def runs(self, experiment_ids: List[str], filter_string: str = "") -> List[Any]:
        with failures(f"MLflow search at {self.uri}"):
            return list(self.client.search_runs(experiment_ids, filter_string=filter_string, max_results=50000))


_RELATIVE_STORE = re.compile(r"(sqlite:///|file:)(?!/)(.+)", re.S)


def absolute(uri: str) -> str:
    """A local store's URI with its path made absolute (`sqlite:///mlflow.db` ->
    `sqlite:////home/you/mlflow.db`), so a job whose working folder differs (a SLURM task,
    `hydra.job.chdir=true`) finds the same store; any other URI as it is."""
    match = _RELATIVE_STORE.fullmatch(uri)
    if match is None or match.group(2).startswith(":memory:"):
        return uri
    return ("sqlite:///" if match.group(1) == "sqlite:///" else "file://") + os.path.abspath(match.group(2))


def uri_of(setting: Union[None, bool, str]) -> Optional[str]:
    """`log.mlflow` as a tracking URI for `Store`: None for `true` (MLflow's default)."""
    return setting if isinstance(setting, str) else None


def summary(run: Any) -> Dict[str, Any]:
    """A run as plain data (for reports and tests)."""
    return {
        "run_id": run.info.run_id,
        "name": run.info.run_name,
        "status": run.info.status,
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
    }


class Reader(Store):
    """A store read back (`runner.report --mlflow`): its experiments, runs and artifacts."""

    def experiment_ids(self, name: Optional[str] = None) -> List[str]:
        """The active experiments' ids, or the one named `name` (a `TrackingError` if none)."""
        with failures(f"MLflow experiments at {self.uri}"):
            if name is None:
                return [str(e.experiment_id) for e in self.client.search_experiments()]
            found = self.client.get_experiment_by_name(name)
        if found is None or found.lifecycle_stage != "active":
            raise TrackingError(f"no MLflow experiment {name!r} at {self.uri}")
        return [str(found.experiment_id)]

    def run(self, run_id: str) -> Any:
        """The run `run_id`; a `TrackingError` when the store holds no such (active) run."""
        from mlflow.exceptions import MlflowException

        with failures(f"MLflow run {run_id} at {self.uri}"):
            try:
                run = self.client.get_run(run_id)
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                run = None
        if run is None or run.info.lifecycle_stage != "active":
            raise TrackingError(f"no MLflow run {run_id} at {self.uri}")
        return run

    def download(self, run_id: str, into: Path, names: Optional[Sequence[str]] = None) -> None:
        """The run's artifacts into the folder `into`: all of them, or those of `names` it has
        (files or folders at the top of its artifacts)."""
        with failures(f"MLflow artifacts of run {run_id} at {self.uri}"):
            into.mkdir(parents=True, exist_ok=True)
            if names is None:
                self.client.download_artifacts(run_id, "", str(into))
                return
            held = {f.path for f in self.client.list_artifacts(run_id)}
            for name in names:
                if name in held:
                    self.client.download_artifacts(run_id, name, str(into))
