"""The work of `hydra/launcher=runner_slurm`: a batch as a few SLURM array tasks, each
running consecutive jobs in one process (`_core.launch`, the in-process launcher's loop).

In the launching process, `launch` cuts the batch into chunks of `jobs_per_task`
consecutive jobs, submits them as one submitit array (the executor built, and its options
passed, exactly as hydra-submitit-launcher does), and waits for every task. On the node,
`run_chunk` runs its jobs as the runner launcher does, with two differences taken from
hydra-submitit-launcher: hydra.job.id is the SLURM task's id (`123_4`), and a job that
raises outside its task function gives a FAILED JobReturn instead of ending the chunk.
So each job writes the folder, `.hydra/` files, log, progress line and `results.json` it
writes under the other launchers, and the JobReturns are run_job's, one per job, in order.

A task that dies (cancelled, killed for its time or memory limit, its node lost) returns
nothing: its finished jobs' folders are on disk, whole; every job of its chunk gets a FAILED
JobReturn holding `TaskLost` (Hydra's sweeper raises the first, as it does for any failed
job), and the jobs that never started get their folder and `.hydra/overrides.yaml`, so
the sweep's summary lists them as `missing`. `resume=SWEEP` runs them again.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import OmegaConf, open_dict

from hydra_plugins.runner_launcher import _core, _hydra_yaml

log = logging.getLogger(__name__)

# hydra-submitit-launcher's BaseQueueConf keys: given to submitit without the `slurm_` prefix
_BASE_KEYS = {
    "submitit_folder",
    "timeout_min",
    "cpus_per_task",
    "gpus_per_node",
    "tasks_per_node",
    "mem_gb",
    "nodes",
    "name",
    "stderr_to_stdout",
}
_INIT_KEYS = {"submitit_folder", "max_num_timeout"}
_OWN_KEYS = {"jobs_per_task"}  # this launcher's, not submitit's


class TaskLost(RuntimeError):
    """A job's SLURM task ended without returning (cancelled, out of time or memory, node lost)."""


def jobs_per_task(chosen: Optional[int], jobs: int, array_parallelism: int) -> int:
    """`hydra.launcher.jobs_per_task`, or by default ceil(jobs / array_parallelism): the batch
    in as few tasks as SLURM runs at once, each job's share of a task start made small."""
    if chosen is not None:
        if int(chosen) < 1:
            raise ValueError(f"hydra.launcher.jobs_per_task must be a positive number, not {chosen}")
        return int(chosen)
    return max(1, math.ceil(jobs / max(1, int(array_parallelism))))


def chunks(
    job_overrides: Sequence[Sequence[str]], initial_job_idx: int, size: int
) -> List[Tuple[List[List[str]], int]]:
    """The batch cut into runs of `size` consecutive jobs: (their overrides, first job number)."""
    return [
        ([list(o) for o in job_overrides[start : start + size]], initial_job_idx + start)
        for start in range(0, len(job_overrides), size)
    ]


