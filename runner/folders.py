"""Run and sweep folder names: collision-safe, and a sweep folder that can be resumed.

Hydra names folders from `hydra.run.dir` / `hydra.sweep.dir` (conf/config.yaml). A time stamp
alone is not enough: two runs started in the same microsecond from two shells, or by a
script, would share a folder. The process id added by the `pid` resolver makes the name
unique among processes running at the same time, and the microseconds separate the
processes that reuse a pid later.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf


def _first(*candidates: Any) -> Any:
    """The first candidate that is not null or empty (e.g. `resume=PATH`, else a new folder)."""
    for c in candidates:
        if c not in (None, ""):
            return c
    return None


def register() -> None:
    """Register the resolvers `${pid:}` and `${first:a,b,...}` used by conf/config.yaml."""
    # cached like Hydra's own `now`: Hydra copies the cache into each job's config, so a job
    # in a worker process (joblib, submitit) resolves the launching process's folder
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True, use_cache=True)
    OmegaConf.register_new_resolver("first", _first, replace=True)
