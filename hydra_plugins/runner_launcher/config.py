"""The plugins' configs: `hydra/launcher=runner`, `hydra/launcher=runner_slurm` and
`hydra/sweeper=runner`."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class RunnerLauncherConf:
    """Run jobs in this process, one after another, composing once per group choice."""

    _target_: str = "hydra_plugins.runner_launcher.runner_launcher.RunnerLauncher"


@dataclass
class RunnerSweeperConf:
    """Hydra's basic sweeper (same options), validating a batch without recomposing each job."""

    _target_: str = "hydra_plugins.runner_launcher.runner_sweeper.RunnerSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


@dataclass
class RunnerSlurmConf:
    """Run a sweep on SLURM as a few array tasks, each running many jobs in one process.

    The options of hydra-submitit-launcher's `SlurmQueueConf` (same names, same meaning,
    given to submitit the same way), and `jobs_per_task`. Only the default of
    `array_parallelism` differs (16, not 256): with `jobs_per_task` unset, a sweep of n jobs
    goes as ceil(n / array_parallelism) jobs per task, so at most `array_parallelism` tasks.
    See docs/cluster.md.
    """

    _target_: str = "hydra_plugins.runner_launcher.runner_slurm.RunnerSlurmLauncher"
    # how many jobs one SLURM task runs, one after another in one process; null:
    # ceil(jobs of the batch / array_parallelism)
    jobs_per_task: Optional[int] = None
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    timeout_min: int = 60  # per task: make room for all of its jobs
    cpus_per_task: Optional[int] = None
    gpus_per_node: Optional[int] = None
    tasks_per_node: int = 1
    mem_gb: Optional[int] = None
    nodes: int = 1
    name: str = "${hydra.job.name}"
    stderr_to_stdout: bool = False
    partition: Optional[str] = None
    qos: Optional[str] = None
    comment: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    gres: Optional[str] = None
    cpus_per_gpu: Optional[int] = None
    gpus_per_task: Optional[int] = None
    mem_per_gpu: Optional[str] = None
    mem_per_cpu: Optional[str] = None
    account: Optional[str] = None
    signal_delay_s: int = 120
    max_num_timeout: int = 0
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    array_parallelism: int = 16
    setup: Optional[List[str]] = None


ConfigStore.instance().store(
    group="hydra/launcher", name="runner_slurm", node=RunnerSlurmConf, provider="runner_launcher"
)
ConfigStore.instance().store(group="hydra/launcher", name="runner", node=RunnerLauncherConf, provider="runner_launcher")
ConfigStore.instance().store(group="hydra/sweeper", name="runner", node=RunnerSweeperConf, provider="runner_launcher")
