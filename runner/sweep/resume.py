"""Resuming a sweep: which jobs already hold a whole result made from the same inputs.

A job's `results.json` is written last and atomically, so its presence means the job
finished. It also records `config_sha256`, a digest of the job's resolved config and of the
bytes of every file the config reads (a point `{file: ...}`); a job is skipped on resume only
when that digest matches and its log is whole (`read_log`), so a folder whose job number now
means other overrides, a point file that changed, or a log edited or cut short is run again.

Whether a log is whole is `runner.record.log_reader`'s to say.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Tuple

import numpy as np

from runner.config import files, points
from runner.errors import ConfigError
from runner.record import runlog
from runner.record.log_reader import BadLog, read_log

# Keys that say how to run, not what: they do not change a job's result.
_NOT_PART_OF_RESULT = ("resume", "limits")
# nor what the console shows, nor whether the run also goes to MLflow (a kept job's log that
# is not in MLflow yet is logged there when its sweep resumes: runner/record/mlflow_run.py)
_LOG_NOT_PART_OF_RESULT = ("console", "mlflow", "mlflow_experiment")
# A point file is hashed only up to the largest points.py reads, by kind: a .csv's cap, and a
# .npy of MAX_ELEMENTS numbers of 8 bytes (the widest points._npy reads) after its magic and
# version (MAGIC_LEN), its header's length (4 bytes at most) and a header of NPY_MAX_HEADER.
FILE_LIMITS = {
    ".csv": points.CSV_MAX_BYTES,
    ".npy": np.lib.format.MAGIC_LEN + 4 + points.NPY_MAX_HEADER + points.MAX_ELEMENTS * 8,
}


# ---------------------------------------------------------------- the digest


def config_digest(cfg: Mapping[str, Any], read_files: bool = True) -> str:
    """The SHA-256 of the resolved config, as canonical JSON, less the keys above, and of the
    contents of the files it reads. A config that reads no file has the digest it always had.
    `read_files=False` (a refused config, whose files may be what was refused: a 1 GiB CSV
    must not be read to log its refusal) leaves the contents out."""
    data = {k: v for k, v in cfg.items() if k not in _NOT_PART_OF_RESULT}
    if isinstance(data.get("log"), Mapping):  # see _LOG_NOT_PART_OF_RESULT
        data["log"] = {k: v for k, v in data["log"].items() if k not in _LOG_NOT_PART_OF_RESULT}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    # the search is at C speed; a config with no `file` key anywhere needs no walk
    wanted = read_files and '"file":' in text
    contents = {where: _file_sha256(path) for where, path in points.config_files(data)} if wanted else {}
    if contents:
        text += "\nfiles:" + json.dumps(contents, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _file_sha256(text: str) -> Optional[str]:
    """The SHA-256 of a point file's bytes, as points.py would find it (relative to the
    working folder, by its rules on links and on /proc, /sys and /dev: `points.real_file`);
    None when points.py would refuse it unread (missing, not a regular file, not .npy or
    .csv, a link out of its folder, larger than points.py reads), so the job is refused, not
    run, either way, and no file points.py would not read is read."""
    path = Path(os.path.expanduser(text))
    limit = FILE_LIMITS.get(path.suffix.lower())
    if limit is None:
        return None
    if not path.is_absolute():
        path = Path.cwd() / path
    try:
        f = files.open_regular(points.real_file("file", path), "file")
    except (ConfigError, ValueError):  # ValueError: a NUL in the path
        return None
    with f:
        if os.fstat(f.fileno()).st_size > limit:
            return None
        return _sha256(f, limit)


def _sha256(f: BinaryIO, limit: int) -> Optional[str]:
    """The digest of an open file, streamed; None past `limit` bytes (a size misreported)."""
    digest = hashlib.sha256()
    total = 0
    try:
        while chunk := f.read(1 << 20):
            total += len(chunk)
            if total > limit:
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
