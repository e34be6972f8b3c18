"""Every bad input gets one short error naming what is at fault, exit 2, and no success logged.

Three tables:
- `BAD_CONFIGS`: composed configs the runner refuses (in-process, through `job.run`):
  the key at fault and the message each must give.
- `HYDRA_ERRORS`: what Hydra refuses at composition, as `runner.errors.explain` words it.
- `CLI_ROWS`: a few of both through the real command line, checking the one-line stderr,
  the exit code, no traceback, and that TensorFlow was never imported.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil

import pytest
import yaml
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from runner import errors
from runner.cli import config_dir
from runner.config import spec as specs
from runner.errors import ConfigError
from tests.helpers import cli, composed, exit_and_tensorflow, function_config


@functools.lru_cache(maxsize=1)
def _base():
    return function_config({"y": "x * x"}, {"x": 3.0}, [{"target": "y", "sources": "x"}])


def with_(*changes):
    """The base config (y = x * x at x = 3, dy/dx) with (dotted key, value) changes applied."""

    def build():
        cfg = copy.deepcopy(_base())
        for key, value in changes:
            node = cfg
            *path, last = key.split(".")
            for part in path:
                node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
            if isinstance(node, list):
                node[int(last)] = value
            else:
                node[last] = value
        return cfg

    return build


BIG = {"random": {"shape": [5000, 5000]}}  # 25M elements: allowed as a point
MANY_STEPS = {f"y{i}": "x * x" for i in range(12)}  # 13 values of 200 MB as float64

BAD_CONFIGS = [
    # id, config, the key at fault, what the message must contain
    (
        "unknown name",
        with_(("function.steps.y", "x * q")),
        "function.steps.y",
        "unknown name 'q'; known here: x (column 5)",
    ),
    ("unknown function", with_(("function.steps.y", "open(x)")), "function.steps.y", "unknown function 'open'"),
    ("syntax error", with_(("function.steps.y", "x * (")), "function.steps.y", "syntax error"),
    (
        "attribute access",
        with_(("function.steps.y", "x.__class__")),
        "function.steps.y",
        "attribute access not allowed in expressions (column 1)",
    ),
    ("dunder call", with_(("function.steps.y", "__import__(x)")), "function.steps.y", "unknown function '__import__'"),
    ("lambda", with_(("function.steps.y", "(lambda: x)()")), "function.steps.y", "calling a lambda is not allowed"),
    ("comprehension", with_(("function.steps.y", "[x for x in x]")), "function.steps.y", "comprehensions not allowed"),
    (
        "string literal",
        with_(("function.steps.y", "x * 'a'")),
        "function.steps.y",
        "string literals are not allowed; only numbers (column 5)",
    ),
    (
        "subscript of a function",
        with_(("function.steps.y", "sin[0](x)")),
        "function.steps.y",
        "calling a subscript is not allowed",
    ),
    (
        "subscript of a number",
        with_(("function.steps.y", "x * 3[0]")),
        "function.steps.y",
        "subscripts not allowed in expressions (column 5)",
    ),
    (
        "keyword argument",
        with_(("function.steps.y", "sin(x=x)")),
        "function.steps.y",
        "keyword arguments are not allowed",
    ),
    (
        "wrong arity",
        with_(("function.steps.y", "pow(x)")),
        "function.steps.y",
        "pow takes pow(t, t), got 1 argument(s)",
    ),
    ("empty expression", with_(("function.steps.y", "  ")), "function.steps.y", "empty expression"),
    ("expression not a string", with_(("function.steps.y", ["x"])), "function.steps.y", "must be a string, not list"),
    ("too long", with_(("function.steps.y", "x+" * 1100 + "x")), "function.steps.y", "the limit is 2000"),
    ("too deep", with_(("function.steps.y", "(" * 100 + "x" + ")" * 100)), "function.steps.y", "nested deeper than 64"),
    ("huge literal", with_(("function.steps.y", "9" * 400)), "function.steps.y", "too large for any float type"),
    (
        "uses a later step",
        with_(("function.steps", {"y": "z * 2", "z": "x * x"})),
        "function.steps.y",
        "uses step 'z', which is defined later",
    ),
    ("uses itself", with_(("function.steps.y", "y * x")), "function.steps.y", "step 'y' uses itself (column 1)"),
    (
        "step named like an input",
        with_(("function.steps", {"x": "x * 2"})),
        "function.steps.x",
        "'x' is already an input",
    ),
    (
        "step named like a function",
        with_(("function.steps", {"sin": "x * 2"})),
        "function.steps.sin",
        "is a function or constant",
    ),
    ("invalid step name", with_(("function.steps", {"1y": "x"})), "function.steps.1y", "'1y' is not a valid name"),
    ("no inputs", with_(("function.inputs", [])), "function.inputs", "no inputs declared"),
    (
        "misspelt input option",
        with_(("function.inputs", {"x": {"kidn": "constant"}})),
        "function.inputs.x.kidn",
        "unknown option; allowed: kind, dtype, trainable",
    ),
    (
        "unknown input kind",
        with_(("function.inputs", {"x": {"kind": "placeholder"}})),
        "function.inputs.x.kind",
        "expected one of constant, variable",
    ),
    (
        "unknown dtype",
        with_(("function.inputs", {"x": {"dtype": "float128"}})),
        "function.inputs.x.dtype",
        "got 'float128'",
    ),
    ("input with no point", with_(("function.inputs", ["x", "w"])), "point.w", "input 'w' has no point"),
    ("point for no input", with_(("point.w", 1.0)), "point.w", "no input named 'w'"),
    (
        "point is a string",
        with_(("point.x", "three")),
        "point.x",
        "expected a number, a nested list or a generator, got str",
    ),
    ("point is a bool", with_(("point.x", True)), "point.x", "got True"),
    ("point is null", with_(("point.x", None)), "point.x", "got None"),
    ("ragged point", with_(("point.x", [[1.0, 2.0], [3.0]])), "point.x", "must be rectangular"),
    ("point of strings", with_(("point.x", ["a", "b"])), "point.x", "only numbers"),
    ("unknown generator", with_(("point.x", {"logspace": [0, 1, 5]})), "point.x", "a generator is one of"),
    (
        "grid too large",
        with_(("point.x", {"linspace": [0, 1, 1e12]})),
        "point.x",
        "1,000,000,000,000 elements (about 7,450.6 GiB as float64) exceeds the limit",
    ),
    (
        "random too large",
        with_(("point.x", {"random": {"shape": [100000, 100000]}})),
        "point.x.random",
        "exceeds the limit",
    ),
    (
        "shapes do not broadcast",
        with_(
            ("function.inputs", ["x", "w"]),
            ("point.x", [1.0, 2.0, 3.0]),
            ("point.w", [1.0, 2.0]),
            ("function.steps.y", "x * w"),
        ),
        "function.steps.y",
        "shapes [3] and [2] do not broadcast in '*'",
    ),
    (
        "matmul inner sizes",
        with_(("point.x", [[1.0, 2.0, 3.0]]), ("function.steps.y", "x @ x")),
        "function.steps.y",
        "inner sizes 3 and 1 differ",
    ),
    (
        "reduction axis",
        with_(("function.steps.y", "reduce_sum(x, 1)")),
        "function.steps.y",
        "axis 1 is out of range for shape [] (rank 0)",
    ),
    (
        "step too large",
        with_(("point.x", {"random": {"shape": [20000, 1]}}), ("function.steps.y", "x @ transpose(x)")),
        "function.steps.y",
        "builds a tensor of shape [20000, 20000]: 400,000,000 elements",
    ),
    (
        "job too large",
        with_(
            ("function.inputs", {"x": {"dtype": "float64"}}),
            ("point.x", BIG),
            ("function.steps", MANY_STEPS),
            ("derivatives", []),
        ),
        "point",
        "the job needs at least 4.8 GiB (13 tensors and 0 gradient(s) of 8-byte numbers; the largest, x, has shape [5000, 5000]); the limit is 4.0 GiB",
    ),
    (
        "unknown target",
        with_(("derivatives", [{"target": "q", "sources": "x"}])),
        "derivatives[0].target",
        "unknown target 'q'; known: x, y",
    ),
    (
        "unknown source",
        with_(("derivatives", [{"target": "y", "sources": ["x", "w"]}])),
        "derivatives[0].sources",
        "unknown source 'w'",
    ),
    ("missing sources", with_(("derivatives", [{"target": "y"}])), "derivatives[0].sources", "missing"),
    (
        "misspelt request option",
        with_(("derivatives", [{"target": "y", "sources": "x", "nmae": "g"}])),
        "derivatives[0].nmae",
        "did you mean 'name'?",
    ),
    (
        "misspelt key of the second request",  # issue 16: named by index and by name
        with_(("derivatives", [{"target": "y", "sources": "x"}, {"target": "y", "sourcse": "x", "order": 2}])),
        "derivatives[1].sourcse",
        "no such key in request 'd2y/dx2'; did you mean 'sources'?",
    ),
    (
        "misspelt tape option",
        with_(("tape.persistant", True)),
        "tape.persistant",
        "no such key in TapeConfig; did you mean 'persistent'?",
    ),
    ("unknown top-level key", with_(("fucntion", {})), "fucntion", "did you mean 'function'?"),
    ("unknown watch", with_(("tape.watch", ["w"])), "tape.watch", "unknown input 'w'"),
    (
        "expect names no request",
        with_(("expect", {"derivatives": {"dz/dx": 1.0}})),
        "expect.derivatives.dz/dx",
        "no derivative request is named 'dz/dx'",
    ),
    ("expect error not a type", with_(("expect", {"error": "it fails"})), "expect.error", "exception type name"),
    (
        "_target_ in inputs",
        with_(("function.inputs", {"x": {"_target_": "os.system"}})),
        "function.inputs.x._target_",
        "instantiation keys are not allowed",
    ),
    (
        "_target_ in point",
        with_(("point.x", {"_target_": "numpy.load", "file": "a.npy"})),
        "point.x._target_",
        "instantiation keys are not allowed",
    ),
    (
        "_target_ in a request",
        with_(("derivatives", [{"target": "y", "sources": "x", "output_gradients": {"_target_": "os.system"}}])),
        "derivatives[0].output_gradients._target_",
        "instantiation keys are not allowed",
    ),
    (
        "_target_ in expect",
        with_(("expect", {"derivatives": {"dy/dx": {"_target_": "builtins.eval", "_args_": ["1"]}}})),
        "expect.derivatives.dy/dx._target_",
        "instantiation keys are not allowed",
    ),
    ("_partial_ in tape", with_(("tape._partial_", True)), "tape._partial_", "instantiation keys are not allowed"),
    # non-finite, overflowing and out-of-range values (issue 12, item 9)
    ("arange NaN", with_(("point.x", {"arange": [0, float("nan"), 1]})), "point.x.arange", "expected 3 finite numbers"),
    ("linspace Inf", with_(("point.x", {"linspace": [0, float("inf"), 3]})), "point.x.linspace", "got [0, inf, 3]"),
    (
        "linspace count NaN",
        with_(("point.x", {"linspace": [0, 1, float("nan")]})),
        "point.x.linspace",
        "finite numbers",
    ),
    (
        "linspace count beyond any float",
        with_(("point.x", {"linspace": [0, 1, 10**400]})),
        "point.x.linspace",
        "expected 3 finite numbers, got [0, 1, 1000000000",
    ),
    (
        "arange count overflows",
        with_(("point.x", {"arange": [-1e308, 1e308, 1e-308]})),
        "point.x",
        "more elements than the limit of 134,217,728",
    ),
    (
        "random shape overflows",
        with_(("point.x", {"random": {"shape": [2**40, 2**40]}})),
        "point.x.random",
        "1,208,925,819,614,629,174,706,176 elements",
    ),
    ("random dim negative", with_(("point.x", {"random": {"shape": [-1, 3]}})), "point.x.random.shape", "got [-1, 3]"),
    (
        "random dim fractional",
        with_(("point.x", {"random": {"shape": [1.5]}})),
        "point.x.random.shape",
        "whole numbers",
    ),
    (
        "random dim a bool",
        with_(("point.x", {"random": {"shape": [True, 3]}})),
        "point.x.random.shape",
        "got [True, 3]",
    ),
    (
        "random empty but huge",
        with_(("point.x", {"random": {"shape": [0, 10**20]}})),
        "point.x.random.shape",
        "a size of 100,000,000,000,000,000,000 exceeds the limit of 134,217,728",
    ),
    (
        "random seed negative",
        with_(("point.x", {"random": {"shape": [3], "seed": -1}})),
        "point.x.random.seed",
        "expected a whole number from 0 to 4294967295, got -1",
    ),
    (
        "random seed too large",
        with_(("point.x", {"random": {"shape": [3], "seed": 2**64}})),
        "point.x.random.seed",
        "from 0 to 4294967295",
    ),
    ("seed negative", with_(("seed", -1)), "seed", "expected a whole number from 0 to 4294967295, got -1"),
    ("seed too large", with_(("seed", 2**32)), "seed", "got 4294967296"),
    (
        "point beyond any float",
        with_(("point.x", 2**1024)),
        "point.x",
        "the number 179769313486... (309 digits) is too large for any float type",
    ),
    ("points beyond any float", with_(("point.x", [1.0, 2**1024])), "point.x", "too large for any float type"),
    (
        "rtol NaN",
        with_(("expect", {"derivatives": {"dy/dx": 6.0}, "rtol": float("nan")})),
        "expect.rtol",
        "expected a finite number >= 0, got nan",
    ),
    ("atol Inf", with_(("expect", {"derivatives": {"dy/dx": 6.0}, "atol": float("inf")})), "expect.atol", "got inf"),
    ("negative tolerance", with_(("expect", {"derivatives": {"dy/dx": 6.0}, "rtol": -0.1})), "expect.rtol", "got -0.1"),
    ("tolerance alone NaN", with_(("expect", {"rtol": float("nan")})), "expect.rtol", "a finite number >= 0"),
    ("tolerance a word", with_(("expect", {"atol": "tight"})), "expect.atol", "got 'tight'"),
    (
        "expected NaN",
        with_(("expect", {"derivatives": {"dy/dx": float("nan")}})),
        "expect.derivatives.dy/dx",
        "nan is not a finite number; to expect a non-finite value write it as the run log does, as text: "
        "'NaN', 'Infinity' or '-Infinity'",
    ),
    ("expected 1e400", with_(("expect", {"derivatives": {"dy/dx": 1e400}})), "expect.derivatives.dy/dx", "inf is not"),
    (
        "expected NaN in a list",
        with_(("point.x", [1.0, 2.0]), ("expect", {"derivatives": {"dy/dx": [2.0, float("nan")]}})),
        "expect.derivatives.dy/dx[1]",
        "nan is not a finite number",
    ),
    (
        "expected value a word",
        with_(("expect", {"derivatives": {"dy/dx": "six"}})),
        "expect.derivatives.dy/dx",
        "expected a number, a nested list of numbers, null, or 'NaN', 'Infinity', '-Infinity'; got 'six'",
    ),
    (
        "expected value a bool",
        with_(("expect", {"derivatives": {"dy/dx": True}})),
        "expect.derivatives.dy/dx",
        "got True",
    ),
    (
        "output_gradients NaN",
        with_(("derivatives", [{"target": "y", "sources": "x", "output_gradients": float("nan")}])),
        "derivatives[0].output_gradients",
        "expected finite numbers, got nan",
    ),
    (
        "tangents Inf",
        with_(("derivatives", [{"target": "y", "sources": "x", "kind": "jvp", "tangents": [float("inf")]}])),
        "derivatives[0].tangents.x",
        "expected finite numbers, got inf",
    ),
    (
        "integer literal beyond any float",
        with_(("function.steps.y", "x * " + str(2**1024 - 1))),
        "function.steps.y",
        "the number 179769313486... (309 digits) is too large for any float type (column 5)",
    ),
    ("name not text", with_(("name", ["a"])), "name", "expected text or null, got ['a']"),
    (
        "point beyond its integer type",
        with_(("function.inputs", {"x": {"dtype": "int32"}}), ("point.x", 3_000_000_000), ("derivatives", [])),
        "point.x",
        "input 'x' is int32, which holds -2147483648 to 2147483647; its point holds 3000000000",
    ),
    (
        "request name not text",
        with_(("derivatives", [{"target": "y", "sources": "x", "name": ["g"]}])),
        "derivatives[0].name",
        "expected text, got ['g']",
    ),
    ("expected values not a mapping", with_(("expect", {"derivatives": [6.0]})), "expect.derivatives", "got [6.0]"),
    ("tape option not a bool", with_(("tape.persistent", "no")), "tape.persistent", "expected true or false, got 'no'"),
]


@pytest.mark.parametrize("make, key, message", [r[1:] for r in BAD_CONFIGS], ids=[r[0] for r in BAD_CONFIGS])
def test_bad_config_is_refused_naming_the_key(run_job, make, key, message):
    cfg = make()
    with pytest.raises(ConfigError) as info:
        specs.build(cfg)
    assert info.value.key == key
    assert message in info.value.message
    assert "\n" not in info.value.headline()  # one line; a caret, if any, goes in `detail`

    ran = run_job(cfg)
    assert ran.code == 2
    assert ran.log["status"] == "error" and ran.log["expect"]["met"] is False  # no success claimed
    assert ran.log["error"]["type"] == "ConfigError" and ran.log["error"]["key"] == key
    assert ran.log["values"] == {} and ran.log["derivatives"] == []


def test_expression_errors_point_at_the_column(run_job):
    with pytest.raises(ConfigError) as info:
        specs.build(with_(("function.steps.y", "x + sin(x).real"))())
    assert info.value.detail == "x + sin(x).real\n    ^"


# ---- what Hydra refuses at composition --------------------------------------------------


@pytest.fixture(scope="module")
def user_conf(tmp_path_factory):
    """A user's config folder: the shipped configs plus a few broken experiment files."""
    root = tmp_path_factory.mktemp("conf")
    shutil.copytree(config_dir(), root, dirs_exist_ok=True)
    exp = root / "experiment"
    (exp / "unclosed.yaml").write_text("# @package _global_\nfunction:\n  steps: {y: x * x\n")
    (exp / "tabs.yaml").write_text("# @package _global_\nfunction:\n\tsteps: {}\n")
    (exp / "typo.yaml").write_text("# @package _global_\ntape:\n  persistant: true\n")
    (exp / "wrong_type.yaml").write_text("# @package _global_\ntape:\n  persistent: maybe\n")
    (exp / "deep.yaml").write_text("# @package _global_\npoint:\n  x: " + "[" * 5000 + "1.0" + "]" * 5000 + "\n")
    # PyYAML would run this with an unsafe loader; OmegaConf's loader refuses the tag
    (exp / "python_tag.yaml").write_text("# @package _global_\nname: !!python/object/apply:os.system ['touch PWNED']\n")
    # issue 16: no `# @package _global_` line, so Hydra places the keys under `experiment`
    (exp / "no_package.yaml").write_text("function:\n  inputs: [x]\n  steps: {y: x * x}\npoint: {x: 3.0}\n")
    (exp / "no_package_defaults.yaml").write_text(
        "# the shipped seed_cubic.yaml without its first line\ndefaults:\n  - override /function: cubic\n"
        "  - override /point: x5\nderivatives:\n  - {target: y, sources: x}\n"
    )
    (exp / "request_typo.yaml").write_text(
        "# @package _global_\nfunction:\n  inputs: [x]\n  steps: {y: x * x, z: sin(x)}\npoint: {x: 3.0}\n"
        "derivatives:\n  - {target: y, sources: x}\n  - {target: z, sourcse: x}\n"
    )
    return root


