"""Shared test code: `configs` (compose, build and run configs in-process) and `cli` (the
command line in subprocesses). Test files import from here, never from one another."""

from tests.helpers.cli import ROOT, cli, command_env, exit_and_tensorflow, probe_script, start_cli, summary, sweep_dirs
from tests.helpers.configs import Ran, composed, function_config, run_steps

__all__ = [
    "ROOT",
    "Ran",
    "cli",
    "command_env",
    "probe_script",
    "composed",
    "exit_and_tensorflow",
    "function_config",
    "run_steps",
    "start_cli",
    "summary",
    "sweep_dirs",
]
