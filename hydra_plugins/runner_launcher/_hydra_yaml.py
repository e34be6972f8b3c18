"""The `.hydra/*.yaml` files of job after job, without dumping a whole config each time.

`run_job` writes three YAML files per job with `OmegaConf.to_yaml`: the job's config
(`config.yaml`), its hydra config (`hydra.yaml`, about 160 lines) and its overrides
(`overrides.yaml`). PyYAML's pure-Python emitter takes about 3 ms a job for them. Within
one sweep (one composition) the documents differ from job to job in a few fields only:
hydra.yaml in five (`PER_JOB`), config.yaml in the keys the job overrides. So each
document is dumped once with a placeholder in each of those fields (`SplicedYaml`), and for
each job every placeholder line is replaced by that field's entry.

An entry is written by hand when its text is certain (`_fast_entry`): numbers, booleans,
null, and strings made only of characters that can neither start a YAML indicator nor be
read back as another type (a path, `key=value`). Anything else is dumped by the same YAML
dumper at the same depth. PyYAML emits a block mapping entry from its indentation, key
and value alone, so the result is the same text, byte for byte
(`tests/test_launcher_equivalence.py` compares it with `OmegaConf.to_yaml`, and with
`run_job`'s files).
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from runner.hydra_compat import get_omega_conf_dumper

KeyPath = Tuple[str, ...]  # keys from the root to a field

# hydra.yaml's fields that differ between the jobs of one composition.
PER_JOB: Tuple[KeyPath, ...] = (
    ("hydra", "overrides", "task"),
    ("hydra", "job", "override_dirname"),
    ("hydra", "job", "id"),
    ("hydra", "job", "num"),
    ("hydra", "runtime", "output_dir"),
)


def dump(container: Any) -> str:
    """`OmegaConf.to_yaml` of an already converted container (its own yaml.dump call)."""
    return yaml.dump(
        container, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=get_omega_conf_dumper()
    )


class SplicedYaml:
    """The YAML text of a container, with the fields at `paths` filled in per job.

    Raises ValueError when the container cannot be spliced at these paths (a path through
    a list, or a field whose placeholder does not come out as one line of its own).
    """

    def __init__(self, container: Dict[str, Any], paths: Sequence[KeyPath]):
        self.paths = tuple(paths)
        marked = _copy_paths(container, self.paths)
        marks = [f"RUNNERPLACEHOLDER{i}X" for i in range(len(self.paths))]
        for path, mark in zip(self.paths, marks):
            _put(marked, path, mark)
        text = dump(marked)
        # The text between placeholders (in the order they appear), and each one's path.
        found = sorted((text.find(mark), i) for i, mark in enumerate(marks))
        self._pieces: List[str] = []
        self._order: List[int] = []
        rest_start = 0
        for at, i in found:
            path, mark = self.paths[i], marks[i]
            if at < 0 or text.count(mark) != 1:
                raise ValueError(f"placeholder for {'.'.join(path)} must appear once")
            start = text.rfind("\n", 0, at) + 1
            end = text.index("\n", at) + 1
            if text[start:end] != _indent(path) + path[-1] + ": " + mark + "\n":
                raise ValueError(f"unexpected placeholder line {text[start:end]!r}")
            self._pieces.append(text[rest_start:start])
            self._order.append(i)
            rest_start = end
        self._pieces.append(text[rest_start:])

    def render(self, values: Sequence[Any]) -> str:
        """The document with `values` (in the order of `paths`) in the per-job fields."""
        out = [self._pieces[0]]
        for i, piece in zip(self._order, self._pieces[1:]):
            out.append(entry(self.paths[i], values[i]))
            out.append(piece)
        return "".join(out)


def HydraYaml(container: Dict[str, Any]) -> SplicedYaml:
    """hydra.yaml of one composition, filled in with `PER_JOB` values."""
    return SplicedYaml(container, PER_JOB)


def sequence(items: Sequence[Any]) -> str:
    """`OmegaConf.to_yaml` of a list (overrides.yaml)."""
    fast = _fast_items(items, "") if items else "[]\n"
    return fast if fast is not None else dump(list(items))


def entry(path: KeyPath, value: Any) -> str:
    """The lines of `path: value` as the dumper writes them at that depth."""
    fast = _fast_entry(path, value)
    if fast is not None:
        return fast
    doc: Any = value
    for key in reversed(path):
        doc = {key: doc}
    lines = dump(doc).splitlines(keepends=True)
    return "".join(lines[len(path) - 1 :])


# Strings the dumper writes as they are (plain): they hold `=` or `/`, so no YAML resolver
# and neither OmegaConf's bool, int nor float test can read them as anything but a string;
# they start with a letter, `_` or `/`, so with no indicator; and have no space, quote,
# colon, `#` or non-ASCII character, so nothing to escape or fold.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./=+,-]*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")  # a string of digits: OmegaConf single-quotes it


def _fast_scalar(value: Any) -> Optional[str]:
    """The dumper's text for a scalar whose text is certain, else None."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:  # yaml's SafeRepresenter.represent_float
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value).lower()
        if "." not in text and "e" in text:
            text = text.replace("e", ".0e", 1)
        return text
    if type(value) is str:
        if _PLAIN.match(value) and ("=" in value or "/" in value):
            return value
        if _DIGITS.match(value):
            return f"'{value}'"
    return None


def _fast_entry(path: KeyPath, value: Any) -> Optional[str]:
    indent = _indent(path)
    if isinstance(value, list):
        if not value:
            return indent + path[-1] + ": []\n"
        items = _fast_items(value, indent)  # a block sequence in a mapping is not indented
        return None if items is None else indent + path[-1] + ":\n" + items
    text = _fast_scalar(value)
    return None if text is None else indent + path[-1] + ": " + text + "\n"


def _fast_items(items: Sequence[Any], indent: str) -> Optional[str]:
    """The `- item` lines of a block sequence of scalars whose text is certain, else None."""
    texts = [_fast_scalar(v) for v in items]
    if any(t is None for t in texts):
        return None
    return "".join(f"{indent}- {t}\n" for t in texts)


def _indent(path: KeyPath) -> str:
    return " " * (2 * (len(path) - 1))


def _copy_paths(container: Dict[str, Any], paths: Sequence[KeyPath]) -> Dict[str, Any]:
    """A copy of the dicts along `paths` (the rest shared), so placeholders leave the original alone."""
    root = dict(container)
    for path in paths:
        node = root
        for key in path[:-1]:
            if not isinstance(node.get(key), dict):
                raise ValueError(f"{'.'.join(path)} does not go through mappings only")
            node[key] = dict(node[key])
            node = node[key]
    return root


def _put(container: Dict[str, Any], path: KeyPath, value: Any) -> None:
    node = container
    for key in path[:-1]:
        node = node[key]
    if path[-1] not in node:
        raise ValueError(f"{'.'.join(path)} is not in the config")
    node[path[-1]] = value
