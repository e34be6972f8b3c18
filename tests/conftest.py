"""Shared fixtures: compose real configs with Hydra's compose API and run jobs in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner import job, schema
from runner.cli import config_dir

schema.register()


def composed(overrides: List[str], config_path: Optional[Path] = None) -> Dict[str, Any]:
    """The plain mapping `python -m runner OVERRIDES` would hand to a job."""
    with initialize_config_dir(str(config_path or config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


class Ran:
    """A finished in-process job: its exit code and its parsed results.json."""

    def __init__(self, code: int, folder: Path):
        self.code = code
        self.folder = folder
        self.log = json.loads((folder / "results.json").read_text())

    @property
    def values(self) -> Dict[str, Any]:
        return self.log["values"]

    @property
    def derivatives(self) -> Dict[str, Any]:
        return {d["name"]: d["value"] for d in self.log["derivatives"]}


@pytest.fixture
def run_job(tmp_path):
    """run_job(overrides) or run_job(config_mapping): run one job into a fresh folder."""
    counter = iter(range(10**6))

    def _run(cfg, name: str = "test") -> Ran:
        if isinstance(cfg, list):
            cfg = composed(cfg)
        folder = tmp_path / f"job{next(counter)}"
        code = job.run(cfg, folder, name=name, echo=False)
        return Ran(code, folder)

    return _run


def function_config(steps: Dict[str, str], point: Dict[str, Any], derivatives: List[Dict[str, Any]], inputs: Any = None, **extra: Any) -> Dict[str, Any]:
    """A complete config mapping, as an experiment file would give after composition."""
    cfg = composed(["~experiment"])
    cfg["function"] = {"inputs": inputs if inputs is not None else list(point), "steps": steps}
    cfg["point"] = point
    cfg["derivatives"] = derivatives
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


ROOT = Path(__file__).resolve().parent.parent


def cli(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = 300):
    """Run `python -m runner ARGS` in a subprocess, importing this checkout's `runner`."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None) if env is None or "HYDRA_FULL_ERROR" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
