"""Shared fixtures; the shared helpers they use live in `tests/helpers`."""

from __future__ import annotations

import pytest

from runner import job
from tests.helpers import Ran, composed


@pytest.fixture
def run_job(tmp_path):
    """run_job(overrides) or run_job(config_mapping): run one job into a fresh folder."""
    counter = iter(range(10**6))

    def _run(cfg, name: str = "test") -> Ran:
        if isinstance(cfg, list):
            cfg = composed(cfg)
        folder = tmp_path / f"job{next(counter)}"
        code = job.run(cfg, folder, name=name, echo=False)
        return Ran(code, folder)

    return _run
