"""Run settings: how a job runs (seed, determinism, resume, log, limits), as against what it computes.

Validated once, here, into `RunSettings`, which the job spec carries: `runner.job` reads
nothing else of them from the raw config. Imports no TensorFlow.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

from runner.config.schema import Console, RunnerConfig
from runner.errors import ConfigError, short, true_or_false, whole_number

# The largest seed: NumPy's `np.random.seed` takes 0 to 2**32 - 1 (TensorFlow's set_seed takes
# any int, reduced modulo 2**31 - 1; Python's random.seed any). Used for a point's
# `random.seed` too (runner.config.points), so one range holds for every seed a config sets.
MAX_SEED = 2**32 - 1


def seed_number(key: str, value: Any) -> int:
    """A seed: a whole number from 0 to `MAX_SEED`, else a ConfigError naming `key`."""
    seed = whole_number(key, value)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(key, f"expected a whole number from 0 to {MAX_SEED}, got {short(seed)}")
    return seed


@dataclass(frozen=True)
class LogSettings:
    """`log.*`: how the run log and its artifacts are written (see `schema.LogConfig`)."""

    max_inline_elements: int
    tf_verbose: bool
    tensorboard: bool
    plots: Optional[bool]  # None: plot a single run, not each job of a sweep
    console: str = "normal"  # quiet | normal | verbose (`schema.Console`)
    mlflow: Union[None, bool, str] = None  # None: off; True: MLflow's default store; a tracking URI
    mlflow_experiment: Optional[str] = None


@dataclass(frozen=True)
class Limits:
    """`limits.*`: the bounds on a job's work (see `schema.LimitsConfig`), memory in bytes."""

    memory: int
    order: int
    steps: int
    check_evaluations: int


@dataclass(frozen=True)
class RunSettings:
    """How a job runs, as against what it computes: seeding, determinism, resume, logging, limits."""

    seed: int
    determinism: bool
    resume: Optional[str]  # the sweep folder being resumed
    log: LogSettings
    limits: Limits


def build(cfg: Mapping[str, Any]) -> RunSettings:
    """Validate `seed`, `determinism`, `resume`, `log.*` and `limits.*` into `RunSettings`.

    Hydra types these at composition, but configs built in code reach `job.run` untyped, so
    each is checked here too. Kept apart from `spec.build` because `job.run` needs `resume`
    before it builds anything: a job a resumed sweep already finished is not built again.
    """
    defaults = RunnerConfig()  # the schema holds every default, once
    seed = seed_number("seed", cfg.get("seed", defaults.seed))
    determinism = true_or_false("determinism", cfg.get("determinism", defaults.determinism))
    resume = cfg.get("resume", defaults.resume)
    if resume is not None and not isinstance(resume, str):
        raise ConfigError("resume", f"expected the path of a sweep folder to resume, or null, got {resume!r}")
    log = _section(cfg, "log", vars(defaults.log))
    max_inline = whole_number(
        "log.max_inline_elements", log.get("max_inline_elements", defaults.log.max_inline_elements), 0
    )
    tf_verbose = true_or_false("log.tf_verbose", log.get("tf_verbose", defaults.log.tf_verbose))
    tensorboard = true_or_false("log.tensorboard", log.get("tensorboard", defaults.log.tensorboard))
    plots = log.get("plots", defaults.log.plots)
    if plots is not None and not isinstance(plots, bool):
        raise ConfigError("log.plots", f"expected true, false or null, got {plots!r}")
    console = console_level(log.get("console", defaults.log.console))
    mlflow = tracking_uri(log.get("mlflow", defaults.log.mlflow))
    experiment = log.get("mlflow_experiment", defaults.log.mlflow_experiment)
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise ConfigError(
            "log.mlflow_experiment", f"expected an MLflow experiment's name, or null, got {short(experiment)}"
        )
    limits = _section(cfg, "limits", vars(defaults.limits))

    def limit(key: str) -> int:
        return whole_number(f"limits.{key}", limits.get(key, getattr(defaults.limits, key)), 1)

    return RunSettings(
        seed=seed,
        determinism=determinism,
        resume=resume or None,  # "" resumes nothing, as null does
        log=LogSettings(max_inline, tf_verbose, tensorboard, plots, console, mlflow, experiment),
        limits=Limits(
            memory=size_in_bytes("limits.memory", limits.get("memory", defaults.limits.memory)),
            order=limit("order"),
            steps=limit("steps"),
            check_evaluations=limit("check_evaluations"),
        ),
    )


def console_level(value: Any) -> str:
    """`log.console`: quiet, normal or verbose (an enum member, as Hydra gives it, or its name)."""
    name = value.value if isinstance(value, Console) else value
    if name not in CONSOLE_LEVELS:
        raise ConfigError("log.console", f"expected one of {', '.join(CONSOLE_LEVELS)}, got {short(value)}")
    return str(name)


CONSOLE_LEVELS = tuple(c.value for c in Console)

# The tracking stores `log.mlflow` may name: MLflow's own (a database through SQLAlchemy, a
# tracking server, Databricks, the folder store) and nothing an installed plugin would add.
TRACKING_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "databricks", "file")
_SCHEME = re.compile(r"([a-z][a-z0-9]*)(\+[a-z0-9_]+)?:", re.IGNORECASE)


def tracking_uri(value: Any) -> Union[None, bool, str]:
    """`log.mlflow`: null or false (off), true (MLflow's default store) or a tracking URI
    of one of `TRACKING_SCHEMES`."""
    if value is None or value is False or value == "":
        return None
    if importlib.util.find_spec("mlflow") is None:  # found, not imported: a few milliseconds
        raise ConfigError("log.mlflow", 'MLflow is not installed: pip install -e ".[mlflow]" (or set log.mlflow=null)')
    if value is True:
        return True
    if value == "databricks":  # the default Databricks profile, as MLflow spells it
        return value
    match = _SCHEME.match(value) if isinstance(value, str) else None
    if not match or match.group(1).lower() not in TRACKING_SCHEMES or any(c.isspace() for c in value):
        raise ConfigError(
            "log.mlflow",
            f"expected true, false, null or a tracking URI ({', '.join(s + ':' for s in TRACKING_SCHEMES)}), got {short(value)}",
        )
    return str(value)


def _section(cfg: Mapping[str, Any], key: str, keys: Mapping[str, Any]) -> Mapping[str, Any]:
    """The mapping under `key` (null: empty), else a ConfigError listing its `keys`."""
    node = cfg.get(key)
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(key, f"expected a mapping ({', '.join(keys)}), got {node!r}")
    return node


_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})
_SIZE = re.compile(r"\s*(\d+)(\.\d+)?\s*([a-z]+)?\s*", re.IGNORECASE)


def size_in_bytes(key: str, value: Any) -> int:
    """A memory size: a whole number of bytes, or a number and a unit (`512MiB`, `1.5GiB`, `8GB`).

    Hydra's schema types `limits.memory` as a string, so `limits.memory=8589934592` on the
    command line arrives as "8589934592".
    """
    size = 0
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        whole, fraction, unit = match.groups()
        scale = _UNITS.get((unit or "b").lower(), 0)
        if fraction is None or scale > 1:  # a fraction of a byte is not a size
            try:
                size = int(float(whole + (fraction or "")) * scale) if fraction else int(whole) * scale
            except (OverflowError, ValueError):  # 1e400 bytes: a float of infinity has no int
                size = 0
    if size < 1:
        raise ConfigError(key, f"expected a whole number of bytes > 0, or a size such as 4GiB or 512MiB, got {value!r}")
    return size
