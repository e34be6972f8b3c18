"""Shared fixtures; the shared helpers they use live in `tests/helpers`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Dict, Iterator

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


_MARK = f"RUNNER_TEST_RUN={os.getpid()}-{time.time_ns()}"  # inherited by what the tests start


def _processes_started_here() -> Dict[int, str]:
    """Live processes carrying this test run's mark in their environment (every process the
    tests start inherits it, orphans and grandchildren included), by pid, with their command."""
    mark = _MARK.encode()
    out: Dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if mark not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":  # a zombie has ended; its parent reaps it
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        out[int(entry)] = cmd.strip()
    return out


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite fails if a test leaves a process running (a worker, a server, a sweep)."""
    name, _, value = _MARK.partition("=")
    os.environ[name] = value
    yield
    deadline = time.monotonic() + 10  # a process may be a moment from exiting
    while (left := _processes_started_here()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"tests left processes running: {left}"


@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """The partition of a running SLURM cluster (`.ci/slurm-up` starts one): the tests marked
    `slurm` skip without one, with the reason, and fail instead under CI=true."""
    from tests.helpers import slurm

    found, said = slurm.find_partition()
    if found is None:
        reason = f"no SLURM cluster with a node that takes jobs ({said}); start one with .ci/slurm-up"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: the slurm tests must run, but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


@pytest.fixture
def slurm_job_name(slurm_partition) -> Iterator[str]:
    """A job name of this test's own (`hydra.launcher.name=`); at teardown its jobs are
    cancelled, and the test fails if it left any queued or running."""
    from tests.helpers import slurm

    name = f"runner-test-{os.getpid()}-{time.time_ns()}"
    yield name
    left = slurm.cancel(name)
    assert not left, f"the test left SLURM jobs {left} ({name}) queued or running; cancelled them"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An MLflow sqlite database with its tables made, once per session (tests/helpers/tracking.py)."""
    from tests.helpers import tracking

    return tracking.make_empty_store(tmp_path_factory.mktemp("mlflow_template"))
