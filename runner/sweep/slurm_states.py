"""What submitit reads of SLURM's accounting, mended for a cancelled job array.

submitit (behind `hydra/launcher=submitit_slurm` and `runner_slurm`) learns each array
task's state from `sacct`, where the tasks that never started are one record named by a
range, `516_[2-5%1]`. But after a `scancel` of the array SLURM sometimes lists that record
under the array's bare id, `516` (seen in 5 of 9 trials on the test cluster, by name or task
by task). submitit then knows no state for 516_2...516_5, takes them for UNKNOWN, an
unfinished state, and the launching process waits for them for ever. `install` makes such
a task take the bare record's state (CANCELLED), so the sweep ends, with its summary, as
for any cancelled task. Installed by `SweepSummary.on_multirun_start`, only for a launcher
that submits to SLURM.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict

_MARK = "_runner_reads_bare_array_ids"


def install() -> None:
    """Wrap submitit's `SlurmInfoWatcher.read_info` (once per process)."""
    from submitit.slurm import slurm

    original = slurm.SlurmInfoWatcher.read_info
    if getattr(original, _MARK, False):
        return
    slurm.SlurmInfoWatcher.read_info = _reading_bare_array_ids(original)  # type: ignore[method-assign]


def _reading_bare_array_ids(read_info: Callable[..., Dict[str, Dict[str, str]]]) -> Callable[..., Any]:
    @functools.wraps(read_info)  # submitit's own parser stays reachable as __wrapped__
    def read(watcher: Any, string: Any) -> Dict[str, Dict[str, str]]:
        stats = read_info(watcher, string)
        for job_id in getattr(watcher, "_registered", ()):
            array_id, sep, _ = job_id.partition("_")
            if sep and job_id not in stats and array_id in stats:
                stats[job_id] = stats[array_id]  # a task of the record SLURM named by the bare id
        return stats

    setattr(read, _MARK, True)
    return read


def submits_to_slurm(config: Any) -> bool:
    """Whether the sweep's launcher is one that submits to SLURM through submitit."""
    from omegaconf import OmegaConf

    target = str(OmegaConf.select(config, "hydra.launcher._target_", default="") or "")
    return "slurm" in target.lower()
