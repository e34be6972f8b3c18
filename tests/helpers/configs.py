"""Configs as a job receives them: composed by Hydra's compose API, or written as a mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.cli import config_dir
from runner.config import schema

schema.register()


def composed(overrides: List[str], config_path: Optional[Path] = None) -> Dict[str, Any]:
    """The plain mapping `python -m runner OVERRIDES` would hand to a job."""
    with initialize_config_dir(str(config_path or config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def function_config(
    steps: Dict[str, str], point: Dict[str, Any], derivatives: List[Dict[str, Any]], inputs: Any = None, **extra: Any
) -> Dict[str, Any]:
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


def run_steps(
    folder: Path,
    steps: Dict[str, str],
    point: Dict[str, Any],
    derivatives: List[Dict[str, Any]],
    verify: str = "auto",
    dtype: str = "float64",
    **extra: Any,
) -> Tuple[int, Dict[str, Any]]:
    """Run steps at a point in-process, every input of `dtype`, on a persistent tape, without
    event files or plots: (the exit code, the parsed results.json)."""
    from runner import job

    cfg = {
        "function": {"inputs": {k: {"dtype": dtype} for k in point}, "steps": steps},
        "point": point,
        "derivatives": derivatives,
        "verify": verify,
        "tape": {"persistent": True},
        "log": {"tensorboard": False, "plots": False},
        **extra,
    }
    code = job.run(cfg, folder, echo=False)
    return code, json.loads((folder / "results.json").read_text())


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
