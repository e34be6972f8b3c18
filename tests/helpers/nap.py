"""A Hydra callback that holds a job back before it starts, for tests that must catch a
sweep mid-way on a real cluster (a job of `seed_cubic` takes milliseconds):

    +hydra.callbacks.nap._target_=tests.helpers.nap.Nap +hydra.callbacks.nap.seconds=120

sleeps `seconds` before every job numbered `after` or more (job 0 runs at once)."""

from __future__ import annotations

import time
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class Nap(Callback):
    def __init__(self, seconds: float = 60.0, after: int = 1) -> None:
        self.seconds = float(seconds)
        self.after = int(after)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if int(config.hydra.job.num) >= self.after:
            time.sleep(self.seconds)
