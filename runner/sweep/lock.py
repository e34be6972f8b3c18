"""One sweep per folder: an exclusive `flock` on `SWEEP/.sweep.lock` for the sweep's life.

Two sweeps into one folder (the same `hydra.sweep.dir=` or `resume=`) would write the same
job folders, and the second would overwrite the first's results without a word. So the
launching process takes this lock when the multirun starts (the first `on_multirun_start`
callback, before the sweeper writes `multirun.yaml` and before any job runs) and keeps it
until it exits; a second sweep into the locked folder is refused (`FolderInUse`) before it
writes anything there.

- The kernel releases an `flock` when the last descriptor of it closes, so the lock goes
  with the process however it ends, SIGKILL included: a finished or killed sweep's folder
  can be resumed at once. The file itself stays (removing it would let two processes lock
  two different files of one name).
- The holder writes its pid into the file, for the refusal's message, and empties it on
  release (so two finished sweeps leave the same files, whatever their pids).
- Jobs in other processes (joblib, submitit) do not take it: the launching process holds
  it while it waits for them. If the launching process is killed, jobs a cluster already
  started may still run; the lock cannot cover those.
- A file system without `flock` support (some network mounts) cannot lock: the sweep runs
  unlocked, with one warning line.

`FolderInUse` is a BaseException: Hydra turns an `Exception` raised in a callback into a
warning and goes on, so the refusal would not stop the sweep. `runner.cli.main` reports it
as a config error (exit 2, one line).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import sys
from pathlib import Path
from typing import Optional, Tuple

LOCK_FILE = ".sweep.lock"

# (folder, descriptor) of the lock this process holds, if any.
_held: Optional[Tuple[Path, int]] = None
_registered = False


class FolderInUse(BaseException):
    """Another process holds the lock of this sweep folder."""

    def __init__(self, key: str, folder: Path, pid: Optional[int]):
        super().__init__(f"{key}: {folder} is in use by another sweep")
        self.key = key
        self.folder = folder
        self.pid = pid

    def headline(self) -> str:
        holder = f" (pid {self.pid})" if self.pid else ""
        return (
            f"config error: {self.key}: {str(self.folder)[-200:]!r} is in use by another sweep{holder}; "
            "wait for it to end, or choose another folder"
        )


def acquire(folder: Path, key: str = "hydra.sweep.dir") -> None:
    """Lock `folder` (made if missing) for this process, or raise `FolderInUse`.

    Taking the lock of a folder this process already holds does nothing; taking another
    folder's releases the first (one sweep at a time per process).
    """
    global _held, _registered
    if _held is not None:
        if _same(_held[0], folder):
            return
        release()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:  # the sweeper will fail on the folder itself, and say why
        print(f"warning: sweep folder {folder} not locked: {err.strerror}", file=sys.stderr)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        pid = _holder(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FolderInUse(key, folder, pid) from None
        print(
            f"warning: sweep folder {folder} not locked (its file system has no flock): {err.strerror}", file=sys.stderr
        )
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    if not _registered:  # emptied at exit; the kernel releases the lock itself
        atexit.register(release)
        _registered = True
    _held = (folder, fd)


def release() -> None:
    """Empty the lock file and release the lock (the process's exit would release it too)."""
    global _held
    if _held is None:
        return
    _, fd = _held
    _held = None
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    os.close(fd)


def held() -> Optional[Path]:
    """The folder whose lock this process holds, if any."""
    return _held[0] if _held is not None else None


def _holder(fd: int) -> Optional[int]:
    """The pid the holder wrote, if it did (it may be between locking and writing)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a == b
