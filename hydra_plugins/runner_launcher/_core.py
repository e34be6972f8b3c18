"""The launcher's work: Hydra's BasicLauncher loop, with `run_job` done on a shared config.

`hydra.core.utils.run_job` costs about 20 ms a job on its own: two deep copies of the
whole config (the hydra node is most of it), a masked copy for `HydraConfig`, and YAML
dumps. For a job whose overrides `_compose` can apply and undo in place (scalar values),
`run_job` is replicated here step by step on one `LiveConfig` per template, whose hydra
node is copied once instead of per job. The files written, the callbacks called (with
the same arguments) and the `JobReturn` are those of `run_job`; any other job goes
through Hydra's `load_sweep_config` and `run_job` unchanged.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, cast

from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (
    JobReturn,
    JobRuntime,
    JobStatus,
    configure_log,
    env_override,
    filter_overrides,
    run_job,
    setup_globals,
)
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.runner_launcher import _compose, _hydra_yaml, _logging
from runner import hydra_compat as _hydra_compat


class LauncherState(Protocol):
    """What the work needs of the plugin (`runner_launcher.RunnerLauncher`): what `setup` kept.

    A protocol, not an import of the plugin class, so that the plugin and this module do
    not import each other.
    """

    config: Optional[DictConfig]
    task_function: Optional[TaskFunction]
    hydra_context: Optional[HydraContext]


log = logging.getLogger(__name__)


def launch(
    launcher: LauncherState,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    job_id: Optional[str] = None,
    isolate: bool = False,
) -> Sequence[JobReturn]:
    """Run each job in this process, in order, as Hydra's BasicLauncher does.

    `job_id`: hydra.job.id of every job (a SLURM task's id, as submitit's launcher sets it);
    None: the job's number, as the basic launcher sets it. `isolate`: a job that raises
    outside its task function (which run_job lets through) gives a FAILED JobReturn holding
    the error and the next job runs (`_slurm`: one job must not lose its chunk-mates).
    """
    setup_globals()
    config, context, task = launcher.config, launcher.hydra_context, launcher.task_function
    assert config is not None and context is not None and task is not None
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    # Hydra's launch lines: shown under log.console=verbose, else at DEBUG (hydra.verbose=true
    # shows them): a sweep's progress lines (runner/sweep/progress.py) say what ran
    level = logging.INFO if _console(config) == "verbose" else logging.DEBUG
    log.log(level, f"Launching {len(job_overrides)} jobs locally")
    composer = _compose.composer_for(context.config_loader, config)
    live: Optional[LiveConfig] = None
    runs: List[JobReturn] = []
    hydra_logging = (
        cast(Dict[str, Any], OmegaConf.to_container(config.hydra.hydra_logging, resolve=True))
        if config.hydra.hydra_logging is not None
        else None
    )
    verbose = config.hydra.verbose
    for idx, overrides in enumerate(job_overrides):
        idx = initial_job_idx + idx
        log.log(level, f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        try:
            job = composer.split(overrides)
            template = composer.template(job.groups) if job is not None else None
            if job is None or template is None or not template.undoable(job):
                runs.append(_run_composed(launcher, list(overrides), idx, job_id))
            else:
                if live is None or live.template is not template:
                    live = LiveConfig(template)
                runs.append(_run_live(launcher, composer, live, job, idx, job_id))
        except Exception as err:
            if not isolate:
                raise
            live = None  # it may hold the failed job's values: the next job starts afresh
            runs.append(_failed(list(overrides), err))
        _logging.configure(copy.deepcopy(hydra_logging), verbose)
    return runs


def _console(config: DictConfig) -> str:
    """The sweep's `log.console` (as the command line set it for every job), its name."""
    level = OmegaConf.select(config, "log.console", default="normal")
    return str(getattr(level, "value", level))


def _failed(overrides: List[str], err: Exception) -> JobReturn:
    """The JobReturn of a job that raised outside its task function: Hydra's sweeper raises
    `err` when it reads the return value, as it would have met it under the basic launcher."""
    ret = JobReturn(overrides=overrides, status=JobStatus.FAILED, _return_value=err)
    ret.working_dir = os.getcwd()
    return ret


