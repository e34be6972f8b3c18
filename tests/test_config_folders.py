"""A config folder from a stranger can choose among the runner's options and nothing more.

Each row is an attack (the folder's files, how the command line names the folder, its
overrides) and what must happen: the key of the refusal, or `None` where the folder is
harmless and must compose. The table runs through Hydra's own composition in this process
(`runner.config.hydra_guard` installed, as `python -m runner` installs it), which acts on
nothing; `test_the_probe_never_appears` runs the worst of them through the real command
line, in every spelling of the flag, and checks that the probe file a successful attack
would write is never there.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple, Union

import pytest

from runner.cli import config_dir
from runner.config import deadline, hydra_guard
from runner.errors import ConfigError, explain
from tests.helpers import cli

# a file's text, or a special file: ("symlink", target), ("fifo",), ("bytes", data)
Content = Union[str, Tuple]
PROBE = "PROBE"  # what a successful attack writes, in the folder the test runs in
SAVE = "{_target_: numpy.savetxt, fname: PROBE, X: [1]}"
GLOBAL_HYDRA = "# @package _global_\nhydra:\n"
CUBIC = (config_dir() / "experiment" / "seed_cubic.yaml").read_text()


def _exp(defaults: List[str]) -> str:
    """An experiment: the shipped cubic, then other configs (overrides of groups last, as Hydra wants)."""
    return "# @package _global_\ndefaults:\n  - /experiment/seed_cubic\n" + "".join(f"  - {d}\n" for d in defaults)


FOLDER_ATTACKS = [
    # id, files, how the folder is named ("config-dir", "searchpath", "config-path"), overrides, refused key (None: allowed)
    (
        "1. two header lines: Hydra reads the last",
        {
            "experiment/a.yaml": _exp(["/pwn"]),
            "pwn.yaml": f"# @package _global_\n# @package hydra\ncallbacks:\n  x: {SAVE}\n",
        },
        "config-dir",
        ["experiment=a"],
        "pwn.yaml: hydra.callbacks.x._target_",
    ),
    (
        "1. job logging factory by package header",
        {
            "experiment/a.yaml": _exp(["/pwn"]),
            "pwn.yaml": "# @package hydra.job_logging\nhandlers:\n  h: {'()': numpy.savetxt, fname: PROBE, X: [1]}\n",
        },
        "config-dir",
        ["experiment=a"],
        "pwn.yaml: hydra.job_logging.handlers.h.()",
    ),
    (
        "2. symlinked subfolder leading out",
        {"experiment": ("symlink", "../elsewhere"), "../elsewhere/a.yaml": CUBIC},
        "config-dir",
        ["experiment=a"],
        "experiment/a.yaml",
    ),
    (
        "3. defaults path leaving the folder",
        {"experiment/a.yaml": _exp(["/../data/evil"]), "../data/evil.yaml": f"# @package hydra.callbacks\nx: {SAVE}\n"},
        "config-dir",
        ["experiment=a"],
        "evil.yaml",
    ),
    (
        "4. hydra.searchpath without file://",
        {"experiment/a.yaml": GLOBAL_HYDRA + f"  callbacks:\n    x: {SAVE}\n"},
        "searchpath",
        ["experiment=a"],
        "a.yaml: hydra.callbacks.x._target_",
    ),
    (
        "6. resume outside the working folder",
        {"experiment/a.yaml": CUBIC + "resume: /tmp/x/../y\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: resume",
    ),
    ("7. a FIFO", {"experiment/a.yaml": ("fifo",)}, "config-dir", ["experiment=a"], "a.yaml"),
    (
        "7. a link to /dev/zero",
        {"experiment/a.yaml": ("symlink", "/dev/zero")},
        "config-dir",
        ["experiment=a"],
        "a.yaml",
    ),
    (
        "7. a huge file",
        {"experiment/a.yaml": ("bytes", b"# " + b"x" * (hydra_guard.MAX_CONFIG_BYTES + 1))},
        "config-dir",
        ["experiment=a"],
        "a.yaml",
    ),
    ("9. a symlink loop", {"experiment/a.yaml": ("symlink", "a.yaml")}, "config-dir", ["experiment=a"], "a.yaml"),
    (
        "7. more workers than cores",
        {"experiment/a.yaml": CUBIC + f"hydra:\n  launcher:\n    n_jobs: {(os.cpu_count() or 1) + 8}\n"},
        "config-dir",
        ["experiment=a", "hydra/launcher=joblib"],
        "a.yaml: hydra.launcher.n_jobs",
    ),
    ("not UTF-8", {"experiment/a.yaml": ("bytes", b"x: \xff\xfe\n")}, "config-dir", ["experiment=a"], "a.yaml"),
    (
        "callback target",
        {"experiment/a.yaml": GLOBAL_HYDRA + f"  callbacks:\n    x: {SAVE}\n"},
        "config-dir",
        ["experiment=a"],
        "hydra.callbacks.x._target_",
    ),
    (
        "launcher target",
        {"experiment/a.yaml": GLOBAL_HYDRA + "  launcher:\n    _target_: builtins.print\n"},
        "config-dir",
        ["experiment=a"],
        "hydra.launcher._target_",
    ),
    (
        "slurm setup lines",
        {"experiment/a.yaml": GLOBAL_HYDRA + "  launcher:\n    setup: ['touch PROBE']\n"},
        "config-dir",
        ["experiment=a"],
        "hydra.launcher.setup",
    ),
    (
        "worker environment",
        {"experiment/a.yaml": GLOBAL_HYDRA + "  job:\n    env_set: {PYTHONPATH: /tmp/evil}\n"},
        "config-dir",
        ["experiment=a"],
        "hydra.job.env_set.PYTHONPATH",
    ),
    (
        "a whole hydra section from an interpolation",
        {"experiment/a.yaml": CUBIC + 'hydra: "${oc.create:{callbacks:{x:{_target_:numpy.savetxt}}}}"\n'},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra",
    ),
    (
        "callbacks from an interpolation",
        {"experiment/a.yaml": CUBIC + 'hydra:\n  callbacks: "${oc.create:{x:{_target_:numpy.savetxt}}}"\n'},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra.callbacks",
    ),
    (
        "resume from an environment variable",
        {"experiment/a.yaml": CUBIC + "resume: ${oc.env:HOME}\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: resume",
    ),
    (
        "callbacks removed",
        {"experiment/a.yaml": GLOBAL_HYDRA + "  callbacks: null\n"},
        "config-dir",
        ["experiment=a"],
        "hydra.callbacks",
    ),
    (
        "a launcher of the folder's own, shadowing the runner's",
        {"hydra/launcher/runner.yaml": "_target_: builtins.print\n", "experiment/a.yaml": CUBIC},
        "config-dir",
        ["experiment=a"],
        "hydra.launcher._target_",
    ),
    (
        "job logging of the folder's own, chosen by an experiment",
        {
            "hydra/job_logging/evil.yaml": "handlers:\n  h: {'()': numpy.savetxt, fname: PROBE, X: [1]}\n",
            "experiment/a.yaml": _exp(["override /hydra/job_logging: evil"]),
        },
        "config-dir",
        ["experiment=a"],
        "hydra.job_logging.handlers.h.()",
    ),
    (
        "a shipped config moved into hydra by a defaults entry",
        {"experiment/a.yaml": _exp(["/function/cubic@hydra.callbacks.x"])},
        "config-dir",
        ["experiment=a"],
        "a.yaml: defaults",
    ),
    (
        "a job name that climbs",
        {"experiment/a.yaml": CUBIC + "hydra:\n  job:\n    name: ../../x\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra.job.name",
    ),
    (
        "runs in an environment path",
        {"experiment/a.yaml": CUBIC + "hydra:\n  run:\n    dir: '${oc.env:HOME}/x'\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra.run.dir",
    ),
    (
        "runs outside the working folder",
        {"experiment/a.yaml": CUBIC + "hydra:\n  run:\n    dir: /home/user/.ssh\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra.run.dir",
    ),
    (
        "6. a timestamp of '.' makes '..' (resume)",
        {"experiment/a.yaml": CUBIC + "resume: .${now:.}/escaped\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: resume",
    ),
    (
        "6. a timestamp of '.' makes '..' (Hydra's own files, then conf/ itself)",
        {"experiment/a.yaml": CUBIC + "hydra:\n  output_subdir: .${now:.}/.${now:.}/conf/tape\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra.output_subdir",
    ),
    (
        "6. nested aliases: 362 bytes, 10^6 values",
        {
            "experiment/a.yaml": CUBIC
            + "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n"
            + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 6))
        },
        "config-dir",
        ["experiment=a"],
        "a.yaml",
    ),
    (
        "an alias inside its own anchor: 21 bytes without end",
        {"experiment/a.yaml": "name: &a [1, *a]\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml",
    ),
    (
        "runs above the working folder",
        {"experiment/a.yaml": CUBIC + "hydra:\n  sweep:\n    dir: ../../x\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: hydra.sweep.dir",
    ),
    (
        "the search path of a folder's primary config",
        {"config.yaml": "hydra:\n  searchpath: ['pkg://tabnanny']\n"},
        "config-path",
        [],
        "config.yaml: hydra.searchpath",
    ),
    (
        "a bound on work raised",
        {"experiment/a.yaml": CUBIC + "limits:\n  memory: 1TiB\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: limits.memory",
    ),
    (
        "a bound on work from an interpolation",
        {"experiment/a.yaml": CUBIC + "limits:\n  order: ${oc.env:ORDER,99}\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: limits.order",
    ),
    (
        "a bound on work as text is left to the settings' own check",
        {"experiment/a.yaml": CUBIC + "limits:\n  steps: '5'\n"},
        "config-dir",
        ["experiment=a"],
        None,
    ),
    (
        "a point file anywhere on the machine",
        {"experiment/a.yaml": CUBIC + "point:\n  x: {file: /home/user/.ssh/id_rsa.csv}\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: point.x.file",
    ),
    (
        "a point file above the working folder",
        {"experiment/a.yaml": CUBIC + "point:\n  x: {file: ../../secret.npy}\n"},
        "config-dir",
        ["experiment=a"],
        "a.yaml: point.x.file",
    ),
    (
        "a point file below the working folder: allowed",
        {"experiment/a.yaml": CUBIC + "point:\n  x: {file: data/x.csv}\n"},
        "config-dir",
        ["experiment=a"],
        None,
    ),
    # what a config folder may do
    (
        "a bound on work lowered: allowed",
        {"experiment/a.yaml": CUBIC + "limits:\n  memory: 1GiB\n  order: 2\n  steps: 10\n"},
        "config-dir",
        ["experiment=a"],
        None,
    ),
    (
        "where runs go: allowed",
        {
            "experiment/a.yaml": CUBIC
            + "hydra:\n  run: {dir: runs/x}\n  sweep: {dir: runs/m, subdir: '${hydra.job.num}'}\n  job: {chdir: false}\n"
        },
        "config-dir",
        ["experiment=a"],
        None,
    ),
    (
        "one worker, a name, resume below: allowed",
        {"experiment/a.yaml": CUBIC + "resume: runs/m\nhydra:\n  launcher: {n_jobs: 1}\n  job: {name: mine}\n"},
        "config-dir",
        ["experiment=a", "hydra/launcher=joblib"],
        None,
    ),
    (
        "a link inside the folder: allowed",
        {"experiment/a.yaml": ("symlink", "../b.yaml"), "b.yaml": CUBIC},
        "config-dir",
        ["experiment=a"],
        None,
    ),
    (
        "an installed launcher chosen by a file: allowed",
        {"experiment/a.yaml": _exp(["override /hydra/launcher: basic"])},
        "config-dir",
        ["experiment=a"],
        None,
    ),
    ("a copy of the shipped conf/ as the primary folder: allowed", {}, "config-path", [], None),
    # log.mlflow: a server named by a file would get the runs and MLflow's credentials
    *[
        (
            f"tracking store {uri}",
            {"experiment/a.yaml": CUBIC + f"log:\n  mlflow: '{uri}'\n"},
            "config-dir",
            ["experiment=a"],
            "a.yaml: log.mlflow",
        )
        for uri in (
            "http://collector.example:5000",
            "https://127.0.0.1:5000",
            "databricks",
            "postgresql://u:p@db/x",
            "sqlite:////tmp/elsewhere.db",
            "sqlite:///../up.db",
            "file:///tmp/mlruns",
            "${oc.env:MLFLOW_TRACKING_URI}",
            # MLflow and SQLite read these as paths outside the folder (found in review)
            "file://localhost/tmp/elsewhere",
            "file://./tmp/elsewhere",
            "file://host/tmp/elsewhere",
            "sqlite:///file:/tmp/elsewhere.db?uri=true",
            "sqlite:///%2Ftmp%2Felsewhere.db",
            "file:%2Ftmp%2Felsewhere",
        )
    ],
    *[
        (
            f"tracking store {uri}: allowed",
            {"experiment/a.yaml": CUBIC + f"log:\n  mlflow: {uri}\n"},
            "config-dir",
            ["experiment=a"],
            None,
        )
        for uri in ("true", "false", "null", "sqlite:///mlflow.db", "sqlite:///runs/m.db", "file:./mlruns")
    ],
]


def _make(root: Path, files: Dict[str, Content]) -> Path:
    """The attack's folder `root/conf` (paths with '../' land beside it), made for real."""
    conf = root / "conf"
    conf.mkdir()
    for rel, content in files.items():
        path = conf / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        elif content[0] == "symlink":
            path.symlink_to(content[1])
        elif content[0] == "fifo":
            os.mkfifo(path)
        else:
            path.write_bytes(content[1])
    return conf