HYDRA_ERRORS = [
    # id, overrides, the one line the user sees (a prefix of it)
    (
        "misspelt key",
        ["tape.persistant=true"],
        "config error: tape.persistant: no such key in TapeConfig; did you mean 'persistent'?",
    ),
    (
        "misspelt request key",
        ["derivatives.0.soures=x"],
        "config error: derivatives[0].soures: no such key in request 'dy/dx'; did you mean 'sources'?",
    ),
    # issue 16: hints that point the right way
    (
        "misspelt key in a list of requests",
        ["derivatives=[{target: y, sources: x},{target: y, sourcse: x, order: 2}]"],
        "config error: derivatives[1].sourcse: no such key in request 'd2y/dx2'; did you mean 'sources'?",
    ),
    (
        "misspelt request key in a file",
        ["experiment=request_typo"],
        "config error: derivatives[1].sourcse: no such key in request 'dz/dx'; did you mean 'sources'? "
        "(in experiment/request_typo)",
    ),
    (
        "experiment file without its package line",
        ["experiment=no_package"],
        "config error: experiment: {conf}/experiment/no_package.yaml has no '# @package _global_' line: "
        "its keys landed under 'experiment' (add that line as its first line, as conf/experiment/*.yaml do)",
    ),
    (
        "experiment file with defaults without its package line",
        ["experiment=no_package_defaults"],
        "config error: experiment: {conf}/experiment/no_package_defaults.yaml has no '# @package _global_' line",
    ),
    (
        "experiment not shipped",
        ["experiment=mine"],
        "config error: experiment: no shipped config 'mine' (to use your own folder of configs: "
        "--config-dir DIR, with DIR/experiment/mine.yaml)",
    ),
    (
        "experiment name close to a shipped one",
        ["experiment=seed_cubc"],
        "config error: experiment: no shipped config 'seed_cubc'; did you mean 'seed_cubic'? (to use your own",
    ),
    (
        "experiment in neither folder",
        ["hydra.searchpath=[file://{conf}]", "experiment=seed_cubc"],
        "config error: experiment: no config 'seed_cubc' in the shipped experiment/ or in {conf}/experiment/; "
        "did you mean 'seed_cubic'?",
    ),
    ("wrong type", ["tape.persistent=maybe"], "config error: tape.persistent: Value 'maybe' is not a valid bool"),
    (
        "a long value is quoted short",
        ["tape.persistent=" + "A" * 5000],
        "config error: tape.persistent: Value '" + "A" * 76 + "... is not a valid bool (type str)",
    ),
    (
        "not an integer",
        ["log.max_inline_elements=many"],
        "config error: log.max_inline_elements: Value 'many' of type 'str' could not be converted to Integer",
    ),
    (
        "unknown enum",
        ["tape.compile=jit"],
        "config error: tape.compile: Invalid value 'jit', expected one of [eager, function, xla]",
    ),
    ("missing experiment", ["experiment=nope"], "config error: experiment: no shipped config 'nope'"),
    ("override grammar", ["point.x=range("], "config error: command line: cannot parse the override: "),
    (
        "malformed YAML",
        ["experiment=unclosed"],
        "experiment/unclosed.yaml, line 4, column 1: malformed YAML: expected ',' or '}', but got '<stream end>' (while parsing a flow mapping)",
    ),
    (
        "tab in YAML",
        ["experiment=tabs"],
        "experiment/tabs.yaml, line 3, column 1: malformed YAML: found character '\\t' that cannot start any token",
    ),
    (
        "misspelt key in a file",
        ["experiment=typo"],
        "config error: tape.persistant: no such key in TapeConfig; did you mean 'persistent'? (in experiment/typo)",
    ),
    (
        "wrong type in a file",
        ["experiment=wrong_type"],
        "config error: tape.persistent: Value 'maybe' is not a valid bool",
    ),
    ("deeply nested YAML", ["experiment=deep"], "config error: a value is nested too deeply to read"),
    (
        "python tag in YAML",
        ["experiment=python_tag"],
        "malformed YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
]


@pytest.mark.parametrize("overrides, headline", [r[1:] for r in HYDRA_ERRORS], ids=[r[0] for r in HYDRA_ERRORS])
def test_hydra_composition_errors_read_as_one_line(user_conf, tmp_path, monkeypatch, overrides, headline):
    monkeypatch.chdir(tmp_path)
    overrides = [o.replace("{conf}", str(user_conf)) for o in overrides]
    with pytest.raises((HydraException, OmegaConfBaseException, yaml.YAMLError, RecursionError)) as info:
        composed(overrides, config_path=user_conf)
    first, detail, code = errors.explain(info.value)
    assert headline.replace("{conf}", str(user_conf)) in first
    assert first.startswith("config error: ")
    assert "\n" not in first and "Traceback" not in (detail or "")
    assert code == 2
    assert not (tmp_path / "PWNED").exists()


def test_a_fault_of_the_runner_is_not_called_a_config_error():
    first, detail, code = errors.explain(ZeroDivisionError("division by zero"))
    assert (first, code) == ("error: ZeroDivisionError: division by zero", 1)
    assert "HYDRA_FULL_ERROR=1" in detail


# ---- through the command line -----------------------------------------------------------

CLI_ROWS = [
    # id, arguments, the first line of stderr
    (
        "unknown name",
        ["function.steps.y='x * q'"],
        "config error: function.steps.y: unknown name 'q'; known here: x (column 5)",
    ),
    (
        "attribute access",
        ["function.steps.y='x.__class__.__bases__'"],
        "config error: function.steps.y: attribute access not allowed in expressions (column 1)",
    ),
    (
        "misspelt key",
        ["tape.persistant=true"],
        "config error: tape.persistant: no such key in TapeConfig; did you mean 'persistent'?",
    ),
    (
        "appended misspelt key",
        ["+tape.persistant=true"],
        "config error: tape.persistant: no such key in TapeConfig; did you mean 'persistent'?",
    ),
    (
        "malformed YAML",
        ["--config-dir", "{conf}", "experiment=unclosed"],
        "config error: {conf}/experiment/unclosed.yaml, line 4, column 1: malformed YAML",
    ),
    (
        "python tag in YAML",
        ["--config-dir", "{conf}", "experiment=python_tag"],
        "config error: {conf}/experiment/python_tag.yaml, line 2, column 7: malformed YAML: could not determine a constructor",
    ),
    ("grid too large", ["point.x={linspace: [0, 1, 1e12]}"], "config error: point.x: 1,000,000,000,000 elements"),
    (
        "resume without a folder",
        ["-m", "point.x=1.0,2.0", "resume=true"],
        "config error: resume: no sweep folder 'true' to resume",
    ),
    # a config group's choice that YAML reads as no name (issue 12, item 9)
    (
        "experiment a number",
        ["experiment=1"],
        "config error: experiment: expected the name of a config in experiment/, got 1",
    ),
    (
        "experiment a bool",
        ["experiment=true"],
        "config error: experiment: expected the name of a config in experiment/, got True",
    ),
    (
        "experiment null",
        ["experiment=null"],
        "config error: experiment: expected the name of a config in experiment/, got None",
    ),
    (
        "experiment nan",
        ["experiment=nan"],
        "config error: experiment: expected the name of a config in experiment/, got nan",
    ),
    (
        "experiments of numbers",
        ["experiment=[1]"],
        "config error: experiment: expected the name of a config in experiment/, got 1",
    ),
    (
        "delete a number",
        ["~experiment=1"],
        "config error: experiment: expected the name of a config in experiment/, got 1",
    ),
    ("group in a sweep", ["-m", "experiment=1,seed_cubic"], "config error: experiment: expected the name of a config"),
    (
        "arange NaN",
        ["point.x={arange: [0, nan, 1]}"],
        "config error: point.x.arange: expected 3 finite numbers, got [0, nan, 1]",
    ),
    ("seed negative", ["seed=-1"], "config error: seed: expected a whole number from 0 to 4294967295, got -1"),
    ("rtol NaN", ["expect.rtol=nan"], "config error: expect.rtol: expected a finite number >= 0, got nan"),
    (
        "output_gradients NaN",
        ["derivatives.0.output_gradients=nan"],
        "config error: derivatives[0].output_gradients: expected finite numbers, got nan",
    ),
    # issue 16: hints that point the right way (the rest: HYDRA_ERRORS, in-process)
    (
        "experiment file without its package line",
        ["--config-dir", "{conf}", "experiment=no_package"],
        "config error: experiment: {conf}/experiment/no_package.yaml has no '# @package _global_' line",
    ),
    (
        "experiment not shipped, no --config-dir",
        ["experiment=mine"],
        "config error: experiment: no shipped config 'mine' (to use your own folder of configs: --config-dir DIR",
    ),
    (
        "--config-path, a Hydra habit",
        ["-cp", "myconf"],
        "config error: --config-path (-cp): names a Python package path relative to the runner module "
        "('runner.myconf': not found); your own configs go in a folder given with --config-dir DIR",
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, first_line", [r[1:] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS])
def test_cli_refuses_in_one_line_without_traceback(user_conf, tmp_path, args, first_line):
    args = [a.replace("{conf}", str(user_conf)) for a in args]
    result = cli(args, cwd=tmp_path, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(first_line.replace("{conf}", str(user_conf))), result.stderr
    assert all(line.startswith("    ") for line in lines[1:]), result.stderr  # detail only, indented
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "true").exists()  # no folder named after a bad resume=
    for log in tmp_path.glob("outputs/**/results.json"):  # a refused run never claims success
        assert json.loads(log.read_text())["status"] == "error"
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_hydra_full_error_shows_the_traceback(tmp_path):
    result = cli(["tape.persistant=true"], cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"}, timeout=60)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ConfigCompositionException" in result.stderr


@pytest.mark.slow
def test_config_errors_never_import_tensorflow(tmp_path):
    """The whole error path, Hydra composition to refusal, leaves TensorFlow unimported."""
    for args in (["function.steps.y=x * q"], ["point.x=[1, [2]]"], ["tape.persistant=1"], ["--config-path=myconf"]):
        assert exit_and_tensorflow(args, tmp_path) == ["2", "False"], args


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "2001-02-30",
        "2001-02-03",
    ],
)
def test_a_date_like_name_in_a_config_file_is_text_as_hydra_reads_it(tmp_path, name):
    """OmegaConf reads `name: 2001-02-30` as the text it is (no YAML timestamps); so must the runner."""
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "dated.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /function: cubic\n  - override /point: x5\n"
        f"name: {name}\nderivatives:\n  - {{target: y, sources: x}}\n"
    )
    result = cli(["--config-dir", str(tmp_path / "conf"), "experiment=dated", "log.plots=false"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (log,) = tmp_path.glob("outputs/*/*/results.json")
    assert json.loads(log.read_text())["experiment"] == name


@pytest.mark.slow
@pytest.mark.parametrize(
    "x, want, met",
    [(float("inf"), "Infinity", True), (float("nan"), "NaN", True), (float("inf"), "-Infinity", False)],
)
def test_a_non_finite_value_is_expected_as_the_run_log_spells_it(run_job, x, want, met):
    """The refused float NaN and inf have this counterpart: text, as results.json writes them."""
    ran = run_job(with_(("point.x", x), ("expect", {"derivatives": {"dy/dx": want}}))())
    assert ran.derivatives["dy/dx"] == ("NaN" if x != x else "Infinity")
    assert ran.log["expect"]["met"] is met and ran.code == (0 if met else 1)
    assert ran.log["expect"]["declared"]["derivatives"] == {"dy/dx": want}


DEFAULTS_HYDRA_CANNOT_READ = [
    # id, the experiment file's defaults list, the one line the user sees
    ("a number as a choice", "  - override /function: 1", "config error: experiment/bad: defaults: Unsupported item"),
    (
        "a number in a list of choices",
        "  - override /function: [1]",
        "config error: experiment/bad: defaults: Unsupported item value in defaults : int, nested",
    ),
    ("a number as an entry", "  - 1", "config error: experiment/bad: defaults: Unsupported type in defaults : int"),
    (
        "two keys in an entry",
        "  - {a: x, b: y}",
        "config error: experiment/bad: defaults: Too many keys in default item",
    ),
]


@pytest.mark.parametrize(
    "entry, headline",
    [r[1:] for r in DEFAULTS_HYDRA_CANNOT_READ],
    ids=[r[0] for r in DEFAULTS_HYDRA_CANNOT_READ],
)
def test_a_defaults_list_hydra_cannot_read_is_a_config_error(tmp_path, monkeypatch, entry, headline):
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    (conf / "experiment" / "bad.yaml").write_text(f"# @package _global_\ndefaults:\n{entry}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:  # Hydra's own, bare: it names no file
        composed(["experiment=bad"], config_path=conf)
    first, detail, code = errors.explain(info.value)
    assert first.startswith(headline) and "\n" not in first
    assert (detail, code) == (None, 2)


# ---- a config folder that configures Hydra itself (the table: tests/test_config_folders.py) --


@pytest.mark.slow
def test_a_hydra_callback_from_a_config_folder_never_runs(tmp_path):
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    x: {_target_: numpy.save, file: "
        + str(tmp_path / "OWNED")
        + ", arr: [1]}\n"
    )
    result = cli(["--config-dir", str(tmp_path / "conf"), "experiment=evil"], cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"config error: {conf / 'evil.yaml'}: hydra.callbacks.x._target_: a config file may not set this"
    )
    assert not list(tmp_path.glob("OWNED*"))


@pytest.mark.slow
def test_a_refused_job_in_a_sweep_is_listed_and_fails_the_sweep(tmp_path):
    result = cli(["-m", "function.steps.y=x*q,x*x"], cwd=tmp_path, timeout=300)
    assert result.returncode == 1, result.stderr
    (summary,) = tmp_path.glob("outputs/multirun/*/*/summary.json")
    rows = json.loads(summary.read_text())["rows"]
    assert [(r["status"], r["met"]) for r in rows] == [("error", False), ("ok", True)]
    assert rows[0]["error"] == "ConfigError: function.steps.y: unknown name 'q'; known here: x (column 3)"
    # the sweep's line for the job says why, in one line (log.console: normal); no traceback
    assert "#0 function.steps.y=x*q: FAILED (exit 2): config error: function.steps.y: unknown name 'q'" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
