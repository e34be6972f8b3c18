"""Reading a file a config names, with bounds: what the runner reads is never unbounded.

A config folder or a point file may come from anyone, so a file is read only when it is a
regular file (not a FIFO, which would block forever, nor a device such as `/dev/zero`, which
never ends), within a size cap checked before reading, and, when a folder is given, only if
it stays inside that folder once every symlink is resolved. At most `limit` bytes are read
even when the size the file system reports is wrong (`/proc` files report 0).

Refusals are `ConfigError`s naming the key and the file; nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Optional

from runner.errors import ConfigError


def resolve(path: Path, key: str, inside: Optional[Path] = None, name: Optional[str] = None) -> Path:
    """`path` with every symlink resolved; a `ConfigError` for a loop, a missing file, or
    (when `inside` is given) a path that leads out of the folder `inside`. `name` is how
    messages refer to the file (default: its path; "it" when the key already names it)."""
    shown = name or str(path)
    try:
        real = Path(os.path.realpath(path, strict=True))
    except OSError as err:
        raise ConfigError(key, f"{shown}: {err.strerror or err}") from None
    if inside is not None:
        root = Path(os.path.realpath(inside))
        if real != root and root not in real.parents:
            raise ConfigError(key, f"{shown} leads to {real}, outside its folder {root}")
    return real


def read_bounded(path: Path, key: str, limit: int, inside: Optional[Path] = None, name: Optional[str] = None) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them, else a `ConfigError`."""
    shown = name or str(path)
    with open_regular(resolve(path, key, inside, name), key, shown) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ConfigError(key, f"{shown} is {size:,} bytes; the limit is {limit:,}")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ConfigError(key, f"{shown} holds more than {limit:,} bytes; the limit is {limit:,}")
    return data


def open_regular(path: Path, key: str, name: Optional[str] = None) -> BinaryIO:
    """`path` opened for reading if it is a regular file; a `ConfigError` otherwise. Opening
    never blocks (a FIFO) and what is opened is what is checked (no race with a rename)."""
    shown = name or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ConfigError(key, f"{shown}: {err.strerror or err}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(key, f"{shown} is {_kind(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"
