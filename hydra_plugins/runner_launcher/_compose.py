"""Per-job configs from a config composed once per set of config-group choices.

Hydra composes a job's config in two stages: the config-group overrides (`experiment=b`)
choose the defaults list, which is merged into one config; the value overrides
(`point.x=3`) are then applied to it, one after another (`_apply_overrides_to_config`).
The first stage is what costs (about 140 ms); for jobs of a sweep that differ only in
values it gives the same result every time. So the `Composer` runs Hydra's own
composition (`load_sweep_config`) once per distinct tuple of group overrides, keeps the
result as a `Template`, and applies each job's value overrides to a copy with the very
function Hydra uses for the second stage. Anything it is not sure of (a `hydra.*`
override, a sweep left in a job's overrides) goes back to Hydra's full composition.
"""

from __future__ import annotations

import copy
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

from hydra.core.config_loader import ConfigLoader
from hydra.core.object_type import ObjectType
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType, ValueType
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.runner_launcher import _hydra_yaml
from runner import hydra_compat as _hydra_compat

# Distinct group-choice tuples kept composed (a sweep over experiment=a,b,c keeps three).
_TEMPLATES_KEPT = 16


@dataclass
class JobOverrides:
    """One job's overrides, split the way Hydra's defaults list splits them."""

    lines: List[str]  # as given, in order (they become hydra.overrides.task)
    groups: Tuple[str, ...]  # config-group choices: they decide the composition
    values: List[Override]  # applied to the composed config, in order
    scalar: bool  # each value override sets an existing scalar to a scalar (undoable)
    parsed: List[Override]  # all of them, parsed

    def paths(self) -> Tuple[Tuple[str, ...], ...]:
        """The keys the value overrides set, as key paths, each once, in order."""
        return tuple(dict.fromkeys(tuple(o.key_or_group.split(".")) for o in self.values))


class Template:
    """One composition: the full config (never changed) and its task part, as run_job cuts it."""

    def __init__(self, full: DictConfig):
        self.full = full
        task = copy.deepcopy(full)
        with read_write(task), open_dict(task):
            del task["hydra"]
        self.task = task
        # The task config pickled once: unpickling a copy per job takes a third of the time
        # of copy.deepcopy, and gives the same nodes, types, flags and metadata.
        try:
            self._task_pickle: Optional[bytes] = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # a value pickle cannot take: deepcopy it is
            self._task_pickle = None
        self._raw: Optional[Dict[str, Any]] = None
        self._config_yaml: Dict[Tuple[Tuple[str, ...], ...], Optional[_hydra_yaml.SplicedYaml]] = {}

    def config_yaml(self, paths: Tuple[Tuple[str, ...], ...]) -> Optional[_hydra_yaml.SplicedYaml]:
        """config.yaml of this composition with the fields at `paths` left to fill in per job
        (None when it cannot be spliced there: the caller dumps the whole config)."""
        if paths not in self._config_yaml:
            container = OmegaConf.to_container(self.task, resolve=False, enum_to_str=True)
            try:
                self._config_yaml[paths] = _hydra_yaml.SplicedYaml(container, paths)  # type: ignore[arg-type]
            except ValueError:
                self._config_yaml[paths] = None
        return self._config_yaml[paths]

    def task_copy(self) -> DictConfig:
        """A fresh copy of the task config, as `copy.deepcopy` makes it."""
        if self._task_pickle is None:
            return copy.deepcopy(self.task)
        return pickle.loads(self._task_pickle)

    def undoable(self, job: "JobOverrides") -> bool:
        """Whether `undo` can set back everything the job's overrides change: scalars only."""
        return job.scalar and all(
            found and _is_scalar(v) for found, v in (self.raw(o.key_or_group) for o in job.values)
        )

    def raw(self, key: str) -> Tuple[bool, Any]:
        """(found, value) of a dotted key in the unresolved task config (interpolations as text)."""
        if self._raw is None:
            self._raw = cast(Dict[str, Any], OmegaConf.to_container(self.task, resolve=False))
        node: Any = self._raw
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return False, None
        return True, node


