"""Reading a run log back, whole or not at all.

`read_log` is how resume (`runner.sweep.resume`), `runner.report`, `runner.rerun` and the
sweep summary read a `results.json` that may come from anywhere: read with a size cap, never
a FIFO or a link, checked for every key a finished job writes and each of its types, and the
tensors it keeps in `arrays.npz` present by name, shape and dtype, each as many bytes as its
header says. Anything else is a `BadLog` whose text names the file and what is wrong, in one
short line.

A run folder is read where it is: `open_in_run` follows no link from the folder down (not the
folder itself, not `.hydra`, not the file), so Hydra's files beside the log
(`runner.config.overrides`, the saved config `runner.rerun` runs) are read the same way.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple

from runner.config import files
from runner.errors import short
from runner.record import runlog

# A run log larger than this is not read: with the default log.max_inline_elements (10,000)
# a log is kB to a few MB; only a very large setting of it makes a legitimate one this big.
LOG_LIMIT = 256 * 2**20
_NON_FINITE = ("NaN", "Infinity", "-Infinity")  # how a run log spells them (runlog.plain)


class BadLog(ValueError):
    """A `results.json` (or the `arrays.npz` it references) that is not a whole run log."""


def read_log(folder: Path) -> Dict[str, Any]:
    """The run log in `folder`, checked whole: every key a finished job writes, of its type,
    and every tensor it keeps in arrays.npz present (by name, shape and dtype); else a `BadLog`.
    A folder that is a link, or whose `.hydra` is one, is a `BadLog` too: it is not followed."""
    path = folder / runlog.RESULTS_FILE
    with open_in_run(folder, runlog.RESULTS_FILE) as f:
        data = read_open(f, path, LOG_LIMIT)
    hydra = folder / HYDRA_DIR
    if os.path.islink(hydra):
        raise BadLog(f"{hydra} is a symbolic link; {_NOT_THROUGH_LINKS}")
    record = _parse(path, data)
    refs: List[Tuple[str, Dict[str, Any]]] = []
    try:
        problem = _record_problem(record, refs)
    except RecursionError:
        problem = "nested too deeply to read"
    if problem:
        raise BadLog(f"{path}: {problem}")
    if refs:
        _check_arrays(folder, refs)
    return record


HYDRA_DIR = ".hydra"  # Hydra's files of a job: config.yaml, hydra.yaml, overrides.yaml
_NOT_THROUGH_LINKS = "a run folder is read where it is, never through a link"
_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


def open_in_run(folder: Path, *names: str) -> BinaryIO:
    """The regular file `folder/names...`, opened for reading without following a link: not
    `folder` itself, no folder below it, not the file. Each is opened relative to the one
    before, so none can be swapped for a link in between; what is opened is what is checked
    (a FIFO does not block, a device is refused). Else a `BadLog` naming the path."""
    path = folder
    fd = _open_no_link(str(folder), path, None, directory=True)
    for i, name in enumerate(names):
        path = path / name
        try:
            child = _open_no_link(name, path, fd, directory=i < len(names) - 1)
        finally:
            os.close(fd)
        fd = child
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise BadLog(f"{path} is {files.kind_of(mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def _open_no_link(name: str, path: Path, dir_fd: Optional[int], directory: bool) -> int:
    try:
        return os.open(name, _OPEN | (os.O_DIRECTORY if directory else 0), dir_fd=dir_fd)
    except OSError as err:
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        if link:  # ELOOP, or ENOTDIR for a folder's link: say what it is
            raise BadLog(f"{path} is a symbolic link; {_NOT_THROUGH_LINKS}") from None
        raise BadLog(f"{path}: {err.strerror or err}") from None
    except ValueError:  # a NUL in the name
        raise BadLog(f"{path}: not a file name") from None


def read_open(f: BinaryIO, path: Path, limit: int) -> bytes:
    """The bytes of an open regular file, at most `limit` of them (checked before reading,
    and again while reading, as a size can be misreported); else a `BadLog`."""
    size = os.fstat(f.fileno()).st_size
    if size > limit:
        raise BadLog(f"{path} is {size:,} bytes; the limit is {limit:,}")
    try:
        data = f.read(limit + 1)
    except OSError as err:
        raise BadLog(f"{path}: {err.strerror or err}") from None
    if len(data) > limit:
        raise BadLog(f"{path} holds more than {limit:,} bytes; the limit is {limit:,}")
    return data


class _NotStrict(ValueError):
    pass


def _not_strict(constant: str) -> Any:
    raise _NotStrict(constant)


def _parse(path: Path, data: bytes) -> Dict[str, Any]:
    if not data.strip():
        raise BadLog(f"{path}: empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadLog(f"{path}: not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start:,})") from None
    try:
        record = json.loads(text, parse_constant=_not_strict)
    except json.JSONDecodeError as err:
        end = len(text.rstrip())
        if err.pos >= end or err.msg.startswith("Unterminated string"):
            raise BadLog(f"{path}: truncated: the JSON stops at line {text.count(chr(10), 0, end) + 1}") from None
        raise BadLog(f"{path}: not JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    except _NotStrict as err:
        raise BadLog(f"{path}: not strict JSON: {err} is not a JSON number") from None
    except RecursionError:
        raise BadLog(f"{path}: nested too deeply to read") from None
    if not isinstance(record, dict):
        raise BadLog(f"{path}: JSON but not an object: {_show(record)}")
    return record


# What a finished job writes (runner/job.py), as kinds: a schema's name, a simple kind below,
# "[kind]" a list of them, "{kind}" an object of them, "kind|null"; a key ending in "?" may be
# absent (a refused config's log has no warnings, tape or artifacts); "*" is every other key.
_SCHEMAS: Dict[str, Dict[str, str]] = {
    "log": {
        "experiment": "text",
        "config_sha256": "sha256",
        "status": "status",
        "values": "{value}",
        "derivatives": "[derivative]",
        "error": "error|null",
        "expect": "expect",
        "environment": "object",
        "timing": "timing",
        "warnings?": "[line]",
        "tape?": "object",
        "artifacts?": "object",
    },
    "derivative": {
        "name": "text",
        "kind": "text",
        "target": "text",
        "sources": "[text]",
        "order": "whole",
        "value": "value",
        "check?": "check",
    },
    "check": {"method": "text", "passed?": "bool|null", "reason?": "text", "reference?": "value"},
    "error": {"type": "text", "message": "line", "derivative?": "text|null", "step?": "text|null"},
    "expect": {"declared": "object|null", "met": "bool", "mismatches": "[text]"},
    "timing": {"started": "number", "*": "number"},
    "reference": {"array": "array", "summary": "object"},
    "array": {"file": "arrays.npz", "key": "text", "shape": "[size]", "dtype": "text"},
}
_SIMPLE: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "text"),
    "line": (lambda v: isinstance(v, str) and v != "", "a message"),  # console.py shows its first line
    "number": (lambda v: _number(v), "a number"),
    "whole": (lambda v: type(v) is int, "a whole number"),
    "size": (lambda v: type(v) is int and v >= 0, "a size"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "sha256": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None, "a SHA-256 in hex"),
    "status": (lambda v: v in ("ok", "error"), "'ok' or 'error'"),
    runlog.ARRAYS_FILE: (lambda v: v == runlog.ARRAYS_FILE, repr(runlog.ARRAYS_FILE)),
}
_Refs = List[Tuple[str, Dict[str, Any]]]  # (where, the `array` mapping) of each tensor in arrays.npz


def _record_problem(rec: Dict[str, Any], refs: _Refs) -> Optional[str]:
    """What is wrong with a parsed log, in a few words naming the key; None when it is whole.
    The tensors it keeps in arrays.npz are added to `refs`."""
    version = rec.get("schema_version")
    if type(version) is not int or version != runlog.SCHEMA_VERSION:
        found = _show(version) if "schema_version" in rec else "missing"
        return f"schema_version is {found}; this runner reads {runlog.SCHEMA_VERSION}"
    return _check(rec, "log", "", refs)


def _check(v: Any, kind: str, where: str, refs: _Refs) -> Optional[str]:
    if kind.endswith("|null"):
        return None if v is None else _check(v, kind[: -len("|null")], where, refs)
    if kind[0] in "[{":
        items = enumerate(v) if isinstance(v, list) else v.items() if isinstance(v, dict) else None
        if items is None or (kind[0] == "[") != isinstance(v, list):
            return f"{where} is {_show(v)}, expected {'a list' if kind[0] == '[' else 'an object'}"
        at = "{}[{}]" if kind[0] == "[" else "{}.{}"
        return _first(_check(x, kind[1:-1], at.format(where, k), refs) for k, x in items)
    if kind == "value":
        return _value(v, where, refs)
    if kind in _SCHEMAS:
        if not isinstance(v, dict):
            return f"{where} is {_show(v)}, expected an object"
        schema = _SCHEMAS[kind]
        for key, part in schema.items():
            name = key.rstrip("?")
            at = f"{where}.{name}" if where else name
            if name == "*":
                problem = _first(_check(x, part, f"{where}.{k}", refs) for k, x in v.items() if k not in schema)
            elif name not in v:
                problem = None if key.endswith("?") else f"missing key {at}"
            else:
                problem = _check(v[name], part, at, refs)
            if problem:
                return problem
        return None
    test, what = _SIMPLE[kind]
    return None if test(v) else f"{where} is {_show(v)}, expected {what}"


def _value(v: Any, where: str, refs: _Refs) -> Optional[str]:
    """A logged value: null, a number or nested lists of them (non-finite ones spelt "NaN",
    "Infinity", "-Infinity"), a reference into arrays.npz, or a mapping source -> value."""
    if v is None:
        return None
    if isinstance(v, dict):
        if "array" not in v:
            return _first(_value(x, f"{where}.{k}", refs) for k, x in v.items())
        problem = _check(v, "reference", where, refs)
        if not problem:
            refs.append((where, v["array"]))
        return problem
    level = [v]
    while any(isinstance(x, list) for x in level):  # level by level: no recursion, and rectangular
        if not all(isinstance(x, list) for x in level) or len({len(x) for x in level}) > 1:
            return f"{where} is not a number or rectangular nested lists of numbers"
        level = [y for x in level for y in x]
    bad = next((x for x in level if not (_number(x) or isinstance(x, bool) or x in _NON_FINITE)), None)
    return None if bad is None else f"{where} holds {_show(bad)}, not a number"


def _check_arrays(folder: Path, refs: _Refs) -> None:
    """Every referenced tensor is in arrays.npz with its shape and dtype, and as many bytes as
    they take, all inside the file (headers only: the data is read by whoever uses it,
    `runner.rerun`, which can then trust its size)."""
    from numpy.lib import format as npy

    npz = folder / runlog.ARRAYS_FILE
    if not os.path.lexists(npz):
        raise BadLog(f"{folder / runlog.RESULTS_FILE}: {npz.name}, which holds {refs[0][0]}, is missing")
    try:
        with open_in_run(folder, runlog.ARRAYS_FILE) as f, zipfile.ZipFile(f) as archive:
            file_size = os.fstat(f.fileno()).st_size
            names = set(archive.namelist())
            for where, array in refs:
                key = _show(array["key"])
                if f"{array['key']}.npy" not in names:
                    raise BadLog(f"{npz} has no {key} (for {where})")
                info = archive.getinfo(f"{array['key']}.npy")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise BadLog(f"{npz}: {key} is compressed; np.savez stores arrays as they are")
                with archive.open(info) as m:
                    version = npy.read_magic(m)
                    read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise BadLog(f"{npz}: {key} has .npy format version {version}")
                    shape, _, dtype = read_header(m)
                    needs = m.tell() + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
                if list(shape) != array["shape"] or dtype.hasobject or str(dtype) != array["dtype"]:
                    raise BadLog(f"{npz}: {key} is {dtype} of shape {list(shape)}, not as the log says")
                if info.file_size != needs or info.compress_size != needs:  # stored: the same
                    raise BadLog(
                        f"{npz}: {key} holds {info.file_size:,} bytes; its header ({dtype}, {list(shape)}) needs {needs:,}"
                    )
                if info.header_offset + info.compress_size > file_size:
                    raise BadLog(f"{npz}: {key} would hold {needs:,} bytes, beyond the end of the file ({file_size:,})")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as err:
        if isinstance(err, BadLog):
            raise
        raise BadLog(f"{npz} is corrupt: {short(str(err).splitlines()[0] if str(err) else repr(err))}") from None


def _first(problems: Iterator[Optional[str]]) -> Optional[str]:
    return next((p for p in problems if p), None)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v: Any) -> str:
    """A short, escaped form of a value for a message: 'text', 2, null, a list, an object."""
    if isinstance(v, str):
        return short(v)
    return "a list" if isinstance(v, list) else "an object" if isinstance(v, dict) else json.dumps(v)
