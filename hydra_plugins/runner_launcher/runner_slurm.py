"""The chunked SLURM launcher plugin (`hydra/launcher=runner_slurm`): thin, as the other
plugin modules, so Hydra's plugin scan stays cheap (the work is in `_slurm` and `_core`).

Hydra's submitit launcher sends each job as one SLURM array task, so every job pays the
task's start and TensorFlow's import. This one sends a batch as a few array tasks, each
running a run of consecutive jobs with the runner launcher's in-process loop.
"""

from typing import Any, Dict, List, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from hydra_plugins.runner_launcher.runner_launcher import RunnerLauncher


class RunnerSlurmLauncher(RunnerLauncher):
    """submitit's SLURM launcher with many jobs per array task (`jobs_per_task`); set up as
    the runner launcher is."""

    def __init__(self, **params: Any) -> None:
        super().__init__()
        # resolved now, as hydra-submitit-launcher does (the sweep folder in submitit_folder)
        self.params: Dict[str, Any] = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in params.items()
        }

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra_plugins.runner_launcher import _slurm

        return _slurm.launch(self, job_overrides, initial_job_idx)

    def __call__(
        self, chunk: List[List[str]], initial_job_idx: int, singleton_state: Dict[type, Singleton]
    ) -> List[JobReturn]:
        """What one SLURM task runs (submitit pickles this object and calls it there)."""
        from hydra_plugins.runner_launcher import _slurm

        return _slurm.run_chunk(self, chunk, initial_job_idx, singleton_state)
