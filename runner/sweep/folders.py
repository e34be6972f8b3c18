"""Run and sweep folder names: collision-safe, and a sweep folder that can be resumed.

Hydra names folders from `hydra.run.dir` / `hydra.sweep.dir` (conf/config.yaml). A time stamp
alone is not enough: two runs started in the same microsecond from two shells, or by a
script, would share a folder. The process id added by the `pid` resolver makes the name
unique among processes running at the same time, and the microseconds separate the
processes that reuse a pid later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

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


_sweep_dirs: Dict[str, Path] = {}


def sweep_dir(config: Any) -> Path:
    """`hydra.sweep.dir` of a job's config, resolved once per process and folder spec.

    Resolving its interpolations (`${first:${resume},...${now:...}-${pid:}}`) runs
    OmegaConf's grammar parser, a few milliseconds; the callbacks ask for it after every job.
    The folder spec (the unresolved text) and the cached `now` and `pid` resolvers are the
    same for every job of one sweep in one process, so the answer is too.
    """
    node = config.hydra.sweep._get_node("dir")
    raw = str(node._value())
    if raw not in _sweep_dirs:
        _sweep_dirs[raw] = Path(config.hydra.sweep.dir)
    return _sweep_dirs[raw]
