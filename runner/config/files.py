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
import re
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
    """`path` opened for reading if it is a regular file; a `ConfigError` otherwise. Nothing else
    is opened (opening a device may act: a watchdog, a tape), opening never blocks (a FIFO
    swapped in), and what is opened is what is checked (no race with a rename)."""
    shown, flags = name or str(path), os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        mode = os.stat(path).st_mode
        fd = os.open(path, flags) if stat.S_ISREG(mode) else -1
    except OSError as err:
        raise ConfigError(key, f"{shown}: {err.strerror or err}") from None
    if fd >= 0:
        mode = os.fstat(fd).st_mode
        if stat.S_ISREG(mode):
            return os.fdopen(fd, "rb")
        os.close(fd)  # swapped since it was looked at
    raise ConfigError(key, f"{shown} is {kind_of(mode)}, not a regular file")


def kind_of(mode: int) -> str:
    """What a file of this mode is, for a message: 'a FIFO', 'a character device', ..."""
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


_ANCHOR = re.compile(r"(?:^|[\s\[\]{},:?-])&[^\s\[\]{},]")


def check_yaml_size(text: str, key: str, limit: int = 100_000) -> None:
    """Refuse, as a `ConfigError`, YAML that would expand to more than `limit` nodes.

    An alias (`*a`) repeats what its anchor (`&a`) holds without repeating its text, so 362
    bytes of nested aliases expand to 10^6 nodes, and loading them took OmegaConf minutes
    (PyYAML shares the aliased node; OmegaConf copies it). The YAML is composed (parsed into
    PyYAML's node graph, which shares aliased nodes and is cheap) and its expanded size
    counted once per distinct node. Malformed YAML is left to the loader that reports it.
    """
    import yaml

    if not _ANCHOR.search(text):  # no anchor, no alias: nothing repeats (and no second parse)
        return
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return
    if root is None:
        return
    sizes: dict = {}
    open_: set = set()  # nodes whose children are being counted: meeting one again is a cycle
    stack = [(root, False)]
    while stack:  # post-order without recursion: a deep document must not overflow the stack
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = (
            [c for pair in node.value for c in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
            if isinstance(node, yaml.SequenceNode)
            else []
        )
        if done or not children:
            open_.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 1) for c in children)
            if sizes[id(node)] > limit:
                raise ConfigError(
                    key,
                    f"its YAML expands to over {limit:,} values (aliases of anchors repeat what they name); "
                    "write the values out, or put large data in a point file",
                )
        else:
            if any(id(c) in open_ or c is node for c in children):
                raise ConfigError(key, "its YAML holds an alias inside its own anchor (&a [*a]): a value without end")
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