def _run_composed(launcher: LauncherState, overrides: List[str], idx: int, job_id: Optional[str] = None) -> JobReturn:
    """Hydra's own path, exactly as BasicLauncher takes it (submitit's, with a `job_id`)."""
    assert launcher.hydra_context is not None and launcher.config is not None and launcher.task_function is not None
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, overrides)
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx if job_id is None else job_id
        sweep_config.hydra.job.num = idx
    return run_job(
        hydra_context=launcher.hydra_context,
        task_function=launcher.task_function,
        config=sweep_config,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class LiveConfig:
    """One full config (and its `HydraConfig` view) reused job after job for one template.

    Between jobs the task keys a job changed are set back (`_compose.undo`) and the
    per-job hydra fields are overwritten, so each job sees exactly the config Hydra would
    have composed for it. The task function never gets this object: it gets its own copy.
    """

    def __init__(self, template: _compose.Template):
        self.template = template
        self.full = copy.deepcopy(template.full)
        # What HydraConfig.set_config does: the hydra node read-only, and a copy of it whose
        # parent is the full config (so interpolations into the task config resolve).
        # set_config copies the node; here the view holds the full config's own hydra node
        # (its parent still the full config), so the per-job fields are set once for both.
        OmegaConf.set_readonly(self.full.hydra, True)
        self.view = OmegaConf.masked_copy(self.full, "hydra")
        _hydra_compat.share_child(self.view, self.full, "hydra")
        self.job_logging = _logging.JobLogging(self.full)
        self.verbose = self.full.hydra.verbose
        self.hydra_yaml = _hydra_yaml.HydraYaml(
            cast(Dict[str, Any], OmegaConf.to_container(self.view, resolve=False, enum_to_str=True))
        )
        self.applied: Optional[_compose.JobOverrides] = None
        sweep = self.full.hydra.sweep
        self._fixed_dir = _resolves_alike(_hydra_compat.raw_value(sweep, "dir"))
        self._num_subdir = _hydra_compat.raw_value(sweep, "subdir") == "${hydra.job.num}"
        self._dir: Optional[str] = None

    def output_dir(self, idx: int) -> str:
        """hydra.sweep.dir / hydra.sweep.subdir, as run_job resolves them for job `idx`.

        Resolving means parsing the interpolations (about 1 ms each); the common forms are
        known without it: a dir whose only interpolations are `${now:...}` (cached by Hydra
        for the whole run) is the same for every job, and the default subdir is the number.
        """
        if self._dir is None or not self._fixed_dir:
            self._dir = str(OmegaConf.select(self.full, "hydra.sweep.dir"))
        subdir = str(idx) if self._num_subdir else str(OmegaConf.select(self.full, "hydra.sweep.subdir"))
        return os.path.join(self._dir, subdir)

    def enter(self, job: _compose.JobOverrides) -> None:
        """Make the full config that of `job` (its value overrides applied)."""
        self.leave()
        _compose.apply(job.values, self.full)
        self.applied = job

    def leave(self) -> None:
        if self.applied is not None:
            job, self.applied = self.applied, None
            _compose.undo(self.template, job, self.full)

    def set_job(self, fields: "JobFields") -> None:
        """Set the per-job hydra fields (in the node the full config and the view share)."""
        _set_fields(self.full.hydra, fields)

    def set_output_dir(self, output_dir: str) -> None:
        hydra = self.full.hydra
        with read_write(hydra), open_dict(hydra):
            hydra.runtime.output_dir = output_dir

    def snapshot(self, fields: "JobFields") -> DictConfig:
        """What run_job keeps as `JobReturn.hydra_cfg`: a deep copy of the job's HydraConfig."""
        cfg = copy.deepcopy(self.view)
        _set_fields(cfg.hydra, fields)
        return cfg


def _set_fields(hydra: DictConfig, fields: "JobFields") -> None:
    with read_write(hydra), open_dict(hydra):
        hydra.job.id = fields.idx if fields.job_id is None else fields.job_id
        hydra.job.num = fields.idx
        hydra.overrides.task = list(fields.lines)
        hydra.job.override_dirname = fields.override_dirname
        if fields.output_dir is not None:
            hydra.runtime.output_dir = fields.output_dir


def _resolves_alike(raw: object) -> bool:
    """Whether a raw config string resolves the same for every job: only ${now:...} in it."""
    return isinstance(raw, str) and "${" not in _NOW.sub("", raw)


_NOW = re.compile(r"\$\{now:[^${}]*\}")


@dataclass
class JobFields:
    """The fields of a job's hydra config that differ between jobs of one composition."""

    idx: int
    lines: List[str]
    override_dirname: str
    output_dir: Optional[str] = None
    job_id: Optional[str] = None  # hydra.job.id when it is not the number (a SLURM task's id)

    def yaml_values(self) -> List[object]:
        """In `_hydra_yaml.PER_JOB` order, as the container of the hydra config holds them."""
        job_id = str(self.idx) if self.job_id is None else str(self.job_id)
        return [list(self.lines), self.override_dirname, job_id, self.idx, self.output_dir]


class LazyJobReturn(JobReturn):
    """A JobReturn whose `hydra_cfg`, a deep copy of the job's hydra config, is made on first use.

    run_job copies the hydra config for every job (a few ms); Hydra's sweepers never read
    it, callbacks seldom do, so the copy is made only when someone asks.
    """

    def __init__(self, snapshot: Callable[[], DictConfig]):
        super().__init__()
        self._snapshot: Optional[Callable[[], DictConfig]] = snapshot

    @property
    def hydra_cfg(self) -> Optional[DictConfig]:
        snapshot = self.__dict__.get("_snapshot")
        if self.__dict__.get("_hydra_cfg") is None and snapshot is not None:
            self.__dict__["_hydra_cfg"] = snapshot()
        return self.__dict__.get("_hydra_cfg")

    @hydra_cfg.setter
    def hydra_cfg(self, value: Optional[DictConfig]) -> None:
        self.__dict__["_hydra_cfg"] = value

    def __reduce__(self) -> tuple:
        """Pickled (and deep-copied) as the plain JobReturn it stands for, snapshot made now."""
        fields = (
            self.overrides,
            self.cfg,
            self.hydra_cfg,
            self.working_dir,
            self.task_name,
            self.status,
            self._return_value,
        )
        return (JobReturn, fields)


def _config_yaml(template: _compose.Template, job: _compose.JobOverrides, task_cfg: DictConfig) -> str:
    """`OmegaConf.to_yaml(task_cfg)`: the template's text with the job's overridden keys filled in."""
    paths = job.paths()
    spliced = template.config_yaml(paths)
    if spliced is not None:
        values = [_container_value(task_cfg, path) for path in paths]
        if all(v is not _NOT_SCALAR for v in values):
            return spliced.render(values)
    return OmegaConf.to_yaml(task_cfg)


_NOT_SCALAR = object()
_CHDIR_WARNING = (
    "Future Hydra versions will no longer change working directory at job runtime by default.\n"
    "See https://hydra.cc/docs/1.2/upgrades/1.1_to_1.2/changes_to_job_working_dir/ for more information."
)


def _container_value(cfg: DictConfig, path: Tuple[str, ...]) -> Any:
    """The value `OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)` holds at `path`."""
    return _hydra_compat.node_walk(cfg, path, lambda v: v.name if isinstance(v, Enum) else v, _NOT_SCALAR)


def _run_live(
    launcher: LauncherState,
    composer: _compose.Composer,
    live: LiveConfig,
    job: _compose.JobOverrides,
    idx: int,
    job_id: Optional[str] = None,
) -> JobReturn:
    """`hydra.core.utils.run_job` for one job, step for step, on the live config."""
    context, task_function = launcher.hydra_context, launcher.task_function
    assert context is not None and task_function is not None
    callbacks = context.callbacks
    live.enter(job)
    config = live.full
    # BasicLauncher's part (the job's number) and load_sweep_config's (its overrides).
    fields = JobFields(idx, list(job.lines), composer.override_dirname(job), job_id=job_id)
    live.set_job(fields)

    old_cwd = os.getcwd()
    orig_hydra_cfg = HydraConfig.instance().cfg
    HydraConfig.instance().cfg = live.view  # type: ignore[assignment]
    output_dir = live.output_dir(idx)
    fields.output_dir = os.path.abspath(output_dir)
    live.set_output_dir(fields.output_dir)
    _chdir = None
    try:
        ret = LazyJobReturn(lambda: live.snapshot(fields))
        task_cfg = composer.task_config(live.template, job)
        ret.cfg = task_cfg
        ret.overrides = list(job.lines)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        _chdir = config.hydra.job.chdir
        if _chdir is None and version.base_at_least("1.2"):
            _chdir = False
        if _chdir is None:  # the pre-1.2 default, with run_job's warning
            _hydra_compat.deprecation_warning(_CHDIR_WARNING, stacklevel=2)
            _chdir = True
        if _chdir:
            os.chdir(output_dir)
            ret.working_dir = output_dir
        else:
            ret.working_dir = os.getcwd()
        _logging.configure(live.job_logging.container(fields.output_dir), live.verbose)
        if config.hydra.output_subdir is not None:
            # _save_config's three files, the same text (see _hydra_yaml)
            hydra_output = Path(config.hydra.runtime.output_dir) / Path(config.hydra.output_subdir)
            hydra_output.mkdir(parents=True, exist_ok=True)
            (hydra_output / "config.yaml").write_text(_config_yaml(live.template, job, task_cfg), encoding="utf-8")
            (hydra_output / "hydra.yaml").write_text(live.hydra_yaml.render(fields.yaml_values()), encoding="utf-8")
            (hydra_output / "overrides.yaml").write_text(_hydra_yaml.sequence(fields.lines), encoding="utf-8")
        with env_override(config.hydra.job.env_set):
            callbacks.on_job_start(config=config, task_function=task_function)
            try:
                ret.return_value = task_function(task_cfg)
                ret.status = JobStatus.COMPLETED
            except Exception as e:
                ret.return_value = e
                ret.status = JobStatus.FAILED
        ret.task_name = JobRuntime.instance().get("name")
        _hydra_compat.flush_loggers()
        callbacks.on_job_end(config=config, job_return=ret)
        return ret
    finally:
        HydraConfig.instance().cfg = orig_hydra_cfg
        if _chdir:
            os.chdir(old_cwd)
