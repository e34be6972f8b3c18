"""Resuming a sweep: which jobs already hold a complete result for the same config.

A job's `results.json` is written last and atomically, so its presence means the job
finished. It also records `config_sha256`, a digest of the job's resolved config; a job is
skipped on resume only when that digest matches, so a folder whose job number now means
other overrides (the sweep was re-launched with different ones) is run again, not trusted.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from runner.errors import ConfigError
from runner.record import runlog

# Keys that say how to run, not what: they do not change a job's result.
_NOT_PART_OF_RESULT = ("resume",)


def config_digest(cfg: Mapping[str, Any]) -> str:
    """The SHA-256 of the resolved config, as canonical JSON, less the keys above."""
    data = {k: v for k, v in cfg.items() if k not in _NOT_PART_OF_RESULT}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def completed(folder: Path, digest: str) -> Optional[Dict[str, Any]]:
    """The finished record in `folder` when it was made from the same config; else None."""
    path = folder / runlog.RESULTS_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("config_sha256") != digest or "expect" not in record:
        return None
    return record


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
