"""Progress of a sweep: one line per finished job, with jobs done, failures and time left.

Hydra calls `on_job_end` in the process that ran the job: the launching process under the
basic launcher, a worker process under joblib (whose output reaches the same terminal), a
separate process whose output goes to its log file under submitit. So the counts cannot
live in memory: they are two counter files in the sweep folder, `.progress/done` and
`.progress/failed`, to which each job appends one byte (an O_APPEND write, safe between
processes); the counts are their sizes. Per job this costs one append and two `stat`s,
whatever the sweep's size. A job that raised (a fault of the runner: it left no complete
`results.json`) also appends one line to `.progress/raised`, its folder and error, so the
summary can mark it whichever process ran it.

A sweep folder may come from someone else, so none of these files is written through a
link: `start` renames a new file over each (replacing a link, not following it), and the
appends open with O_NOFOLLOW, inside a `.progress` opened with O_NOFOLLOW too (a link there
is an `OSError`). The sweep refuses a folder holding a link before it starts
(`lock.check_folder`); this holds against one planted while it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.config import files
from runner.config.overrides import job_overrides
from runner.errors import ConfigError
from runner.sweep import folders, lock

PROGRESS_DIR = ".progress"
RAISED_FILE = "raised"


def planned_jobs(config: DictConfig) -> Optional[int]:
    """How many jobs the basic sweeper will launch for this command line; None if unknown."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        # the runner's sweeper (hydra_plugins/runner_launcher) is a BasicSweeper too
        if not str(config.hydra.sweeper.get("_target_", "")).endswith(("BasicSweeper", "RunnerSweeper")):
            return None
        params = config.hydra.sweeper.get("params") or {}
        args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
        total = 1
        for override in OverridesParser.create().parse_overrides(args):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # an exotic sweep (glob over configs, ranges of floats): no total
        return None


def lock_key(config: DictConfig) -> str:
    """The key a refusal of a locked folder names: the one the user set, `resume` or the folder's."""
    return "resume" if config.get("resume") not in (None, "") else "hydra.sweep.dir"


def start(sweep_dir: Path, total: Optional[int]) -> None:
    """Reset the counters of a sweep folder and note the planned total and the start time."""
    (sweep_dir / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    with _progress_dir(sweep_dir) as folder:
        for name in ("done", "failed", RAISED_FILE):
            _replace(folder, name, b"")
        _replace(folder, "plan.json", json.dumps({"total": total, "started": time.time()}).encode())


def record(sweep_dir: Path, failed: bool) -> dict:
    """Count one finished job; return the counts so far (done, failed, total, elapsed_s)."""
    try:
        plan = json.loads(read_small(sweep_dir / PROGRESS_DIR / "plan.json"))
    except (OSError, ValueError):
        plan = {"total": None, "started": None}
    with _progress_dir(sweep_dir) as folder:
        _append(folder, "done", b".")
        if failed:
            _append(folder, "failed", b".")
        done = os.stat("done", dir_fd=folder, follow_symlinks=False).st_size
        nfailed = os.stat("failed", dir_fd=folder, follow_symlinks=False).st_size
    elapsed = time.time() - plan["started"] if plan.get("started") else None
    return {"done": done, "failed": nfailed, "total": plan.get("total"), "elapsed_s": elapsed}


def record_raised(sweep_dir: Path, job_dir: Path, err: BaseException) -> None:
    """Note that the job in `job_dir` raised `err` (one line, appended atomically)."""
    first = (str(err).strip().splitlines() or [""])[0][:200]
    text = json.dumps({"folder": job_dir.name, "error": f"{type(err).__name__}: {first}"}) + "\n"
    with _progress_dir(sweep_dir) as folder:
        _append(folder, RAISED_FILE, text.encode())  # one short write: lines from parallel jobs never mix


def raised(sweep_dir: Path) -> Dict[str, str]:
    """The jobs of this launch that raised: job folder name -> `Type: message`."""
    out: Dict[str, str] = {}
    try:
        lines = read_small(sweep_dir / PROGRESS_DIR / RAISED_FILE).splitlines()
    except (OSError, ValueError):
        return out
    for text in lines:
        try:
            entry = json.loads(text)
            out[str(entry["folder"])] = str(entry["error"])
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short by a full disk: that job shows as missing instead
    return out


def counts(sweep_dir: Path) -> Optional[dict]:
    """The counts of a sweep folder as its jobs left them; None when it has none."""
    folder = sweep_dir / PROGRESS_DIR
    try:
        plan = json.loads(read_small(folder / "plan.json"))
        return {
            "done": (folder / "done").stat().st_size,
            "failed": (folder / "failed").stat().st_size,
            "total": plan.get("total"),
        }
    except (OSError, ValueError):
        return None


def read_small(path: Path, limit: int = 1 << 20) -> str:
    """A small bookkeeping file of a sweep folder, as text; `ValueError` when it is not a
    regular file under `limit` bytes (a FIFO there must not hang a summary or a report)."""
    try:
        return files.read_bounded(path, path.name, limit).decode(errors="replace")
    except ConfigError as err:
        raise ValueError(err.message) from None


def line(counts: dict, job: str, overrides: str, outcome: str) -> str:
    """`[2/3] #1 point.x=2.0: ok | failed 0 | 1.2 s elapsed, ~0.6 s left`."""
    done, total, elapsed = counts["done"], counts["total"], counts["elapsed_s"]
    text = f"[{done}/{total if total else '?'}] #{job} {overrides}: {outcome} | failed {counts['failed']}"
    if elapsed is not None:
        text += f" | {_duration(elapsed)} elapsed"
        if total and done < total:
            text += f", ~{_duration(elapsed / done * (total - done))} left"
    return text


@contextlib.contextmanager
def _progress_dir(sweep_dir: Path) -> Iterator[int]:
    """A descriptor of `SWEEP/.progress`, opened without following a link there."""
    fd = os.open(sweep_dir / PROGRESS_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _append(folder: int, name: str, data: bytes) -> None:
    """Append `data` to `name` in `folder` (made if missing); never through a link or into a FIFO."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(name, flags, 0o644, dir_fd=folder)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _replace(folder: int, name: str, data: bytes) -> None:
    """Make `name` in `folder` a new file holding `data`: written under a fresh name, then
    renamed over whatever was there (a link is replaced, not followed)."""
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=folder)
    try:
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=folder)
        except FileNotFoundError:
            pass
        raise


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress(Callback):
    """Hydra callback: print one progress line per finished job of a sweep."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = folders.sweep_dir(config)
        lock.acquire(sweep_dir, lock_key(config))  # before the counters of a sweep still running are reset
        start(sweep_dir, planned_jobs(config))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.COMPLETED:
            code = job_return._return_value
            outcome = "ok" if code == 0 else f"FAILED (exit {code})"
        else:
            outcome = f"FAILED ({type(job_return._return_value).__name__})"
            if isinstance(job_return._return_value, BaseException):
                record_raised(
                    folders.sweep_dir(config), Path(config.hydra.runtime.output_dir), job_return._return_value
                )
        counts = record(folders.sweep_dir(config), failed=not outcome.startswith("ok"))
        print(
            line(counts, str(config.hydra.job.num), " ".join(job_overrides(config.hydra.overrides.task)), outcome),
            flush=True,
        )
