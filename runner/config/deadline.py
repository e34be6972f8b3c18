"""A bound on work the runner cannot bound by size: composing and resolving a config.

A config folder of small files can still ask Hydra and OmegaConf for exponential work: a
defaults tree where each file includes the next twice (16 files of 13 KB took 43 s), or
interpolations each naming the one before twice (26 steps ran past 200 s; doubled text grew
250 MB a second). Counting that work would mean re-implementing Hydra's defaults tree and
OmegaConf's resolution (which offers no hook to count), so the runner bounds its time and its
memory instead: a timer signal checks every `TICK` seconds, between any two Python steps, and
raises `DeadlineExceeded` once the block has run `RUNNER_COMPOSE_SECONDS` (30 s) or grown the
process's peak memory by `MEMORY` (512 MiB). It is a `BaseException`, like
`KeyboardInterrupt`, so no `except Exception` in Hydra or OmegaConf turns it into something
else; `runner.cli` and `runner.rerun` report it in one line. Normal configs take well under a
second and a few MB. Outside the main thread (signals cannot be delivered there), or inside a
block already bounded, the bound is the outer one's.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

# How long composing one config (Hydra) and resolving its interpolations (OmegaConf) may take;
# the person running the command may change it (RUNNER_COMPOSE_SECONDS=120), a config cannot.
COMPOSE_SECONDS = 30.0
ENV = "RUNNER_COMPOSE_SECONDS"
MEMORY = 512 * 2**20  # more peak memory than at the start of the block
TICK = 0.05  # how often the bound is checked, in seconds


class DeadlineExceeded(BaseException):
    """The work named `what` took longer than its time, or more than its memory."""

    def __init__(self, what: str, took: str):
        super().__init__(f"{what} took {took}")
        self.what = what
        self.took = took

    def headline(self) -> str:
        return (
            f"config error: {self.what} took {self.took}; a config that asks for that much "
            f"(a defaults list, aliases or interpolations that repeat each other) is refused ({ENV} raises the time)"
        )


@contextmanager
def deadline(what: str) -> Iterator[None]:
    """Raise `DeadlineExceeded` if the block runs longer than `RUNNER_COMPOSE_SECONDS` or
    grows the peak memory by more than `MEMORY`."""
    try:
        seconds = float(os.environ.get(ENV, COMPOSE_SECONDS))
    except ValueError:
        seconds = COMPOSE_SECONDS
    if not seconds > 0:  # 0 (or NaN): no bound on time; memory is still bounded
        seconds = float("inf")
    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_REAL)[0]:
        yield  # not the main thread, or a bound already runs (nested): the outer one holds
        return
    end, start_peak = time.monotonic() + seconds, _peak_memory()

    def check(signum: int, frame: Any) -> None:
        if _peak_memory() - start_peak > MEMORY:
            raise DeadlineExceeded(what, f"over {MEMORY >> 20} MiB")
        if time.monotonic() > end:
            raise DeadlineExceeded(what, f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, check)
    signal.setitimer(signal.ITIMER_REAL, TICK, TICK)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _peak_memory() -> int:
    """The process's own peak resident memory so far, in bytes: Linux's VmHWM, since
    `ru_maxrss` keeps the peak of the process this one was forked from (a test runner
    holding TensorFlow: 1.6 GB) across exec, and would hide growth below it."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # macOS counts bytes, Linux KiB
    return peak if sys.platform == "darwin" else peak * 1024
