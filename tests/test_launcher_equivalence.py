"""The runner launcher and sweeper leave what Hydra's basic ones leave, file for file.

The same sweep runs twice from the command line, once with `hydra/launcher=basic
hydra/sweeper=basic` and once with `runner`, each in its own working folder, with two of
Hydra's own callbacks added (one logs each job's return into the job's log, one pickles
each job's config and `JobReturn`). The two output trees must hold the same files with the
same contents, except for these fields, which differ by construction:

- anything naming the working folder (`hydra.runtime.cwd`, `hydra.runtime.output_dir`,
  the pickled `working_dir`), replaced by `<cwd>`;
- which launcher and sweeper ran (`hydra.launcher`, `hydra.sweeper`, their entries in
  `hydra.overrides.hydra` and `hydra.runtime.choices`), replaced by `<plugin>`;
- in `results.json`, `timing` and `environment` (clock times, the process's argv);
  in the logs, the timestamp of each line; in the summary, each job's duration.

The sweep mixes jobs the fast path takes (scalar values, two config-group choices) with
jobs Hydra composes in full (a list value), so both paths are compared.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf, open_dict, read_write

from tests.helpers import cli

SWEEP = ["experiment=seed_cubic,seed_chain_rule", "point.x=2.0,[1.0,3.0],4", "tape.persistent=true"]
CALLBACKS = [
    "+hydra.callbacks.log_return._target_=hydra.experimental.callbacks.LogJobReturnCallback",
    "+hydra.callbacks.pickle_info._target_=hydra.experimental.callbacks.PickleJobInfoCallback",
]
PLUGIN_NAMES = [
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
    "hydra_plugins.runner_launcher.runner_launcher.RunnerLauncher",
    "hydra_plugins.runner_launcher.runner_sweeper.RunnerSweeper",
]


def _normalize_text(text: str, cwd: Path, plugin: str) -> str:
    text = text.replace(str(cwd), "<cwd>")
    for name in PLUGIN_NAMES:
        text = text.replace(name, "<plugin>")
    text = re.sub(rf"(hydra/(launcher|sweeper)\"?[=:] ?\"?){plugin}\b", r"\1<plugin>", text)
    return re.sub(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\]", "[<time>]", text, flags=re.M)


def _plain(obj: Any, cwd: Path, plugin: str) -> Any:
    """A pickled config or JobReturn as comparable plain data."""
    if OmegaConf.is_config(obj):
        return json.loads(
            _normalize_text(json.dumps(OmegaConf.to_container(obj, resolve=False, enum_to_str=True)), cwd, plugin)
        )
    fields = {
        k: getattr(obj, k)
        for k in ("overrides", "cfg", "hydra_cfg", "working_dir", "task_name", "status", "_return_value")
    }
    fields = {k: _plain(v, cwd, plugin) if OmegaConf.is_config(v) else v for k, v in fields.items()}
    fields["working_dir"] = str(fields["working_dir"]).replace(str(cwd), "<cwd>")
    return type(obj).__name__, fields


def _tree(cwd: Path, plugin: str) -> Dict[str, Any]:
    """Every file of the sweep folder, by relative path, with the listed fields normalized."""
    root = cwd / "sweep"
    out: Dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = str(path.relative_to(root))
        if path.name.startswith("events.out.tfevents.") or path.suffix == ".png":
            # binary, with wall times (and host and pid in the event file's name): present in both
            out[str(path.parent.relative_to(root) / path.name.split(".")[0]) + path.suffix] = "present"
        elif path.name == "plan.json":
            out[rel] = sorted(json.loads(path.read_text()))  # its keys; "started" is a time
        elif path.suffix == ".pickle":
            out[rel] = _plain(pickle.loads(path.read_bytes()), cwd, plugin)
        elif path.name == "results.json":
            rec = json.loads(path.read_text())
            rec.pop("timing"), rec.pop("environment")
            for d in rec["derivatives"]:  # how long each check took
                (d.get("check") or {}).pop("seconds", None)
            for art in (rec.get("artifacts") or {}).values():  # event file names hold a time and pid
                if isinstance(art, dict):
                    art.pop("file", None), art.pop("seconds", None)
            out[rel] = rec
        elif path.name == "summary.json":
            summary = json.loads(_normalize_text(path.read_text(), cwd, plugin))
            for row in summary["rows"]:
                row.pop("duration_s")
            out[rel] = summary
        elif path.name == "summary.csv":
            out[rel] = [line.rsplit(",", 1)[0] for line in _normalize_text(path.read_text(), cwd, plugin).splitlines()]
        else:
            out[rel] = _normalize_text(path.read_text(), cwd, plugin)
    return out


@pytest.mark.slow
def test_runner_launcher_leaves_the_basic_launchers_files(tmp_path):
    trees = {}
    for plugin in ("basic", "runner"):
        cwd = tmp_path / plugin
        cwd.mkdir()
        args = [
            "-m",
            *SWEEP,
            *CALLBACKS,
            f"hydra/launcher={plugin}",
            f"hydra/sweeper={plugin}",
            "hydra.sweep.dir=sweep",
        ]
        res = cli(args, cwd=cwd)
        assert res.returncode == 0, res.stderr[-3000:]
        trees[plugin] = _tree(cwd, plugin)
    basic, runner = trees["basic"], trees["runner"]
    assert sorted(basic) == sorted(runner)
    # 6 jobs, each with results.json, runner.log and .hydra/{config,hydra,overrides}.yaml + 2 pickles
    assert sum(1 for name in basic if name.endswith("results.json")) == 6
    assert sum(1 for name in basic if name.endswith("job_return.pickle")) == 6
    for name in basic:
        assert runner[name] == basic[name], name
    # the callbacks ran: each job's log holds its return value
    assert "Succeeded with return value: 0" in basic["0/runner.log"]


# --- The pieces, in-process ---------------------------------------------------------

import copy  # noqa: E402

from hydra import initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.types import RunMode  # noqa: E402

from hydra_plugins.runner_launcher import _compose, _hydra_yaml  # noqa: E402
from runner.cli import config_dir  # noqa: E402


@pytest.fixture(scope="module")
def composer():
    """The composer of a real multirun config (`-m point.x=1,2`), as the plugins get it."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration("config", ["point.x=1,2"], RunMode.MULTIRUN)
        yield _compose.Composer(loader, master)


