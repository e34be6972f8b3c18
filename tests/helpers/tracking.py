"""Shared code of the MLflow tests (tests/test_mlflow*.py): real sqlite stores in temporary
folders, the environment the runner gives MLflow, and the runs read back."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, List

# the caller's MLflow settings would send the tests' runs elsewhere: never inherited
USER_SETTINGS = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI")


def isolate(monkeypatch: Any, runner_defaults: bool = True) -> None:
    """No store of the caller's; MLflow's env as the runner sets it (`runner_defaults`), or
    only its telemetry off (this process reads the stores back)."""
    from runner.record import mlflow_store

    for name in USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    defaults = mlflow_store.ENV_DEFAULTS if runner_defaults else {"MLFLOW_DISABLE_TELEMETRY": "true"}
    for name, value in defaults.items():
        monkeypatch.setenv(name, value)


def make_empty_store(folder: Path) -> Path:
    """An MLflow sqlite database with its tables made (MLflow's migrations take seconds:
    made once, copied per test by `copy_store`)."""
    import mlflow

    path = folder / "mlflow.db"
    with warnings.catch_warnings():  # SQLAlchemy's deprecation warnings about MLflow's own code
        warnings.simplefilter("ignore")
        mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def copy_store(template: Path, folder: Path, name: str = "mlflow.db") -> str:
    """A fresh store in `folder` (a copy of `template`), as a URI."""
    shutil.copyfile(template, folder / name)
    return f"sqlite:///{folder}/{name}"


def runs(uri: str) -> List[Any]:
    """Every run of every experiment in the store."""
    import mlflow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = mlflow.MlflowClient(uri)
        ids = [e.experiment_id for e in client.search_experiments()]
        return list(client.search_runs(ids))
