"""`.hydra/hydra.yaml` for job after job, without dumping the whole hydra config each time.

`run_job` writes `OmegaConf.to_yaml` of the job's hydra config: about 160 lines, 3-4 ms of
pure-Python YAML emission. Within one sweep (one composition) the jobs' hydra configs
differ in five fields only (`PER_JOB`). So the document is dumped once with a placeholder
in each of those fields, and for each job every placeholder line is replaced by that
field's entry, dumped by the same YAML dumper at the same depth. PyYAML emits a block
mapping entry from its indentation, key and value alone, so the result is the same text,
byte for byte (`tests/test_launcher_equivalence.py` compares it with `run_job`'s files).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import yaml
from omegaconf._utils import get_omega_conf_dumper

# hydra.yaml's fields that differ between the jobs of one composition.
PER_JOB: Tuple[Tuple[str, ...], ...] = (
    ("hydra", "overrides", "task"),
    ("hydra", "job", "override_dirname"),
    ("hydra", "job", "id"),
    ("hydra", "job", "num"),
    ("hydra", "runtime", "output_dir"),
)


def dump(container: Any) -> str:
    """`OmegaConf.to_yaml` of an already converted container (its own yaml.dump call)."""
    return yaml.dump(container, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=get_omega_conf_dumper())


class HydraYaml:
    """The hydra.yaml text of a container, with `PER_JOB` fields filled in per job."""

    def __init__(self, container: Dict[str, Any]):
        marked = _copy_paths(container, PER_JOB)
        marks = [f"RUNNERPLACEHOLDER{i}X" for i in range(len(PER_JOB))]
        for path, mark in zip(PER_JOB, marks):
            _put(marked, path, mark)
        text = dump(marked)
        # The text between placeholders, and each placeholder's line (without its value).
        self._pieces: List[str] = []
        rest = text
        for path, mark in zip(PER_JOB, marks):
            assert rest.count(mark) == 1, f"placeholder {mark} must appear once"
            at = rest.index(mark)
            start = rest.rfind("\n", 0, at) + 1
            end = rest.index("\n", at) + 1
            line = rest[start:end]
            expected = " " * (2 * (len(path) - 1)) + path[-1] + ": " + mark + "\n"
            assert line == expected, f"unexpected placeholder line {line!r}"
            self._pieces.append(rest[:start])
            rest = rest[end:]
        self._pieces.append(rest)

    def render(self, values: Sequence[Any]) -> str:
        """The document with `values` (in `PER_JOB` order) in the per-job fields."""
        out = [self._pieces[0]]
        for path, value, piece in zip(PER_JOB, values, self._pieces[1:]):
            out.append(_entry(path, value))
            out.append(piece)
        return "".join(out)


def _entry(path: Tuple[str, ...], value: Any) -> str:
    """The lines of `path: value` as the dumper writes them at that depth."""
    doc: Any = value
    for key in reversed(path):
        doc = {key: doc}
    lines = dump(doc).splitlines(keepends=True)
    return "".join(lines[len(path) - 1 :])


def _copy_paths(container: Dict[str, Any], paths: Sequence[Tuple[str, ...]]) -> Dict[str, Any]:
    """A copy of the dicts along `paths` (the rest shared), so placeholders leave the original alone."""
    root = dict(container)
    for path in paths:
        node = root
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
    return root


def _put(container: Dict[str, Any], path: Tuple[str, ...], value: Any) -> None:
    node = container
    for key in path[:-1]:
        node = node[key]
    assert path[-1] in node, f"{'.'.join(path)} is not in the hydra config"
    node[path[-1]] = value