@pytest.mark.parametrize(
    "lines, groups, scalar",
    [
        (["point.x=3"], (), True),
        (["point.x=3", "tape.persistent=true", "name=abc"], (), True),
        (["experiment=seed_chain_rule", "point.x=2.5"], ("experiment=seed_chain_rule",), True),
        (["function=chain_rule"], ("function=chain_rule",), True),
        (["point.x=[1.0,2.0]"], (), False),
        (["+expect.error=RuntimeError"], (), False),
        (["~name"], (), False),
        (["point={x: 1.0}"], (), False),  # a dict for a group: a value override, as Hydra says
    ],
    ids=[
        "one value",
        "three values",
        "group and value",
        "group only",
        "list value",
        "add",
        "delete",
        "dict for a group",
    ],
)
def test_overrides_split_as_hydras_defaults_list_splits_them(composer, lines, groups, scalar):
    job = composer.split(lines)
    assert job is not None and job.groups == groups and job.scalar == scalar
    assert job.lines == lines


@pytest.mark.parametrize(
    "lines",
    [["hydra.job.chdir=true"], ["hydra/job_logging=disabled"], ["point.x=1,2"]],
    ids=["hydra value", "hydra group", "a sweep"],
)
def test_what_the_composer_is_unsure_of_goes_to_hydra(composer, lines):
    assert composer.split(lines) is None


def test_a_job_config_equals_hydras_composition(composer):
    """Template + value overrides == load_sweep_config, for the task part (what the task gets)."""
    lines = ["experiment=seed_chain_rule", "point.x=2.5", "tape.persistent=true"]
    job = composer.split(lines)
    ours = composer.task_config(composer.template(job.groups), job)
    hydras = composer.loader.load_sweep_config(composer.master, lines)
    with read_write(hydras), open_dict(hydras):
        del hydras["hydra"]
    assert OmegaConf.to_yaml(ours) == OmegaConf.to_yaml(hydras)


def test_undo_sets_back_every_changed_key(composer):
    template = composer.template(())
    before = OmegaConf.to_yaml(template.task)
    cfg = copy.deepcopy(template.task)
    job = composer.split(["point.x=7", "tape.persistent=true", "name=changed"])
    assert template.undoable(job)
    _compose.apply(job.values, cfg)
    assert cfg.point.x == 7 and cfg.tape.persistent is True
    _compose.undo(template, job, cfg)
    assert OmegaConf.to_yaml(cfg) == before


def test_a_refused_override_is_refused_as_hydra_refuses_it(composer):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as ours:
        composer.validate(["tape.no_such_key=1"])
    with pytest.raises(ConfigCompositionException) as hydras:
        composer.loader.load_sweep_config(composer.master, ["tape.no_such_key=1"])
    assert str(ours.value.__cause__) == str(hydras.value.__cause__)
    assert OmegaConf.to_yaml(composer.template(()).task).count("no_such_key") == 0


TRICKY = [
    ["point.x=3"],
    [],
    ["name='a: b'", "point.x=-1e-05"],
    ["name=" + "word " * 30],
    ["name=ünïcödé ✓", 'name="quoted \\"inner\\""'],
]


@pytest.mark.parametrize(
    "task", TRICKY, ids=["plain", "empty", "quotes and colon", "longer than a line", "unicode and escapes"]
)
def test_hydra_yaml_is_spliced_byte_for_byte(composer, task):
    """HydraYaml.render gives the text OmegaConf.to_yaml gives for the same values."""
    full = composer.template(()).full
    container = OmegaConf.to_container(full, resolve=False, enum_to_str=True)
    hydra_only = {"hydra": container["hydra"]}
    out_dir = "/some/where/" + "deep/" * 20 + "7"
    dirname = ",".join(task)
    values = [task, dirname, "7", 7, out_dir]
    expected = copy.deepcopy(hydra_only)
    for path, value in zip(_hydra_yaml.PER_JOB, values):
        node = expected
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    assert (
        _hydra_yaml.HydraYaml(hydra_only).render(values)
        == _hydra_yaml.dump(expected)
        == OmegaConf.to_yaml(OmegaConf.create(expected))
    )


