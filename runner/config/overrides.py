"""A job's command-line overrides: read from Hydra's `.hydra/overrides.yaml`, and parsed.

The record (event files, plots), the sweep (progress, summary) and `runner.report` all
read overrides; they live here, with the config, so that none of those imports another
for them. Imports only PyYAML (Hydra's own dependency), and only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
OVERRIDES_LIMIT = 1 << 20  # a job's overrides are a few lines


def overrides(folder: Path) -> List[str]:
    """The command-line overrides Hydra saved for this job (none outside Hydra, or when the
    file is not a small regular file), less `resume=...`, which says how the sweep was
    launched, not what the job computes."""
    path = folder / OVERRIDES_FILE
    if not path.is_file():
        return []
    import yaml  # Hydra's own dependency; a plain list of strings

    from runner.config import files
    from runner.errors import ConfigError

    try:
        text = files.read_bounded(path, str(OVERRIDES_FILE), OVERRIDES_LIMIT).decode(errors="replace")
        files.check_yaml_size(text, str(OVERRIDES_FILE), limit=10_000)
    except ConfigError:  # not a small regular file (a FIFO, a huge file, nested aliases): none to show
        return []
    return job_overrides(yaml.safe_load(text) or [])


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