def compose(folder: Path, how: str, overrides: List[str]):
    """Compose as `python -m runner` would with the folder named `how`, acting on nothing."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    hydra_guard.install()
    main = folder if how == "config-path" else config_dir()
    search_path = create_config_search_path(f"file://{main}")
    if how == "config-dir":
        search_path.prepend("command-line", f"file://{folder}", anchor=SearchPathQuery(provider="schema"))
    if how == "searchpath":
        overrides = [*overrides, f"hydra.searchpath=[{folder}]"]
    GlobalHydra.instance().clear()
    try:
        hydra = Hydra.create_main_hydra2("runner", search_path)
        return hydra.compose_config("config", overrides, run_mode=RunMode.RUN)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "files, how, overrides, key", [r[1:] for r in FOLDER_ATTACKS], ids=[r[0] for r in FOLDER_ATTACKS]
)
# Hydra's own deprecation warning for a folder's config named as a ConfigStore schema
# (hydra/launcher/runner.yaml), which the attack row shadowing the runner's launcher triggers
@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/runner' is validated against ConfigStore schema:UserWarning")
def test_a_config_folder_chooses_options_and_nothing_more(tmp_path, monkeypatch, files, how, overrides, key):
    monkeypatch.chdir(tmp_path)
    if how == "config-path" and not files:
        shutil.copytree(config_dir(), tmp_path / "conf")
        folder = tmp_path / "conf"
    else:
        folder = _make(tmp_path, files)
        if how == "config-path":  # the rest of the shipped configs beside the folder's primary
            shutil.copytree(config_dir(), folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("config.yaml"))
    imported_before = set(sys.modules)
    if key is None:
        cfg = compose(folder, how, overrides)
        assert cfg.function.steps.y == "x ** 3"
        return
    with pytest.raises(ConfigError) as info:
        compose(folder, how, overrides)
    assert info.value.key.endswith(key), info.value.key
    headline, _, code = explain(info.value)
    assert code == 2 and "\n" not in headline and len(headline) < 400
    assert not (tmp_path / PROBE).exists()
    assert "tabnanny" not in set(sys.modules) - imported_before  # Hydra imports pkg:// search paths


def test_the_installed_guard_is_what_hydra_uses():
    """Fails if Hydra stops creating its loader by the name `install` replaces."""
    from hydra._internal import hydra as hydra_internal
    from hydra._internal.sources_registry import SourcesRegistry

    hydra_guard.install()
    assert hydra_internal.ConfigLoaderImpl is hydra_guard.JudgingConfigLoader
    assert SourcesRegistry.instance().resolve("file") is hydra_guard.FileConfigSource


PWN = f"# @package _global_\n# @package hydra\ncallbacks:\n  x: {SAVE}\n"
SPELLINGS = [
    # how the command line names the folder (DIR is replaced)
    ["--config-dir", "DIR"],
    ["--config-d", "DIR"],
    ["--config-di=DIR"],
    ["-cd", "DIR"],
    ["hydra.searchpath=[DIR]"],
    ["hydra.searchpath=[file://DIR]"],
    ["--config-path=DIR", "--config-name=seed"],
    ["-cp", "DIR", "-cn", "seed"],
]


@pytest.mark.slow
@pytest.mark.parametrize("spelling", SPELLINGS, ids=[" ".join(s) for s in SPELLINGS])
def test_the_probe_never_appears(tmp_path, spelling):
    conf = _make(
        tmp_path,
        {
            "experiment/a.yaml": _exp(["/pwn"]),
            "pwn.yaml": PWN,
            "seed.yaml": "defaults:\n  - /pwn\n  - _self_\n",
            "fifo.yaml": ("fifo",),
            "zero.yaml": ("symlink", "/dev/zero"),
        },
    )
    args = [a.replace("DIR", str(conf)) for a in spelling]
    for extra in (["experiment=a"], ["experiment=fifo"], ["experiment=zero"]):
        result = cli([*args, *extra], cwd=tmp_path, timeout=60)
        assert result.returncode == 2, (extra, result.stderr)
        assert result.stderr.startswith("config error: ") and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / PROBE).exists()
        if "-c" in args[0] and "p" in args[0]:  # -cp/--config-path: the primary is the folder's own
            break


def _doubling_tree(levels: int) -> Dict[str, Content]:
    """Each file includes the next twice: 2^levels configs from `levels` small files."""
    files: Dict[str, Content] = {f"d/l{levels}.yaml": "v: 1\n"}
    for i in range(levels):
        files[f"d/l{i}.yaml"] = f"defaults:\n  - /d/l{i + 1}@a\n  - /d/l{i + 1}@b\n  - _self_\nv: 1\n"
    files["experiment/a.yaml"] = _exp(["/d/l0@tree"])
    return files


def _doubling_interpolations(levels: int) -> Dict[str, Content]:
    """Each step interpolates the one before twice: resolving the last takes 2^levels steps."""
    steps = "".join(
        f'    s{i}: "${{function.steps.s{i - 1}}}+${{function.steps.s{i - 1}}}"\n' for i in range(1, levels + 1)
    )
    return {
        "experiment/a.yaml": "# @package _global_\nfunction:\n  inputs: [x]\n  steps:\n    s0: x\n"
        + steps
        + f"point: {{x: 1.0}}\nderivatives: [{{target: s{levels}, sources: x}}]\n"
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "files, what",
    [
        (_doubling_tree(22), "composing the config"),  # 16 levels took 43 s before the bound
        (_doubling_interpolations(30), "resolving the config's interpolations"),  # 26 ran past 200 s
    ],
    ids=["a defaults tree that doubles", "interpolations that double"],
)
def test_work_a_config_folder_asks_of_hydra_is_bounded_in_time(tmp_path, files, what):
    conf = _make(tmp_path, files)
    started = time.monotonic()
    result = cli(["--config-dir", str(conf), "experiment=a"], cwd=tmp_path, env={deadline.ENV: "2"}, timeout=60)
    assert result.returncode == 2, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"config error: {what} took over ") and "Traceback" not in result.stderr, first
    assert time.monotonic() - started < 30


def test_a_deadline_interrupts_the_block_and_restores_the_alarm(monkeypatch):
    monkeypatch.setenv(deadline.ENV, "0.2")
    with pytest.raises(deadline.DeadlineExceeded, match="spinning took over 0.2 s"):  # time
        with deadline.deadline("spinning"):
            while True:
                pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with deadline.deadline("nothing"):  # a block that ends in time raises nothing
        pass
    monkeypatch.setenv(deadline.ENV, "60")
    with pytest.raises(deadline.DeadlineExceeded, match="growing took over 512 MiB"):  # memory
        with deadline.deadline("growing"):
            hoard = []
            while True:
                hoard.append(bytearray(16 << 20))