class Composer:
    """Per-job configs for one multirun (one master config), shared by sweeper and launcher."""

    def __init__(self, loader: ConfigLoader, master: DictConfig):
        self.loader = loader
        self.master = master
        self.config_name = master.hydra.job.config_name
        # Unresolved, as Hydra reads them (`hydra.sweep.subdir=x_${hydra.job.num}` is text
        # here: iterating the ListConfig would resolve it, and hydra.job.num is not set yet).
        lines = OmegaConf.to_container(master.hydra.overrides.hydra, resolve=False)
        self.hydra_overrides = [str(o) for o in cast(List[str], lines)]
        self.parser = OverridesParser.create()
        self._groups: Dict[str, List[str]] = {}
        self._split: Dict[Tuple[str, ...], Optional[JobOverrides]] = {}
        self._templates: "OrderedDict[Tuple[str, ...], Template]" = OrderedDict()
        dirname = master.hydra.job.config.override_dirname
        self._dirname_args = dict(
            kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=list(dirname.exclude_keys)
        )

    def split(self, lines: Sequence[str]) -> Optional[JobOverrides]:
        """Split a job's overrides, or None when Hydra must compose this job in full.

        The sweeper's check splits every job of a batch before the launcher runs them; the
        split is kept from one to the other (and used once).
        """
        key = tuple(lines)
        if key in self._split:
            return self._split.pop(key)
        return self._split_now(lines)

    def _split_now(self, lines: Sequence[str]) -> Optional[JobOverrides]:
        parsed = self.parse(lines)
        groups: List[str] = []
        values: List[Override] = []
        scalar = True
        for o in parsed:
            if o.is_sweep_override() or o.is_hydra_override() or o.key_or_group == "hydra":
                return None
            value = o.value()
            # The same test as Hydra's defaults list (`defaults_list.Overrides`).
            if isinstance(value, dict) or not self._is_group(o.key_or_group):
                values.append(o)
                scalar = scalar and o.type == OverrideType.CHANGE and o.package is None and _is_scalar(value)
            else:
                groups.append(str(o.input_line))
        return JobOverrides(list(lines), tuple(groups), values, scalar, parsed)

    def parse(self, lines: Sequence[str]) -> List[Override]:
        """Hydra's parse of the lines; `key=number` lines (a sweep's usual jobs) without ANTLR."""
        fast = [_number_override(line) for line in lines]
        if all(o is not None for o in fast):
            return fast  # type: ignore[return-value]
        return self.parser.parse_overrides(overrides=list(lines))

    def override_dirname(self, job: JobOverrides) -> str:
        """hydra.job.override_dirname, computed as Hydra computes it."""
        return _hydra_compat.get_overrides_dirname(overrides=job.parsed, **self._dirname_args)

    def template(self, groups: Tuple[str, ...]) -> Template:
        """Hydra's own composition for these group choices (cached)."""
        if groups in self._templates:
            self._templates.move_to_end(groups)
            return self._templates[groups]
        full = self.loader.load_sweep_config(self.master, list(groups))
        template = self._templates[groups] = Template(full)
        if len(self._templates) > _TEMPLATES_KEPT:
            self._templates.popitem(last=False)
        return template

    def task_config(self, template: Template, job: JobOverrides) -> DictConfig:
        """A fresh copy of the template's task config with the job's value overrides applied."""
        cfg = template.task_copy()
        apply(job.values, cfg)
        return cfg

    def validate(self, lines: List[str]) -> None:
        """Raise what Hydra's composition of this job would raise (the sweeper's early check)."""
        job = self._split[tuple(lines)] = self._split_now(lines)
        if job is None:
            self.loader.load_sweep_config(master_config=self.master, sweep_overrides=lines)
            return
        template = self.template(job.groups)
        if template.undoable(job):
            _check_scalars(template, job)
        else:
            self.task_config(template, job)

    def _is_group(self, key: str) -> bool:
        parent, _, name = key.rpartition("/")
        if parent not in self._groups:
            self._groups[parent] = self.loader.get_group_options(
                parent, results_filter=ObjectType.GROUP, config_name=self.config_name, overrides=self.hydra_overrides
            )
        return name in self._groups[parent]


def apply(values: List[Override], cfg: DictConfig) -> None:
    """Apply value overrides with Hydra's own function, raising what `load_configuration` raises."""
    _hydra_compat.apply_overrides(values, cfg)


def undo(template: Template, job: JobOverrides, cfg: DictConfig) -> None:
    """Set back, in `cfg`, the keys a scalar job changed, to the template's values."""
    for o in job.values:
        found, value = template.raw(o.key_or_group)
        assert found
        OmegaConf.update(cfg, o.key_or_group, value, merge=False)


def _check_scalars(template: Template, job: JobOverrides) -> None:
    """Validate scalar overrides on the template's task config itself, then set it back.

    Cheaper than a copy per job; `undo` restores every key it changed, even when one fails.
    """
    try:
        apply(job.values, template.task)
    finally:
        undo(template, job, template.task)


# `key=number` as Hydra's override grammar (hydra/grammar/Override*.g4) reads it: a dotted
# key of identifiers, then one INT or FLOAT token (without the `_` separators, inf or nan,
# which go to the parser). Hydra converts these tokens with int() and float().
_KEY = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_UINT = r"(?:0|[1-9][0-9]*)"
_INT_LINE = re.compile(rf"({_KEY})=([+-]?{_UINT})\Z")
_FLOAT_LINE = re.compile(
    rf"({_KEY})=([+-]?(?:(?:{_UINT}?\.[0-9]+|{_UINT}\.)(?:[eE][+-]?[0-9]+)?|{_UINT}[eE][+-]?[0-9]+))\Z"
)


def _number_override(line: str) -> Optional[Override]:
    """The Override Hydra's parser makes of `key=number`, or None for any other line."""
    match = _INT_LINE.match(line)
    value: Any
    if match:
        value = int(match.group(2))
    else:
        match = _FLOAT_LINE.match(line)
        if not match:
            return None
        value = float(match.group(2))
    return Override(
        type=OverrideType.CHANGE,
        key_or_group=match.group(1),
        value_type=ValueType.ELEMENT,
        _value=value,
        package=None,
        input_line=line,
    )


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


_last: Optional[Composer] = None


def composer_for(loader: ConfigLoader, master: DictConfig) -> Composer:
    """The composer of this multirun: the sweeper's check and the launcher share templates."""
    global _last
    if _last is None or _last.loader is not loader or _last.master is not master:
        _last = Composer(loader, master)
    return _last
