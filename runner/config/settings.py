"""Run settings: how a job runs (seed, determinism, resume, log), as against what it computes.

Validated once, here, into `RunSettings`, which the job spec carries: `runner.job` reads
nothing else of them from the raw config. Imports no TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from runner.config.schema import RunnerConfig
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


@dataclass(frozen=True)
class RunSettings:
    """How a job runs, as against what it computes: seeding, determinism, resume, logging."""

    seed: int
    determinism: bool
    resume: Optional[str]  # the sweep folder being resumed
    log: LogSettings


def build(cfg: Mapping[str, Any]) -> RunSettings:
    """Validate `seed`, `determinism`, `resume` and `log.*` into `RunSettings`.

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
    log = cfg.get("log")
    if log is None:
        log = {}
    if not isinstance(log, Mapping):
        raise ConfigError("log", f"expected a mapping ({', '.join(vars(defaults.log))}), got {log!r}")
    max_inline = whole_number(
        "log.max_inline_elements", log.get("max_inline_elements", defaults.log.max_inline_elements), 0
    )
    tf_verbose = true_or_false("log.tf_verbose", log.get("tf_verbose", defaults.log.tf_verbose))
    tensorboard = true_or_false("log.tensorboard", log.get("tensorboard", defaults.log.tensorboard))
    plots = log.get("plots", defaults.log.plots)
    if plots is not None and not isinstance(plots, bool):
        raise ConfigError("log.plots", f"expected true, false or null, got {plots!r}")
    return RunSettings(
        seed=seed,
        determinism=determinism,
        resume=resume or None,  # "" resumes nothing, as null does
        log=LogSettings(max_inline, tf_verbose, tensorboard, plots),
    )
