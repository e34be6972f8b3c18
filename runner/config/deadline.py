"""A wall-clock bound on work the runner cannot bound by size: composing and resolving a config.

A config folder of small files can still ask Hydra and OmegaConf for exponential work: a
defaults tree where each file includes the next twice (16 files of 13 KB took 43 s), or
interpolations each naming the one before twice (26 steps ran past 200 s). Counting that
work would mean re-implementing Hydra's defaults tree and OmegaConf's resolution, so the
runner bounds its time instead: past `seconds`, `DeadlineExceeded` is raised in the main
thread. It is a `BaseException`, like `KeyboardInterrupt`, so no `except Exception` in
Hydra or OmegaConf turns it into something else; `runner.cli` reports it in one line, exit 2.
Normal configs compose in well under a second. Outside the main thread (where signals
cannot be delivered) the bound is not applied.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

# How long composing one config (Hydra) and resolving its interpolations (OmegaConf) may take;
# the person running the command may change it (RUNNER_COMPOSE_SECONDS=120), a config cannot.
COMPOSE_SECONDS = 30.0
ENV = "RUNNER_COMPOSE_SECONDS"


class DeadlineExceeded(BaseException):
    """The work named `what` took longer than `seconds`."""

    def __init__(self, what: str, seconds: float):
        super().__init__(f"{what} took over {seconds:g} s")
        self.what = what
        self.seconds = seconds

    def headline(self) -> str:
        return (
            f"config error: {self.what} took over {self.seconds:g} s; a config that asks for that much "
            f"(a defaults list or interpolations that repeat each other) is refused ({ENV} raises the bound)"
        )


@contextmanager
def deadline(what: str) -> Iterator[None]:
    """Raise `DeadlineExceeded` if the block runs longer than `RUNNER_COMPOSE_SECONDS` (30 s)."""
    try:
        seconds = float(os.environ.get(ENV, COMPOSE_SECONDS))
    except ValueError:
        seconds = COMPOSE_SECONDS
    if (
        not seconds > 0
        or threading.current_thread() is not threading.main_thread()
        or signal.getitimer(signal.ITIMER_REAL)[0]
    ):
        yield  # not the main thread, or a deadline already runs (nested): the outer one holds
        return

    def expire(signum: int, frame: Any) -> None:
        raise DeadlineExceeded(what, seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
