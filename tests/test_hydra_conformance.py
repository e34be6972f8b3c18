"""Hydra's own conformance suites for launchers and sweepers, run on the runner's plugins.

Every official Hydra launcher plugin runs `hydra.test_utils.launcher_common_tests` in its
`tests/` (hydra's `tests/test_basic_launcher.py`, `plugins/hydra_joblib_launcher/tests/`);
this file does the same for `hydra/launcher=runner hydra/sweeper=runner`, with the suites
and example apps (`hydra.test_utils.a_module`, `hydra/test_utils/configs`) that ship inside
the installed hydra-core. Nothing is mocked: the suites run real sweeps, in this process
(`hydra_sweep_runner`) and in subprocesses (`integration_test`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import version
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.test_utils.launcher_common_tests import (
    BatchedSweeperTestSuite,
    IntegrationTestSuite,
    LauncherTestSuite,
)
from omegaconf import OmegaConf

from hydra_plugins.runner_launcher.runner_launcher import RunnerLauncher
from hydra_plugins.runner_launcher.runner_sweeper import RunnerSweeper

# Hydra's suites run Hydra's example apps, which set no version_base and keep .yml files: the
# runner launcher gives them Hydra's own deprecation warnings, as Hydra's basic launcher does
pytestmark = [
    pytest.mark.filterwarnings("ignore:Future Hydra versions will no longer change working directory:UserWarning"),
    pytest.mark.filterwarnings("ignore:Support for .yml files is deprecated:UserWarning"),
]

# This checkout (not `tests.helpers.ROOT`: importing tests.helpers imports the runner and
# NumPy, which the Hydra pre-release check's bare environment does not have).
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _plugins_on_path(monkeypatch):
    """The suites' subprocesses (`integration_test`) run a script in a temporary folder:
    they find this checkout's `hydra_plugins/runner_launcher` through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.fixture(autouse=True)
def _version_base_unset(monkeypatch):
    """The suites run their apps without a `version_base`, as in Hydra's own test run, so
    Hydra's pre-1.2 defaults apply (`hydra.job.chdir` true). Importing `runner.cli` (its
    `@hydra.main(version_base="1.3")`, as the project's conftest does) set the process-wide
    version base; set it back to unspecified for the length of a test."""
    monkeypatch.setattr(version.VersionBase.instance(), "version_base", version._UNSPECIFIED_)


def test_discovery() -> None:
    assert RunnerLauncher.__name__ in [c.__name__ for c in Plugins.instance().discover(Launcher)]
    assert RunnerSweeper.__name__ in [c.__name__ for c in Plugins.instance().discover(Sweeper)]


@pytest.mark.parametrize("launcher_name, overrides", [("runner", ["hydra/sweeper=runner"])])
class TestRunnerLauncher(LauncherTestSuite):
    """Hydra's launcher suite on `hydra/launcher=runner` (with the runner sweeper)."""


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        pytest.param(
            {},
            [
                "-m",
                "hydra/launcher=runner",
                "hydra/sweeper=runner",
                "hydra/hydra_logging=disabled",
                "hydra/job_logging=disabled",
            ],
            id="runner_launcher_multirun",
        )
    ],
)
class TestRunnerLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite (job name, sweep dirs, chdir, original cwd) in subprocesses."""


@pytest.mark.parametrize(
    "launcher_name, overrides", [("runner", ["hydra/sweeper=runner", "hydra.sweeper.max_batch_size=2"])]
)
class TestRunnerSweeperWithBatching(BatchedSweeperTestSuite):
    """Hydra's batched-sweeper suite: `max_batch_size` batches launched one by one, in order."""


