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
from typing import Any, Dict, Iterator, List, Optional, Tuple

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
        total = 1
        for override in _sweep_overrides(config):
            if override.is_sweep_override():
                total *= len(list(override.sweep_string_iterator()))
        return total
    except Exception:  # an exotic sweep (glob over configs, ranges of floats): no total
        return None


def swept_keys(config: DictConfig) -> Optional[List[str]]:
    """The keys this command line's sweep overrides vary (`point.x=1.0,2.0`), in order; None if unknown."""
    try:
        return list(dict.fromkeys(o.key_or_group for o in _sweep_overrides(config) if o.is_sweep_override()))
    except Exception:
        return None


def _sweep_overrides(config: DictConfig) -> List[Any]:
    """The overrides of the sweep (sweeper params, then the command line), parsed by Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # the runner's sweeper (hydra_plugins/runner_launcher) is a BasicSweeper too
    if not str(config.hydra.sweeper.get("_target_", "")).endswith(("BasicSweeper", "RunnerSweeper")):
        raise ValueError("another sweeper")
    params = config.hydra.sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    return list(OverridesParser.create().parse_overrides(args))


def override_key(text: str) -> str:
    """`+point.x@pkg=2.0` -> `point.x`: the key an override sets."""
    return text.lstrip("+~").partition("=")[0].partition("@")[0]


def lock_key(config: DictConfig) -> str:
    """The key a refusal of a locked folder names: the one the user set, `resume` or the folder's."""
    return "resume" if config.get("resume") not in (None, "") else "hydra.sweep.dir"


def start(sweep_dir: Path, total: Optional[int], swept: Optional[List[str]] = None) -> None:
    """Reset the counters of a sweep folder and note the planned total, the swept keys and the start time."""
    (sweep_dir / PROGRESS_DIR).mkdir(parents=True, exist_ok=True)
    with _progress_dir(sweep_dir) as folder:
        for name in ("done", "failed", RAISED_FILE):
            _replace(folder, name, b"")
        _replace(folder, "plan.json", json.dumps({"total": total, "started": time.time(), "swept": swept}).encode())


def record(sweep_dir: Path, failed: bool) -> dict:
    """Count one finished job; return the counts so far (done, failed, total, elapsed_s) and
    the plan's `started` and `swept` keys."""
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
    swept = plan.get("swept")
    swept = [str(k) for k in swept] if isinstance(swept, list) else None
    return {
        "done": done,
        "failed": nfailed,
        "total": plan.get("total"),
        "elapsed_s": elapsed,
        "started": plan.get("started"),
        "swept": swept,
    }


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
    """`[2/3] #1 point.x=2.0: ok  dy/dx=12.0 | failed 0 | 1.2 s elapsed, ~0.6 s left`."""
    done, total, elapsed = counts["done"], counts["total"], counts["elapsed_s"]
    swept = f" {overrides}" if overrides else ""
    text = f"[{done}/{total if total else '?'}] #{job}{swept}: {outcome} | failed {counts['failed']}"
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
    fd = os.open(name, flags, 0o666, dir_fd=folder)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _replace(folder: int, name: str, data: bytes) -> None:
    """Make `name` in `folder` a new file holding `data`: written under a fresh name, then
    renamed over whatever was there (a link is replaced, not followed)."""
    tmp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
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


# At most this many elements of an array give columns (`dy/dx[0]`, ...); a larger one is in summary.json only
MAX_ELEMENTS = 16
# At most this many results on a job's line; the rest are counted
MAX_SHOWN = 8


def components(name: str, value: Any) -> List[Tuple[str, Any]]:
    """A derivative's scalar parts as (label, value): the value of a scalar; one per source of
    a mapping (`df/d(x,y)[x]`) and per block of a Hessian's (`hessian(f; u, v)[u,v]`); one per
    element of an array of up to MAX_ELEMENTS (`dy/dx[0]`, `df/d(x,y)[x][1,0]`). None for a
    larger array or one kept in arrays.npz. A leaf is a number, null, or "NaN"/"Infinity"."""
    out: List[Tuple[str, Any]] = []

    def walk(v: Any, keys: Tuple[str, ...]) -> None:
        label = name + (f"[{','.join(keys)}]" if keys else "")
        if isinstance(v, dict):
            if not ("array" in v and "summary" in v):  # a mapping source -> value, not a reference into arrays.npz
                for k, x in v.items():
                    walk(x, (*keys, str(k)))
        elif isinstance(v, list):
            leaves = list(_elements(v, ()))
            if len(leaves) <= MAX_ELEMENTS and all(_leaf(x) for _, x in leaves):
                out.extend((f"{label}[{','.join(map(str, at))}]", x) for at, x in leaves)
        elif _leaf(v):
            out.append((label, v))

    walk(value, ())
    return out


