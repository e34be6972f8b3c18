"""Resuming a sweep: which jobs already hold a whole result made from the same inputs.

A job's `results.json` is written last and atomically, so its presence means the job
finished. It also records `config_sha256`, a digest of the job's resolved config and of the
bytes of every file the config reads (a point `{file: ...}`); a job is skipped on resume only
when that digest matches and its log is whole (`read_log`), so a folder whose job number now
means other overrides, a point file that changed, or a log edited or cut short is run again.

`read_log` is also how `runner.report` and `runner.rerun` read a log: a file from anywhere,
read with a size cap, never a FIFO or a link, checked for every key a finished job writes;
anything else is a `BadLog` whose text names the file and what is wrong, in one short line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from runner.config import files, points
from runner.errors import ConfigError
from runner.record import runlog

# Keys that say how to run, not what: they do not change a job's result.
_NOT_PART_OF_RESULT = ("resume",)
# A point file is hashed only up to what points.py would read (a .csv's cap, above a .npy's).
FILE_LIMIT = 32 * points.MAX_ELEMENTS
# A run log larger than this is not read: with the default log.max_inline_elements (10,000)
# a log is kB to a few MB; only a very large setting of it makes a legitimate one this big.
LOG_LIMIT = 256 * 2**20
_NON_FINITE = ("NaN", "Infinity", "-Infinity")  # how a run log spells them (runlog.plain)


class BadLog(ValueError):
    """A `results.json` (or the `arrays.npz` it references) that is not a whole run log."""


# ---------------------------------------------------------------- the digest


def config_digest(cfg: Mapping[str, Any]) -> str:
    """The SHA-256 of the resolved config, as canonical JSON, less the keys above, and of the
    contents of the files it reads. A config that reads no file has the digest it always had."""
    data = {k: v for k, v in cfg.items() if k not in _NOT_PART_OF_RESULT}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    # the search is at C speed; a config with no `file` key anywhere needs no walk
    contents = {where: _file_sha256(path) for where, path in config_files(data)} if '"file":' in text else {}
    if contents:
        text += "\nfiles:" + json.dumps(contents, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def config_files(cfg: Any, where: str = "") -> Iterator[Tuple[str, str]]:
    """(key, path) of every file generator `{file: PATH}` anywhere in the config: a point, a
    grid axis, `output_gradients`, `tangents`: wherever `points.evaluate` may read one."""
    stack: List[Tuple[str, Any]] = [(where, cfg)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, Mapping):
            if len(node) == 1 and isinstance(node.get("file"), str):
                yield key, node["file"]
                continue
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(node) if isinstance(v, (Mapping, list, tuple)))


def _file_sha256(text: str) -> Optional[str]:
    """The SHA-256 of a point file's bytes, as points.py would find it (relative to the
    working folder); None when points.py would refuse it unread (missing, not a regular
    file, not .npy or .csv, too large), so the job is refused, not run, either way."""
    path = Path(os.path.expanduser(text))
    if path.suffix.lower() not in points.FILE_SUFFIXES:
        return None
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > FILE_LIMIT:
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        return _sha256(f)


def _sha256(f: BinaryIO) -> Optional[str]:
    """The digest of an open file, streamed; None past FILE_LIMIT bytes (a size misreported)."""
    digest = hashlib.sha256()
    total = 0
    try:
        while chunk := f.read(1 << 20):
            total += len(chunk)
            if total > FILE_LIMIT:
                return None
            digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


# ---------------------------------------------------------------- is a kept result whole?


def kept(folder: Path, digest: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """(the record, None) when `folder` holds a whole run log made from the inputs `digest`
    stands for; (None, why) when it holds a log that cannot be kept, `why` one short line
    naming the file; (None, None) when it holds none (the job has not finished)."""
    path = folder / runlog.RESULTS_FILE
    if not os.path.lexists(path):
        return None, None
    try:
        record = read_log(folder)
    except BadLog as err:
        return None, str(err)
    if record["config_sha256"] != digest:
        return None, f"{path} was made from another config or other point files (config_sha256 differs)"
    return record, None


def completed(folder: Path, digest: str) -> Optional[Dict[str, Any]]:
    """The whole record in `folder` when it was made from the same inputs; else None."""
    return kept(folder, digest)[0]


def read_log(folder: Path) -> Dict[str, Any]:
    """The run log in `folder`, checked whole: every key a finished job writes, of its type,
    and every tensor it keeps in arrays.npz present (by name, shape and dtype); else a `BadLog`."""
    path = folder / runlog.RESULTS_FILE
    record = _parse(path, _read_regular(path, LOG_LIMIT))
    refs: List[Tuple[str, Dict[str, Any]]] = []
    try:
        problem = _record_problem(record, refs)
    except RecursionError:
        problem = "nested too deeply to read"
    if problem:
        raise BadLog(f"{path}: {problem}")
    if refs:
        _check_arrays(folder / runlog.ARRAYS_FILE, refs)
    return record


def _read_regular(path: Path, limit: int) -> bytes:
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise BadLog(f"{path} is a symbolic link; a run log is a regular file")
        return files.read_bounded(path, path.name, limit)
    except OSError as err:
        raise BadLog(f"{path}: {err.strerror or err}") from None
    except ConfigError as err:  # a FIFO, a device, a folder, over the limit
        raise BadLog(err.message) from None


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


def _check_arrays(npz: Path, refs: _Refs) -> None:
    """Every referenced tensor is in arrays.npz with its shape and dtype (headers only: the
    data is read by whoever uses it, `runner.rerun`)."""
    from numpy.lib import format as npy

    try:
        mode = os.lstat(npz).st_mode
    except FileNotFoundError:
        raise BadLog(f"{npz.parent / runlog.RESULTS_FILE}: {npz.name}, which holds {refs[0][0]}, is missing") from None
    except OSError as err:
        raise BadLog(f"{npz}: {err.strerror or err}") from None
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise BadLog(f"{npz} is {kind}, not a regular file")
    try:
        fd = os.open(npz, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f, zipfile.ZipFile(f) as archive:
            names = set(archive.namelist())
            for where, array in refs:
                key = _show(array["key"])
                if f"{array['key']}.npy" not in names:
                    raise BadLog(f"{npz} has no {key} (for {where})")
                if archive.getinfo(f"{array['key']}.npy").compress_type != zipfile.ZIP_STORED:
                    raise BadLog(f"{npz}: {key} is compressed; np.savez stores arrays as they are")
                with archive.open(f"{array['key']}.npy") as m:
                    version = npy.read_magic(m)
                    read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise BadLog(f"{npz}: {key} has .npy format version {version}")
                    shape, _, dtype = read_header(m)
                if list(shape) != array["shape"] or dtype.hasobject or str(dtype) != array["dtype"]:
                    raise BadLog(f"{npz}: {key} is {dtype} of shape {list(shape)}, not as the log says")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as err:
        if isinstance(err, BadLog):
            raise
        raise BadLog(
            f"{npz} is corrupt: {files.excerpt(str(err).splitlines()[0] if str(err) else repr(err))}"
        ) from None


_FILE_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"))


def _first(problems: Iterator[Optional[str]]) -> Optional[str]:
    return next((p for p in problems if p), None)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _show(v: Any) -> str:
    """A short, escaped form of a value for a message: 'text', 2, null, a list, an object."""
    if isinstance(v, str):
        return files.excerpt(v)
    return "a list" if isinstance(v, list) else "an object" if isinstance(v, dict) else json.dumps(v)


_RESUME_ARG = re.compile(r"\+{0,2}resume=(.*)", re.S)


def check_argv(argv: List[str]) -> None:
    """Refuse, as a `ConfigError`, a `resume=` on the command line that names no folder.

    `resume` becomes the sweep folder itself, so `resume=true` or a mistyped path would
    otherwise start a fresh sweep in a new folder of that name (`./true`), skipping
    nothing, which is not what was asked. Checked before Hydra makes any folder.
    """
    for arg in argv:
        match = _RESUME_ARG.fullmatch(arg)
        if not match:
            continue
        value = match.group(1).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if value in ("", "null"):
            continue  # no resume: a new sweep folder
        if not Path(value).expanduser().is_dir():
            raise ConfigError(
                "resume",
                f"no sweep folder {value!r} to resume; resume=PATH names the folder of an earlier sweep "
                "(the last line a sweep prints: 'sweep folder: ...')",
            )
