"""The plugins' configs: `hydra/launcher=runner` and `hydra/sweeper=runner`."""

from dataclasses import dataclass
from typing import Dict, Optional

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


ConfigStore.instance().store(group="hydra/launcher", name="runner", node=RunnerLauncherConf, provider="runner_launcher")
ConfigStore.instance().store(group="hydra/sweeper", name="runner", node=RunnerSweeperConf, provider="runner_launcher")