SCALAR_JOBS = [
    ["point.x=3"],
    ["point.x=-2.5e-07", "seed=12"],
    ["tape.compile=function", "tape.persistent=true"],  # an enum field: written by name
    ["name='a: b'", "verify=off"],
    ["name='ünïcödé ✓'", "point.x=null"],
    ["expect.error=RuntimeError", "log.max_inline_elements=5"],
    ["name=x", "name=y"],  # the same key twice: the last one holds
    ["experiment=seed_chain_rule", "point.x=1e300"],
]


@pytest.mark.parametrize("lines", SCALAR_JOBS, ids=lambda lines: " ".join(lines)[:40])
def test_config_yaml_is_spliced_byte_for_byte(composer, lines):
    """The launcher's config.yaml is OmegaConf.to_yaml of the job's config, as _save_config writes it."""
    from hydra_plugins.runner_launcher import _core

    job = composer.split(lines)
    template = composer.template(job.groups)
    assert template.undoable(job)
    task_cfg = composer.task_config(template, job)
    assert template.config_yaml(job.paths()) is not None  # spliced, not dumped whole
    assert _core._config_yaml(template, job, task_cfg) == OmegaConf.to_yaml(task_cfg)
    assert _hydra_yaml.sequence(lines) == OmegaConf.to_yaml(OmegaConf.create(lines))


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="abXY_019./=+,-: '#\"ü", max_size=12),
    st.from_regex(r"[A-Za-z_/][A-Za-z0-9_./=+,-]{0,10}", fullmatch=True),
    st.from_regex(r"[0-9]{1,6}", fullmatch=True),
)


@settings(max_examples=400, deadline=None)
@given(value=st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3)), depth=st.integers(min_value=1, max_value=3))
def test_an_entry_written_by_hand_is_what_the_dumper_writes(value, depth):
    path = tuple(f"k{i}" for i in range(depth))
    doc = value
    for key in reversed(path):
        doc = {key: doc}
    expected = "".join(_hydra_yaml.dump(doc).splitlines(keepends=True)[depth - 1 :])
    assert _hydra_yaml.entry(path, value) == expected
    if isinstance(value, list):
        assert _hydra_yaml.sequence(value) == _hydra_yaml.dump(value)


def _same_nodes(a: Any, b: Any, parents: tuple = (None, None), path: str = "") -> None:
    """Two configs are built of the same nodes: types, metadata, flags, values, structure."""
    assert type(a) is type(b), path
    da, db = a.__dict__, b.__dict__
    assert set(da) == set(db), path
    for key in da:
        if key == "_flags_cache":  # a cache of the flags up the tree: None until first read
            continue
        if key == "_parent":
            assert da[key] is parents[0] and db[key] is parents[1], path
        elif key == "_content" and isinstance(da[key], dict):
            assert list(da[key]) == list(db[key]), path
            for k in da[key]:
                _same_nodes(da[key][k], db[key][k], (a, b), f"{path}.{k}")
        elif key == "_content" and isinstance(da[key], list):
            assert len(da[key]) == len(db[key]), path
            for i, (x, y) in enumerate(zip(da[key], db[key])):
                _same_nodes(x, y, (a, b), f"{path}[{i}]")
        else:
            assert da[key] == db[key], (path, key)


@pytest.mark.parametrize("groups", [(), ("experiment=seed_chain_rule",), ("experiment=variables",)])
def test_a_task_copy_is_what_deepcopy_makes(composer, groups):
    template = composer.template(groups)
    ours = template.task_copy()
    assert ours is not template.task
    _same_nodes(ours, copy.deepcopy(template.task))
    ours.point = {"x": 123.0}  # a copy: the template is untouched
    assert template.task.point != ours.point


@settings(max_examples=600, deadline=None)
@given(
    key=st.from_regex(r"[A-Za-z_$][A-Za-z0-9_$-]{0,4}(\.[A-Za-z0-9_]{1,3}){0,2}", fullmatch=True),
    value=st.text(alphabet="0123456789.eE+-_ inaf", min_size=0, max_size=8),
)
def test_a_number_override_is_parsed_as_hydras_parser_parses_it(key, value):
    """`key=number` lines skip Hydra's ANTLR parser; whatever they give, the parser gives."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    line = f"{key}={value}"
    ours = _compose._number_override(line)
    if ours is None:
        return  # the parser's own path
    (hydras,) = OverridesParser.create().parse_overrides([line])
    assert ours == hydras and type(ours.value()) is type(hydras.value())


@pytest.mark.parametrize("line", ["point.x=3", "point.x=-0.25", "seed=12", "point.x=1e-05", "a.b.c=5."])
def test_a_sweeps_usual_lines_take_the_fast_parse(line):
    assert _compose._number_override(line) is not None
