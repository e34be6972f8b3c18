"""The command line as a user types it: `python -m runner ...` in a subprocess, and its folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]


def command_env(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a command under test: this checkout's `runner` on PYTHONPATH."""
    import os

    # HYDRA_FULL_ERROR from the caller's shell would change what the tests see; drop it
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return full_env


def cli(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = 300):
    """Run `python -m runner ARGS` in a subprocess, importing this checkout's `runner`."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env=command_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(args: List[str], cwd: Path, env: Optional[Dict[str, str]] = None):
    """Start `python -m runner ARGS` in a subprocess (as `cli`), its output piped as text; the
    caller waits for it, signals it, or kills it."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env=command_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def probe_script(printed: str) -> str:
    """A `python -c` script running `python -m runner ARGS` in-process and, when it exits,
    printing `printed` (Python expressions over `done.code` and `sys.modules`)."""
    return (
        f"import sys\nfrom runner import cli\ntry:\n    cli.main()\nexcept SystemExit as done:\n    print({printed})\n"
    )


# `python -m runner ARGS` in a bare environment, printing its exit code and whether it imported TensorFlow
_TENSORFLOW_PROBE = probe_script("done.code, 'tensorflow' in sys.modules")


def exit_and_tensorflow(args: List[str], cwd: Path) -> List[str]:
    """`[exit code, whether TensorFlow was imported]` of `python -m runner ARGS`, as printed."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _TENSORFLOW_PROBE, *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout.split() or [result.stderr[-500:]]


def sweep_dirs(root: Path) -> List[Path]:
    """The sweep folders a run in `root` made under outputs/multirun, oldest first."""
    return sorted((root / "outputs" / "multirun").glob("*/*"))


def summary(sweep_dir: Path):
    """A sweep's summary.json, parsed."""
    from runner.sweep import summary as sweep_summary

    return json.loads((sweep_dir / sweep_summary.SUMMARY_JSON).read_text())
