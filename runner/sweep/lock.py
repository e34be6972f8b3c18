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

Before locking, `check_folder` refuses a folder that holds a symbolic link (or a FIFO, a
socket, a device) anywhere in it (`UnsafeFolder`). A sweep folder can be shared, or come
from someone else (`resume=PATH`, `hydra.sweep.dir=PATH`), and Hydra writes into it with
plain `open()`: `multirun.yaml` (right after this callback), each job's `.hydra/*.yaml` and
log file (for a job the resume then skips, too), and makes the job folders it lacks (`N/`,
`N/.hydra/`) with `mkdir(exist_ok=True)`, which goes through a link to a folder. The runner
cannot open those files itself, so it refuses the folder before Hydra writes any of them.
The folder itself may be reached through a link the user typed; links inside it are refused.
Only submitit's own `.submitit/.submission_file_<uuid>.sh` links are allowed (its SLURM
executor leaves one per submission; nothing writes through them).

The walk is bounded: it lists at most `MAX_ENTRIES` entries (about 4 microseconds each: a
sweep folder of 100,000 entries takes 0.4 s, one at the cap about 4 s) and refuses a
folder that holds more, since what it did not see it cannot vouch for; it keeps no more
than the folders still to list. A folder that cannot be listed is refused too.
It checks a folder at rest: someone who can write into the folder while the sweep runs can
still plant a link, and the runner's own writers never follow one (they open with
O_NOFOLLOW, or rename a new file into place), but Hydra's would.

`FolderInUse` and `UnsafeFolder` are BaseExceptions (`Refused`): Hydra turns an `Exception`
raised in a callback into a warning and goes on, so the refusal would not stop the sweep.
`runner.cli.main` reports them as config errors (exit 2, one line).
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
import re
import stat
import sys
from pathlib import Path
from typing import List, Optional, Tuple

LOCK_FILE = ".sweep.lock"
# At most this many entries of a sweep folder are looked at for links; a folder with more is
# refused. A job folder of the default layout has 7 (N/, .hydra/ and its three files, the
# log, results.json), so about 140,000 jobs.
MAX_ENTRIES = 1_000_000
# submitit's SLURM executor leaves `.submitit/.submission_file_<uuid4 hex>.sh` -> the job's script
_SUBMITIT_LINK = re.compile(r"\.submission_file_[0-9a-f]{32}\.sh")

# (folder, descriptor) of the lock this process holds, if any.
_held: Optional[Tuple[Path, int]] = None
_registered = False


class Refused(BaseException):
    """A sweep cannot use this folder; `headline()` is the one line that says why."""

    def __init__(self, key: str, folder: Path, why: str):
        super().__init__(f"{key}: {folder} {why}")
        self.key = key
        self.folder = folder
        self.why = why

    def headline(self) -> str:
        return f"config error: {self.key}: {str(self.folder)[-200:]!r} {self.why}"


class FolderInUse(Refused):
    """Another process holds the lock of this sweep folder."""

    def __init__(self, key: str, folder: Path, pid: Optional[int]):
        holder = f" (pid {pid})" if pid else ""
        super().__init__(
            key, folder, f"is in use by another sweep{holder}; wait for it to end, or choose another folder"
        )
        self.pid = pid


class UnsafeFolder(Refused):
    """The folder holds a link (or a special file) where a sweep would write, or too much to check."""


_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def check_folder(folder: Path, key: str = "hydra.sweep.dir", limit: int = MAX_ENTRIES) -> None:
    """Raise `UnsafeFolder` unless every entry under `folder` is a folder or a regular file
    (see the module's docstring); a folder not made yet has nothing to check."""
    pending: List[Tuple[str, Path]] = [("", folder)]
    seen = 0
    while pending:
        rel, path = pending.pop()
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            # not made yet (the sweep makes it; Hydra refuses a file there), or a folder
            # removed since it was listed (a running sweep's temporary one): nothing to check
            continue
        except OSError as err:
            raise UnsafeFolder(
                key, folder, f"holds a folder that cannot be listed, {_name(rel or '.')}: {err.strerror}"
            ) from None
        with entries:
            for entry in entries:
                seen += 1
                if seen > limit:
                    raise UnsafeFolder(
                        key,
                        folder,
                        f"holds more than {limit:,} entries, more than a sweep checks for links before it "
                        "writes into a folder: choose another folder",
                    )
                where = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((where, Path(entry.path)))
                elif entry.is_symlink():
                    if rel == ".submitit" and _SUBMITIT_LINK.fullmatch(entry.name):
                        continue
                    raise UnsafeFolder(
                        key,
                        folder,
                        f"holds a symbolic link, {_name(where)}; the sweep would write through it: "
                        "remove it, or choose another folder",
                    )
                elif not entry.is_file(follow_symlinks=False):
                    kind = _KINDS.get(stat.S_IFMT(entry.stat(follow_symlinks=False).st_mode), "a special file")
                    raise UnsafeFolder(
                        key,
                        folder,
                        f"holds {kind}, {_name(where)}; a sweep folder holds only folders and regular files: "
                        "remove it, or choose another folder",
                    )


def _name(where: str) -> str:
    """An entry's path in the folder, for a message: escaped, at most about 60 characters."""
    return repr(where if len(where) <= 60 else "..." + where[-57:])


def acquire(folder: Path, key: str = "hydra.sweep.dir") -> None:
    """Lock `folder` (made if missing) for this process, or raise `FolderInUse`; first
    refuse (`UnsafeFolder`) a folder with a link where the sweep writes (`check_folder`).

    Taking the lock of a folder this process already holds does nothing; taking another
    folder's releases the first (one sweep at a time per process).
    """
    global _held, _registered
    if _held is not None:
        if _same(_held[0], folder):
            return
        release()
    check_folder(folder, key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
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
