"""A config can choose among the code the person running the command trusts, and nothing more.

`RUNNER_TRUST` (the environment, never a config) names module prefixes by whole dotted
components. Each table row is an attack or a mistake and what must happen: the key of the
one-line refusal (exit 2) and a piece of its message, and which of the throwaway modules
(tests/helpers/trust_modules.py, each leaving a marker file when imported) may have run.
The rows run in-process through `runner.job.run`; a few tests run the real command line,
from a folder holding the modules (the working folder is importable, as with `python -m`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from runner import job
from runner.config import trust
from runner.errors import ConfigError
from tests.helpers import ROOT, Ran, cli, function_config
from tests.helpers import trust_modules as mods

PROBE = "PROBE"  # what a successful escape writes, in the folder the test runs in
TOUCH = {"command": f"touch {PROBE}"}
NOTHING: List[str] = []
ALL = list(mods.MODULES)


@pytest.fixture
def lib(tmp_path, monkeypatch):
    """The throwaway modules in `tmp_path`, importable, and no trust unless a test sets it."""
    mods.write(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(trust.ENV, raising=False)
    mods.forget()
    yield tmp_path
    mods.forget()


def config(code: Any, inputs: Any = None, derivatives: Optional[List[Dict[str, Any]]] = None, **function: Any):
    """A job of `code` at x = 3 asking dy/dx, as an experiment file would give it."""
    cfg = function_config({}, {"x": 3.0}, derivatives or [{"name": "dy/dx", "target": "y", "sources": "x"}], inputs)
    cfg["function"].update(callable=code, **function)
    return cfg


def refused(cfg: Dict[str, Any], root: Path, capsys) -> ConfigError:
    """Run `cfg`; it must be refused: exit 2, one line on stderr, no tape run. Returns the
    error as logged (key and message)."""
    code = job.run(cfg, root / "out", echo=True)
    err = capsys.readouterr().err
    assert code == job.EXIT_CONFIG_ERROR, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("config error: ") and "Traceback" not in err, err
    log = json.loads((root / "out" / "results.json").read_text())
    assert log["error"]["type"] == "ConfigError" and log["values"] == {} and log["derivatives"] == []
    assert lines[0] == f"config error: {log['error']['message']}"
    return ConfigError(log["error"]["key"], log["error"]["message"].split(": ", 1)[1])


# --- 1, 2, 4: refused by name, before anything is imported --------------------------------

BY_NAME = [
    # id, RUNNER_TRUST (None: unset), function.callable, refused key, in the message
    (
        "not trusted at all",
        None,
        "mylib.square",
        "function.callable",
        "'mylib' is not trusted (RUNNER_TRUST is not set)",
    ),
    (
        "says how to trust it",
        None,
        "mylib.layers.cube",
        "function.callable",
        "RUNNER_TRUST=mylib.layers in the environment",
    ),
    ("mylib never trusts mylibx", "mylib", "mylibx.square", "function.callable", "'mylibx' is not trusted"),
    ("mylib.sub never trusts mylib.other", "mylib.sub", "mylib.other.square", "function.callable", "'mylib.other'"),
    ("mylib.sub never trusts mylib itself", "mylib.sub", "mylib.square", "function.callable", "'mylib' is not"),
    ("a prefix naming the callable names no module", "mylib.square", "mylib.square", "function.callable", "'mylib'"),
    ("no wildcard", "*,mylib.*, mylib. ,.", "mylib.square", "function.callable", "RUNNER_TRUST is not set"),
    (
        "several prefixes, none of them",
        " mylibx , ,mylib.sub",
        "mylib.layers.cube",
        "function.callable",
        "mylibx,mylib.sub",
    ),
    ("a standard library function", "mylib", "os.system", "function.callable", "'os' is not trusted"),
    ("builtins", "mylib", "builtins.eval", "function.callable", "'builtins' is not trusted"),
    ("a bare name", "mylib", "mylib", "function.callable", "not a dotted path"),
    ("a path that is not Python", "mylib", "mylib.square; import os", "function.callable", "not a dotted path"),
    ("a relative path", "mylib", ".mylib.square", "function.callable", "not a dotted path"),
    (
        "nested _target_",
        "mylib",
        {"_target_": "mylib.scaled", "inner": {"_target_": "mylibx.square"}},
        "function.callable.inner._target_",
        "'mylibx' is not trusted",
    ),
    (
        "_target_ in a list",
        "mylib",
        {"_target_": "mylib.scaled", "inner": [1, {"_target_": "os.system", **TOUCH}]},
        "function.callable.inner[1]._target_",
        "'os' is not trusted",
    ),
    (
        "_target_ in _args_",
        "mylib",
        {"_target_": "mylib.scaled", "_args_": [{"_target_": "subprocess.run", "args": ["touch", PROBE]}]},
        "function.callable._args_[0]._target_",
        "'subprocess' is not trusted",
    ),
    (
        "untrusted outer, trusted inner",
        "mylib",
        {"_target_": "os.system", "command": {"_target_": "mylib.three"}},
        "function.callable._target_",
        "'os' is not trusted",
    ),
    ("a non-string _target_", "mylib", {"_target_": 3}, "function.callable._target_", "expected a dotted path"),
    ("a list _target_", "mylib", {"_target_": ["mylib", "square"]}, "function.callable._target_", "a dotted path"),
    ("no _target_", "mylib", {"n": 3}, "function.callable", "a mapping needs _target_"),
    ("an unknown _foo_ key", "mylib", {"_target_": "mylib.power", "_foo_": 1}, "function.callable._foo_", "not a key"),
    (
        "an unknown key nested",
        "mylib",
        {"_target_": "mylib.scaled", "inner": {"_target_": "mylib.three", "_set_env_": 1}},
        "function.callable.inner._set_env_",
        "not a key of Hydra's instantiate",
    ),
    (
        "an interpolation left for instantiate to resolve",
        "mylib",
        {"_target_": "mylib.scaled", "inner": "${oc.decode:'{_target_: os.system, command: touch PROBE}'}"},
        "function.callable.inner",
        "interpolation",
    ),
    ("a function's class", "mylib", "mylib.square.__class__", "function.callable", "Python's own attributes"),
    ("a function's globals", "mylib", "mylib.square.__globals__.clear", "function.callable", "own attributes"),
    ("the loader", "mylib", {"_target_": "mylib.__loader__.get_data"}, "function.callable._target_", "own attrib"),
    ("neither text nor mapping", "mylib", ["mylib.square"], "function.callable", "expected a dotted path or a mapping"),
]


@pytest.mark.parametrize("trusted, code, key, message", [r[1:] for r in BY_NAME], ids=[r[0] for r in BY_NAME])
def test_a_callable_outside_trust_is_refused_before_anything_is_imported(
    lib, monkeypatch, capsys, trusted, code, key, message
):
    if trusted is not None:
        monkeypatch.setenv(trust.ENV, trusted)
    err = refused(config(code), lib, capsys)
    assert err.key == key and message in err.message, err
    assert mods.imported(lib) == {m: False for m in ALL}  # not even the trusted ones
    assert not (lib / PROBE).exists()


# --- 4: refused by what the import gives ----------------------------------------------------

BY_WHAT_IT_IS = [
    # id, RUNNER_TRUST, function.callable, in the message
    ("a module attribute: mylib.os.system", "mylib", "mylib.os.system", "leads into module 'os', which is not trusted"),
    ("from os import system", "mylib", "mylib.system", "is defined in module 'posix', which is not trusted"),
    ("a module three deep: mylib.tf.io.write_file", "mylib", "mylib.tf.io.write_file", "module 'tensorflow'"),
    ("a submodule that is os", "mylib", "mylib.fake.system", "leads into module 'os'"),
    ("a trusted submodule that is os", "mylib.fake", "mylib.fake.system", "leads into module 'os'"),
    ("instantiating mylib.os.system", "mylib", {"_target_": "mylib.os.system", **TOUCH}, "leads into module 'os'"),
    ("instantiating mylib.system", "mylib", {"_target_": "mylib.system", **TOUCH}, "defined in module 'posix'"),
    (
        "a trusted factory given os.system",
        "mylib",
        {"_target_": "mylib.scaled", "inner": {"_target_": "mylib.system", **TOUCH}},
        "defined in module 'posix'",
    ),
    ("a builtin method", "mylib", "mylib.forget", "'mylib.forget' is a built-in that no trusted module defines"),
    ("a builtin method instantiated", "mylib", {"_target_": "mylib.forget"}, "is a built-in that no trusted module"),
]


@pytest.mark.parametrize("trusted, code, message", [r[1:] for r in BY_WHAT_IT_IS], ids=[r[0] for r in BY_WHAT_IT_IS])
def test_a_trusted_module_is_no_way_out(lib, monkeypatch, capsys, trusted, code, message):
    monkeypatch.setenv(trust.ENV, trusted)
    err = refused(config(code), lib, capsys)
    assert err.key.startswith("function.callable") and message in err.message, err
    assert not (lib / PROBE).exists()
    assert sys.modules["mylib"].__dict__.get("SCALE") == 3.0  # the trusted package ran, as Python imports it


# --- 5: bad input -------------------------------------------------------------------------

BAD = [
    # id, function.callable (RUNNER_TRUST=mylib), more keys of `function`, derivatives, refused key, in the message
    ("no such attribute", "mylib.nothing", {}, None, "function.callable", "module 'mylib' has no 'nothing'"),
    ("no such module below", "mylib.nowhere.f", {}, None, "function.callable", "module 'mylib' has no 'nowhere'"),
    ("no such attribute of a function", "mylib.square.kernel", {}, None, "function.callable", "'square' has no"),
    ("a module constant", "mylib.SCALE", {}, None, "function.callable", "gives a float, not a callable"),
    ("a module", "mylib.layers", {}, None, "function.callable", "gives a module, not a callable"),
    ("a class as a dotted path", "mylib.Doubler", {}, None, "function.callable", "a class (instantiate it with"),
    ("a factory returning 3", {"_target_": "mylib.three"}, {}, None, "function.callable", "gives an int, not a"),
    (
        "a wrong argument",
        {"_target_": "mylib.power", "units": 3},
        {},
        None,
        "function.callable",
        "instantiating 'mylib.power' failed: TypeError: ",
    ),
    (
        "an import that raises",
        "mylib.broken.f",
        {},
        None,
        "function.callable",
        "importing 'mylib.broken' failed: RuntimeError: cannot start: no licence server",
    ),
    (
        "an import that exits",
        "mylib.quits.f",
        {},
        None,
        "function.callable",
        "importing 'mylib.quits' failed: SystemExit",
    ),
    ("a factory that exits", {"_target_": "mylib.leave"}, {}, None, "function.callable", "'mylib.leave' failed: Syst"),
    (
        "an input named like the output",
        "mylib.square",
        {"inputs": ["y"]},
        [{"target": "y", "sources": "y"}],
        "function.output",
        "the callable's output 'y' has an input's name",
    ),
    (
        "trainable_variables of a function that owns none",
        "mylib.square",
        {},
        [{"target": "y", "sources": "trainable_variables"}],
        "derivatives[0].sources",
        "mylib.square created or read no trainable variable when called at the point",
    ),
]


@pytest.mark.parametrize("code, function, derivatives, key, message", [r[1:] for r in BAD], ids=[r[0] for r in BAD])
def test_bad_input_is_one_line_and_runs_no_tape(lib, monkeypatch, capsys, code, function, derivatives, key, message):
    monkeypatch.setenv(trust.ENV, "mylib")
    cfg = config(code, derivatives=derivatives, **function)
    if "inputs" in function:
        cfg["point"] = {name: 3.0 for name in function["inputs"]}
    err = refused(cfg, lib, capsys)
    assert err.key == key and message in err.message, err


# --- 2: RUNNER_TRUST by whole dotted components ---------------------------------------------

PREFIXES = [
    # RUNNER_TRUST, module, trusted?
    ("mylib", "mylib", True),
    ("mylib", "mylib.layers", True),
    ("mylib", "mylib.layers.deep", True),
    ("mylib", "mylibx", False),
    ("mylib", "mylib_x.layers", False),
    ("mylib", "my", False),
    ("mylib.sub", "mylib.sub", True),
    ("mylib.sub", "mylib.subway", False),
    ("mylib.sub", "mylib.other", False),
    ("mylib.sub", "mylib", False),
    (" mylib , ,", "mylib.layers", True),
    ("mylibx,otherpkg.sub", "otherpkg.sub.m", True),
    ("mylibx,otherpkg.sub", "otherpkg", False),
    ("mylibx,otherpkg.sub", "mylib", False),
    ("", "mylib", False),
    (",,", "mylib", False),
    ("*", "mylib", False),
    ("mylib.*", "mylib.layers", False),
    ("my-lib,mylib", "mylib", True),
    ("MyLib", "mylib", False),
]


@pytest.mark.parametrize("given, module, want", PREFIXES)
def test_trust_is_by_whole_dotted_components(given, module, want):
    assert trust.is_trusted(module, trust.prefixes({trust.ENV: given})) is want


def test_the_trusted_prefixes_read_as_given():
    assert trust.prefixes({trust.ENV: " mylib ,, otherpkg.sub ,*, bad name,a..b"}) == ("mylib", "otherpkg.sub")
    assert trust.prefixes({}) == ()


# --- trusted code runs; importing a.b runs a/__init__ as Python must -----------------------

WORKS = [
    # id, RUNNER_TRUST, function.callable, dy/dx at x = 3, the modules that ran
    ("a dotted path", "mylib", "mylib.square", 6.0, ["mylib"]),
    ("a submodule, trust of its package", "mylib", "mylib.layers.cube", 27.0, ["mylib", "mylib.layers"]),
    ("a submodule trusted alone", "mylib.sub", "mylib.sub.square", 6.0, ["mylib", "mylib.sub"]),
    ("several prefixes, spaces", " mylibx , ,mylib.layers", "mylib.layers.cube", 27.0, ["mylib", "mylib.layers"]),
    ("a factory", "mylib", {"_target_": "mylib.power", "n": 3}, 27.0, ["mylib"]),
    ("a class instantiated", "mylib", {"_target_": "mylib.Doubler"}, 2.0, ["mylib"]),
    ("a partial", "mylib", {"_target_": "mylib.square", "_partial_": True}, 6.0, ["mylib"]),
    (
        "a nested trusted _target_",
        "mylib",
        {"_target_": "mylib.scaled", "inner": {"_target_": "mylib.power", "n": 3}, "factor": 5.0},
        135.0,
        ["mylib"],
    ),
]


@pytest.mark.parametrize("trusted, code, slope, ran", [r[1:] for r in WORKS], ids=[r[0] for r in WORKS])
def test_trusted_code_runs_and_nothing_else_is_imported(lib, monkeypatch, trusted, code, slope, ran):
    monkeypatch.setenv(trust.ENV, trusted)
    result = Ran(job.run(config(code), lib / "out", echo=False), lib / "out")
    assert result.code == 0, result.log["error"]
    assert result.derivatives["dy/dx"] == pytest.approx(slope)  # 2x, 3x^2, 2 or 5 * 3x^2, at x = 3
    assert result.log["code"]["trusted"] == list(trust.prefixes())
    assert mods.imported(lib) == {m: m in ran for m in ALL}


# --- 3, 1, 6, 7: the command line -----------------------------------------------------------

SQUARE = "# @package _global_\nfunction:\n  callable: mylib.square\n  inputs: [x]\n  steps: {}\npoint: {x: 3.0}\n"
SQUARE += "derivatives:\n  - {name: dy/dx, target: y, sources: x}\n"
CONF = {
    "experiment/square.yaml": SQUARE,
    "experiment/env_set.yaml": SQUARE + "hydra:\n  job:\n    env_set:\n      RUNNER_TRUST: mylib\n",
    "experiment/by_header.yaml": "# @package _global_\ndefaults:\n  - square\n  - /trustme\n",
    "trustme.yaml": "# @package hydra.job.env_set\nRUNNER_TRUST: mylib\n",
    "experiment/by_defaults.yaml": "# @package _global_\ndefaults:\n  - square\n  - /plain@hydra.job.env_set\n",
    "plain.yaml": "RUNNER_TRUST: mylib\n",
    "experiment/by_key.yaml": SQUARE + "RUNNER_TRUST: mylib\n",
    "experiment/by_function_key.yaml": SQUARE.replace("  steps: {}\n", "  steps: {}\n  trust: mylib\n"),
}


def probe(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None) -> List[str]:
    """`python -m runner ARGS` in a bare environment: [exit code, TensorFlow imported, mylib
    imported], and the first line it printed to stderr."""
    result = subprocess.run(
        [sys.executable, "-c", mods.PROBE, *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.stdout.split()[-3:] + lines[:1] + ([f"{len(lines)} lines"] if len(lines) > 1 else [])


@pytest.fixture
def folder(tmp_path):
    """A working folder holding mylib and a config folder `conf`."""
    mods.write(tmp_path)
    for name, text in CONF.items():
        (tmp_path / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / name).write_text(text)
    return tmp_path


FROM_A_FILE = [
    # id, experiment, more overrides, the refused key (in the one line)
    ("untrusted from the command line", "square", [], "function.callable: module 'mylib' is not trusted"),
    ("hydra.job.env_set in the file", "env_set", [], "hydra.job.env_set.RUNNER_TRUST: a config file may not set"),
    ("env_set by a package header", "by_header", [], "hydra.job.env_set.RUNNER_TRUST: a config file may not set"),
    ("env_set by a defaults package", "by_defaults", [], "hydra.job.env_set.RUNNER_TRUST: a config file may not"),
    ("a top-level key", "by_key", [], "RUNNER_TRUST"),
    ("a made-up function.trust", "by_function_key", [], "function.trust"),
    ("+RUNNER_TRUST= on the command line", "square", ["+RUNNER_TRUST=mylib"], "RUNNER_TRUST"),
    ("+function.trust= on the command line", "square", ["+function.trust=mylib"], "function.trust"),
]


@pytest.mark.parametrize("experiment, extra, key", [r[1:] for r in FROM_A_FILE], ids=[r[0] for r in FROM_A_FILE])
def test_a_config_never_grants_trust(folder, experiment, extra, key):
    out = probe(["--config-dir", "conf", f"experiment={experiment}", *extra], folder)
    assert out[:3] == ["2", "False", "False"], out  # exit 2, neither TensorFlow nor mylib imported
    assert len(out) == 4 and out[3].startswith("config error: ") and key in out[3], out
    assert not mods.marker(folder, "mylib").exists()


@pytest.mark.parametrize("flag", [["--cfg", "job"], ["--help"]], ids=["cfg", "help"])
def test_showing_the_config_imports_no_code(folder, flag):
    out = probe(["--config-dir", "conf", "experiment=square", *flag], folder, env={trust.ENV: "mylib"})
    assert out[:3] == ["0", "False", "False"], out
    assert not mods.marker(folder, "mylib").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, extra",
    [({trust.ENV: "mylib"}, []), ({}, [f"+hydra.job.env_set.{trust.ENV}=mylib"])],
    ids=["RUNNER_TRUST", "env_set on the command line"],
)
def test_trusted_code_from_the_working_folder_runs_from_the_command_line(folder, env, extra):
    result = cli(["--config-dir", "conf", "experiment=square", *extra], cwd=folder, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    log = json.loads(next((folder / "outputs").glob("*/*/results.json")).read_text())
    assert log["derivatives"][0]["value"] == 6.0  # d(x*x)/dx at 3
    assert log["code"]["trusted"] == ["mylib"]
    assert mods.marker(folder, "mylib").exists() and not mods.marker(folder, "mylibx").exists()
