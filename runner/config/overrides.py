"""A job's command-line overrides: read from Hydra's `.hydra/overrides.yaml`, and parsed.

The record (event files, plots), the sweep (progress, summary) and `runner.report` all
read overrides; they live here, with the config, so that none of those imports another
for them. `overrides` is the one reader of the file, which may come from anyone: it opens it
as every file of a run folder is opened (`runner.record.log_reader.open_in_run`). Imports
PyYAML (Hydra's own dependency) and that reader only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
# A job's overrides are a few lines: at most this many bytes of file, and of text once read
# (an alias repeats its anchor's text without repeating the bytes).
OVERRIDES_LIMIT = 1 << 20


def overrides(folder: Path) -> List[str]:
    """The command-line overrides Hydra saved for this job, less `resume=...`, which says how
    the sweep was launched, not what the job computes. None (`[]`) outside Hydra, or when the
    file cannot be read as Hydra writes it: a small regular file, reached through no link
    (`log_reader.open_in_run`), holding a list of strings."""
    import yaml  # Hydra's own dependency; a plain list of strings

    from runner.record import log_reader  # reads a run folder's files, never through a link

    try:
        with log_reader.open_in_run(folder, *OVERRIDES_FILE.parts) as f:
            text = log_reader.read_open(f, folder / OVERRIDES_FILE, OVERRIDES_LIMIT).decode(errors="replace")
        found = yaml.safe_load(text)  # an alias is the object its anchor made, not a copy: no blow-up here
    except (log_reader.BadLog, yaml.YAMLError, RecursionError, ValueError):
        return []  # missing, a link, a FIFO, too large, malformed
    strings = isinstance(found, list) and all(isinstance(o, str) for o in found)
    if not strings or sum(map(len, found)) > OVERRIDES_LIMIT:
        # not as Hydra writes it (an empty file, a mapping, nested aliases), or more text than the
        # file holds: one string named by 4,900 aliases is 4.9 GB when the overrides are joined
        return []
    return job_overrides(found)


def job_overrides(overrides: List[Any]) -> List[str]:
    """The overrides that define a job: all but `resume=...`."""
    return [str(o) for o in overrides if not str(o).lstrip("+~").startswith("resume=")]


def parse_overrides(overrides: List[str]) -> Dict[str, Any]:
    """`["point.x=2.0", "+seed=3"]` -> {"point.x": 2.0, "seed": 3}: values as YAML reads them.

    Numbers YAML 1.1 leaves as text (`1e-3`) are read as floats, as Hydra's grammar does.
    """
    import yaml

    out: Dict[str, Any] = {}
    for text in overrides:
        key, sep, raw = text.lstrip("+~").partition("=")
        if not sep:
            continue
        try:
            value = yaml.safe_load(raw)
        except (yaml.YAMLError, ValueError):  # ValueError: a date-like value no calendar has (2001-02-30)
            value = raw
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        out[key] = value
    return out