def executor(params: Dict[str, Any]) -> Any:
    """A submitit SLURM executor set up as hydra-submitit-launcher sets one up."""
    import submitit

    init = {"folder": params["submitit_folder"], "slurm_max_num_timeout": params.get("max_num_timeout", 0)}
    ex = submitit.AutoExecutor(cluster="slurm", **init)
    ex.update_parameters(
        **{
            k if k in _BASE_KEYS else f"slurm_{k}": v
            for k, v in params.items()
            if k not in _INIT_KEYS and k not in _OWN_KEYS
        }
    )
    return ex


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
    """Submit the batch as chunks, wait for every task, return one JobReturn per job, in order."""
    config = launcher.config
    assert config is not None and launcher.hydra_context is not None and launcher.task_function is not None
    assert len(job_overrides) > 0
    setup_globals()
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    params = dict(launcher.params)
    size = jobs_per_task(params.get("jobs_per_task"), len(job_overrides), params.get("array_parallelism", 256))
    ex = executor(params)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    log.info(f"runner_slurm sweep output dir : {sweep_dir}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    parts = chunks(job_overrides, initial_job_idx, size)
    log.info(f"Launching {len(job_overrides)} jobs as {len(parts)} SLURM task(s) of up to {size} job(s)")
    for idx, overrides in enumerate(job_overrides):
        log.info(f"\t#{initial_job_idx + idx} : {' '.join(filter_overrides(overrides))}")
    state = Singleton.get_state()
    jobs = ex.map_array(launcher, [c for c, _ in parts], [s for _, s in parts], [state] * len(parts))
    returns: List[JobReturn] = []
    for job, (chunk, start) in zip(jobs, parts):
        try:
            _wait(job)
            got = list(job.results()[0])
        except Exception as err:  # the task ended without a result
            got = lost(launcher, job, chunk, start, err)
        if len(got) != len(chunk):  # cannot happen with this module's run_chunk; say so if it does
            got = lost(launcher, job, chunk, start, RuntimeError(f"returned {len(got)} results for {len(chunk)} jobs"))
        returns.extend(got)
    return returns


def _wait(job: Any) -> None:
    """Wait for a task: its result file looked for every 0.1 s, SLURM asked (submitit's
    `done`, which reads sacct at most every few seconds) every second. submitit's own
    wait looks every second: up to a second lost per sweep, when jobs take milliseconds."""
    polls = 0
    while not job.paths.result_pickle.exists():
        if polls % 10 == 0 and job.done():
            return
        time.sleep(0.1)
        polls += 1


def run_chunk(
    launcher: Any, chunk: List[List[str]], initial_job_idx: int, singleton_state: Dict[type, Singleton]
) -> List[JobReturn]:
    """On the node: the chunk's jobs, one after another, each isolated from the others."""
    import submitit

    Singleton.set_state(singleton_state)
    job_id = str(submitit.JobEnvironment().job_id)
    return list(_core.launch(launcher, chunk, initial_job_idx, job_id=job_id, isolate=True))


def lost(launcher: Any, job: Any, chunk: List[List[str]], start: int, err: BaseException) -> List[JobReturn]:
    """FAILED JobReturns for a chunk whose task returned nothing; the folders of the jobs it
    never started made (with `.hydra/overrides.yaml`), so the summary lists them."""
    try:
        state = job.state
    except Exception:
        state = "UNKNOWN"
    first = (str(err).strip().splitlines() or [""])[0][:300]
    returns = []
    for i, overrides in enumerate(chunk):
        idx = start + i
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
        ret.return_value = TaskLost(
            f"SLURM task {job.job_id} ({state}) ended without returning job #{idx} "
            f"(jobs #{start}-#{start + len(chunk) - 1} ran in it): {type(err).__name__}: {first}"
        )
        ret.status = JobStatus.FAILED
        ret.working_dir = os.getcwd()
        returns.append(ret)
        try:
            _mark_unstarted(launcher, overrides, idx, str(job.job_id))
        except Exception as mark_err:  # the JobReturn still says what happened
            log.warning(f"job #{idx}: its folder could not be made: {type(mark_err).__name__}: {mark_err}")
    return returns


def _mark_unstarted(launcher: Any, overrides: List[str], idx: int, job_id: str) -> None:
    """Make the folder of a job its task never started, as run_job would name it, holding
    only `.hydra/overrides.yaml` (nothing if the folder exists: the job started)."""
    config, context = launcher.config, launcher.hydra_context
    sweep_config = context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = job_id
        sweep_config.hydra.job.num = idx
    original = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(sweep_config)  # as run_job: ${hydra:...} in the folder names
    try:
        sweep_dir = str(OmegaConf.select(sweep_config, "hydra.sweep.dir"))
        folder = Path(sweep_dir) / str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
        output_subdir = sweep_config.hydra.output_subdir
    finally:
        HydraConfig.instance().cfg = original
    if folder.exists():
        return
    folder.mkdir(parents=True)
    if output_subdir is not None:
        (folder / str(output_subdir)).mkdir()
        (folder / str(output_subdir) / "overrides.yaml").write_text(_hydra_yaml.sequence(overrides), encoding="utf-8")