def _elements(v: Any, at: Tuple[int, ...]) -> Iterator[Tuple[Tuple[int, ...], Any]]:
    if isinstance(v, list):
        for i, x in enumerate(v):
            yield from _elements(x, (*at, i))
            if i > MAX_ELEMENTS:  # enough to know it is too large
                return
    else:
        yield at, v


def _leaf(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str)) and not isinstance(v, bool)


def outcome(job_dir: Path, code: Any, raised: Optional[BaseException], started: Any) -> str:
    """How a job went, from its run log: `ok  dz/dx=32.0`, `ok (RuntimeError as declared)`,
    `ok (kept, resume)`, `FAILED (exit 1): expected RuntimeError, got no error  dy/dx=6.0`."""
    from runner.record import console, log_reader

    if raised is not None:
        return f"FAILED ({type(raised).__name__}): {_first_line(str(raised))}"
    try:
        rec = log_reader.read_log(job_dir)
    except log_reader.BadLog as bad:
        return f"FAILED (exit {code}): {_first_line(str(bad))}" if code else f"ok ({_first_line(str(bad))})"
    err, met = rec.get("error"), rec["expect"]["met"]
    begun = (rec.get("timing") or {}).get("started")
    results = [(label, v) for d in rec["derivatives"] for label, v in components(d["name"], d["value"])]
    shown = "  " + " ".join(f"{label}={console.show(v)}" for label, v in results[:MAX_SHOWN]) if results else ""
    if len(results) > MAX_SHOWN:
        shown += f" (+{len(results) - MAX_SHOWN} more)"
    if met:
        kept = isinstance(begun, (int, float)) and isinstance(started, (int, float)) and begun < started
        notes = ([f"{err['type']} as declared"] if err else []) + (["kept, resume"] if kept else [])
        return "ok" + (f" ({', '.join(notes)})" if notes else "") + shown
    if err and err["type"] == "ConfigError":
        reason = f"config error: {err['message']}"
    else:
        said = f"{err['type']}: {_first_line(err['message'])}" if err else ""
        mismatches = [
            f"unexpected {said}" if err and m == f"unexpected {err['type']}" else m for m in rec["expect"]["mismatches"]
        ]
        reason = "; ".join(mismatches) or said
    return f"FAILED (exit {code}): {_first_line(reason)}" + shown


def _first_line(text: str, width: int = 160) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first if len(first) <= width else first[: width - 3] + "..."


def console_level(config: DictConfig) -> str:
    """The job's `log.console` (quiet, normal, verbose); normal when it is not one of them."""
    from omegaconf import OmegaConf

    level = OmegaConf.select(config, "log.console", default="normal")
    level = getattr(level, "value", level)
    return str(level) if level in ("quiet", "normal", "verbose") else "normal"


class Progress(Callback):
    """Hydra callback: print one line per finished job of a sweep (only the failed ones when
    `log.console=quiet`): its number, swept values, outcome, scalar results and the counts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = folders.sweep_dir(config)
        lock.acquire(sweep_dir, lock_key(config))  # before the counters of a sweep still running are reset
        start(sweep_dir, planned_jobs(config), swept_keys(config))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        sweep_dir, job_dir = folders.sweep_dir(config), Path(config.hydra.runtime.output_dir)
        code, raised = job_return._return_value, None
        if job_return.status != JobStatus.COMPLETED:
            code, raised = None, job_return._return_value
            if isinstance(raised, BaseException):
                record_raised(sweep_dir, job_dir, raised)
            else:
                raised = RuntimeError(str(raised))
        counts = record(sweep_dir, failed=code != 0)
        if code == 0 and console_level(config) == "quiet":
            return
        overrides = job_overrides(config.hydra.overrides.task)
        swept = counts["swept"]
        if swept:  # the swept values only; every override when the sweep's keys are unknown
            overrides = [o for o in overrides if override_key(o) in swept]
        said = outcome(job_dir, code, raised, counts["started"])
        print(line(counts, str(config.hydra.job.num), " ".join(overrides), said), flush=True)
