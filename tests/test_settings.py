"""Run settings (`seed`, `determinism`, `resume`, `log.*`, `limits.*`): validated once, into the spec.

Hydra types them at composition; a config built in code reaches `job.run` untyped, so
`BAD_SETTINGS` lists the values the runner itself refuses, each with its one-line message
and exit 2. The rest checks that the job runs by the settings the spec carries.
"""

from __future__ import annotations

import pytest

from runner import job
from runner.config import settings
from runner.config import spec as specs
from tests.helpers import Ran, function_config


def _config(**settings):
    """y = x * x at x = [1, 2, 3], dy/dx, with `settings` set on top of the defaults."""
    return function_config({"y": "x * x"}, {"x": [1.0, 2.0, 3.0]}, [{"target": "y", "sources": "x"}], **settings)


BAD_SETTINGS = [
    # id, settings, the one line on stderr
    ("seed not a number", {"seed": "abc"}, "config error: seed: expected a whole number, got 'abc'"),
    ("seed a fraction", {"seed": 1.5}, "config error: seed: expected a whole number, got 1.5"),
    ("seed a bool", {"seed": True}, "config error: seed: expected a whole number, got True"),
    ("determinism not a bool", {"determinism": "yes"}, "config error: determinism: expected true or false, got 'yes'"),
    (
        "resume not a path",
        {"resume": True},
        "config error: resume: expected the path of a sweep folder to resume, or null, got True",
    ),
    (
        "log not a mapping",
        {"log": 5},
        "config error: log: expected a mapping (max_inline_elements, tf_verbose, tensorboard, plots, console, mlflow, mlflow_experiment), got 5",
    ),
    (
        "max_inline_elements negative",
        {"log": {"max_inline_elements": -1}},
        "config error: log.max_inline_elements: expected a whole number >= 0, got -1",
    ),
    (
        "max_inline_elements a string",
        {"log": {"max_inline_elements": "many"}},
        "config error: log.max_inline_elements: expected a whole number >= 0, got 'many'",
    ),
    (
        "tf_verbose not a bool",
        {"log": {"tf_verbose": "loud"}},
        "config error: log.tf_verbose: expected true or false, got 'loud'",
    ),
    (
        "tensorboard not a bool",
        {"log": {"tensorboard": 1}},
        "config error: log.tensorboard: expected true or false, got 1",
    ),
    (
        "plots not a bool",
        {"log": {"plots": "sometimes"}},
        "config error: log.plots: expected true, false or null, got 'sometimes'",
    ),
    (
        "limits not a mapping",
        {"limits": "none"},
        "config error: limits: expected a mapping (memory, order, steps, check_evaluations), got 'none'",
    ),
    (
        "memory beyond any float (1e400 GiB)",
        {"limits": {"memory": "1" + "0" * 400 + ".5GiB"}},
        "config error: limits.memory: expected a whole number of bytes > 0, or a size such as 4GiB or 512MiB, "
        "got '1" + "0" * 75 + "...",
    ),
    (
        "memory a word",
        {"limits": {"memory": "lots"}},
        "config error: limits.memory: expected a whole number of bytes > 0, or a size such as 4GiB or 512MiB, got 'lots'",
    ),
    (
        "memory of an unknown unit",
        {"limits": {"memory": "4GiG"}},
        "config error: limits.memory: expected a whole number of bytes > 0, or a size such as 4GiB or 512MiB, got '4GiG'",
    ),
    (
        "memory zero",
        {"limits": {"memory": 0}},
        "config error: limits.memory: expected a whole number of bytes > 0, or a size such as 4GiB or 512MiB, got 0",
    ),
    (
        "memory a fraction of a byte",
        {"limits": {"memory": "10.5"}},
        "config error: limits.memory: expected a whole number of bytes > 0, or a size such as 4GiB or 512MiB, got '10.5'",
    ),
    ("order zero", {"limits": {"order": 0}}, "config error: limits.order: expected a whole number >= 1, got 0"),
    (
        "order a fraction",
        {"limits": {"order": 2.5}},
        "config error: limits.order: expected a whole number >= 1, got 2.5",
    ),
    ("steps negative", {"limits": {"steps": -5}}, "config error: limits.steps: expected a whole number >= 1, got -5"),
    (
        "check_evaluations a bool",
        {"limits": {"check_evaluations": True}},
        "config error: limits.check_evaluations: expected a whole number >= 1, got True",
    ),
    (
        "limits has a misspelt key",
        {"limits": {"memroy": "8GiB"}},
        "config error: limits.memroy: no such key in LimitsConfig; did you mean 'memory'?",
    ),
    # a setting is screened like every key before its value is read
    (
        "seed instantiates",
        {"seed": {"_target_": "os.getpid"}},
        "config error: seed._target_: instantiation keys are not allowed: a config never runs Python code",
    ),
    (
        "log has a misspelt key",
        {"log": {"plot": True}},
        "config error: log.plot: no such key in LogConfig; did you mean 'plots'?",
    ),
]


@pytest.mark.parametrize("settings, headline", [r[1:] for r in BAD_SETTINGS], ids=[r[0] for r in BAD_SETTINGS])
def test_bad_setting_is_refused_in_one_line(tmp_path, capsys, settings, headline):
    code = job.run(_config(**settings), tmp_path, name="bad")
    assert code == 2
    assert capsys.readouterr().err == headline + "\n"
    log = Ran(code, tmp_path).log  # refused, and logged as such
    assert log["error"]["type"] == "ConfigError"
    assert log["error"]["key"] == headline.removeprefix("config error: ").split(":")[0]
    assert log["expect"]["met"] is False and log["values"] == {}


def test_the_spec_carries_the_settings_with_the_schemas_defaults():
    spec = specs.build(_config())
    assert spec.settings == settings.RunSettings(
        seed=0,
        determinism=True,
        resume=None,
        log=settings.LogSettings(max_inline_elements=10000, tf_verbose=False, tensorboard=True, plots=None),
        limits=settings.Limits(memory=4 * 2**30, order=8, steps=1000, check_evaluations=10**10),
    )
    assert specs.build(_config(resume="")).settings.resume is None  # an empty path resumes nothing
    assert specs.build(_config(limits=None)).settings.limits == spec.settings.limits  # null: the defaults


@pytest.mark.parametrize(
    "memory, size",
    [
        ("4GiB", 4 * 2**30),
        ("512 MiB", 512 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("8GB", 8 * 10**9),
        ("2kb", 2000),
        ("8589934592", 2**33),  # what the command line's limits.memory=8589934592 gives (a str)
        (2**33, 2**33),  # a config built in code
    ],
)
def test_memory_limit_is_bytes_or_a_size(memory, size):
    assert specs.build(_config(limits={"memory": memory})).settings.limits.memory == size


def test_job_runs_by_the_settings(run_job):
    settings = {
        "seed": 7,
        "determinism": False,
        "log": {"max_inline_elements": 2, "tensorboard": False, "plots": False},
    }
    ran = run_job(_config(**settings))
    assert ran.code == 0
    repro = ran.log["environment"]["reproducibility"]
    assert repro["seed"] == 7 and repro["determinism"] is False
    # three elements, more than max_inline_elements: set aside in arrays.npz
    assert ran.values["x"]["array"] == {"file": "arrays.npz", "key": "values/x", "shape": [3], "dtype": "float32"}
    assert ran.log["artifacts"] == {}  # neither TensorBoard events nor a plot
    assert not list(ran.folder.glob("events.out.tfevents.*"))