@pytest.mark.slow
def test_job_num_in_sweep_subdir(tmp_path: Path) -> None:
    """The issue's example: `hydra.sweep.subdir=x_${hydra.job.num}` resolves per job."""
    from tests.helpers.cli import cli

    out = tmp_path / "sweep"
    done = cli(
        [
            "-m",  # first: Hydra's argparse takes no overrides on both sides of it
            "experiment=seed_cubic",
            "point.x=1.0,2.0",
            "hydra.sweep.subdir=x_${hydra.job.num}",
            f"hydra.sweep.dir={out}",
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for num, x in ((0, 1.0), (1, 2.0)):
        results = out / f"x_{num}" / "results.json"
        assert results.is_file(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
        json.loads(results.read_text())
        assert (
            out / f"x_{num}" / ".hydra" / "overrides.yaml"
        ).read_text() == f"- experiment=seed_cubic\n- point.x={x}\n"


# Beyond the suites: what each job gets, compared with Hydra's basic launcher and sweeper on
# the suites' own app, for per-job interpolations in hydra.sweep.subdir, batches and chdir.
SWEEP = ["group1=file1,file2", "bar=100,200,300", "hydra.sweeper.max_batch_size=4", "hydra.job.chdir=True"]
SUBDIRS = [
    "hydra.sweep.subdir=x_${hydra.job.num}",
    "hydra.sweep.subdir=${hydra.job.id}_${bar}_${foo}",
    "hydra.sweep.subdir=${hydra.job.override_dirname}",
]


def _sweep(hydra_sweep_runner, plugin: str, subdir: str, temp_dir: Path):
    """What a sweep returned and left, with the sweep folder and the plugin names normalized."""
    overrides = [f"hydra/launcher={plugin}", f"hydra/sweeper={plugin}", subdir, *SWEEP]
    with hydra_sweep_runner(
        calling_file=None,
        calling_module="hydra.test_utils.a_module",
        task_function=lambda cfg: (OmegaConf.to_container(cfg), str(Path.cwd())),
        config_path="configs",
        config_name="compose",
        overrides=overrides,
        temp_dir=temp_dir,
    ) as sweep:
        names = {
            str(temp_dir): "<sweep>",
            f"hydra/launcher={plugin}": "hydra/launcher=<p>",
            f"hydra/sweeper={plugin}": "hydra/sweeper=<p>",
        }

        def plain(text: str) -> str:
            for old, new in names.items():
                text = text.replace(old, new)
            return text

        returns = [
            [
                (
                    r.overrides,
                    plain(str(r.return_value)),
                    plain(str(r.working_dir)),
                    r.hydra_cfg.hydra.job.num,
                    r.hydra_cfg.hydra.job.id,
                    plain(r.hydra_cfg.hydra.runtime.output_dir),
                    r.status,
                )
                for r in batch
            ]
            for batch in sweep.returns
        ]
        files = {
            str(p.relative_to(temp_dir)): plain(p.read_text())
            for p in sorted(temp_dir.rglob("*.yaml"))
            if p.name in ("config.yaml", "overrides.yaml")
        }
    return returns, files


@pytest.mark.parametrize("subdir", SUBDIRS)
def test_each_job_gets_what_the_basic_launcher_gives(hydra_sweep_runner, tmp_path: Path, subdir: str) -> None:
    basic = _sweep(hydra_sweep_runner, "basic", subdir, tmp_path / "basic")
    runner = _sweep(hydra_sweep_runner, "runner", subdir, tmp_path / "runner")
    assert [len(batch) for batch in runner[0]] == [4, 2]
    assert runner == basic


@pytest.mark.slow
def test_against_a_hydra_prerelease(tmp_path: Path) -> None:
    """This file's suites, run in a clean virtual environment with the newest hydra-core the
    package index has (a 1.4 pre-release today), to see what the next Hydra breaks.

    The project pins hydra-core below 1.4, so failures there are reported, not failed on: the
    test xfails with the count and the first errors (shown by `-ra`), and passes once all pass.
    Skipped with the reason when the index has nothing newer than 1.3 or cannot be reached.
    About 30 s: a venv with hydra-core and pytest only (the in-process and subprocess suites
    need neither the runner nor TensorFlow; this file's slow tests are deselected there).
    """
    import re
    import subprocess
    import sys

    def pip(*args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
        cmd = [python, "-m", "pip", "--disable-pip-version-check", "-q", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    wheels = tmp_path / "wheels"
    try:
        got = pip("download", "hydra-core", "--pre", "--no-deps", "-d", str(wheels))
    except subprocess.TimeoutExpired:
        pytest.skip("the package index did not answer within 300 s")
    if got.returncode != 0:
        pytest.skip(f"the package index is unreachable: {got.stderr.strip()[-300:]}")
    [wheel] = list(wheels.iterdir())
    found = re.match(r"hydra_core-([^-]+)-", wheel.name)
    assert found, wheel.name
    newest = found.group(1)
    if tuple(int(p) for p in re.findall(r"\d+", newest)[:2]) < (1, 4):
        pytest.skip(f"no Hydra 1.4 release or pre-release on the package index (newest: {newest})")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    installed = pip("install", "--pre", str(wheel), "pytest", python=python)
    if installed.returncode != 0:
        pytest.skip(f"could not install hydra-core {newest}: {installed.stderr.strip()[-300:]}")
    run = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "-m", "not slow", __file__],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode == 0:
        return
    failed = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    errors = sorted(
        {
            re.sub(r"\s+", " ", line.lstrip("E ").strip())[:200]
            for line in run.stdout.splitlines()
            if re.match(r"(E\s+)?\w+(\.\w+)*(Error|Exception): ", line) and "CalledProcessError" not in line
        }
    )
    last = run.stdout.strip().splitlines()[-1:] or [run.stderr[-300:]]
    pytest.xfail(f"under hydra-core {newest}: {last[0]}; {len(failed)} failed; errors: " + " | ".join(errors[:4]))
