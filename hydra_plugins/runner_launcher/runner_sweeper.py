"""The sweeper plugin: Hydra's BasicSweeper, validating a batch through the shared composer.

The basic sweeper composes every job's config before launching the batch, only to catch
composition errors early; that alone costs as much as the launcher's own composition. This
subclass keeps the check (the same errors, before any job runs) at the cost of applying
each job's value overrides to a copy of a config composed once.
"""

from typing import Sequence

from runner import hydra_compat as _hydra_compat


class RunnerSweeper(_hydra_compat.basic_sweeper()):  # type: ignore[misc]
    """BasicSweeper with a cheaper `validate_batch_is_legal` (same grammar, batches, order)."""

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        from hydra_plugins.runner_launcher import _compose

        assert self.hydra_context is not None and self.config is not None
        composer = _compose.composer_for(self.hydra_context.config_loader, self.config)
        for overrides in batch:
            composer.validate(list(overrides))
