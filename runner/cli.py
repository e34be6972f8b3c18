"""The command line: Hydra composes the config, `runner.job.run` does the work.

Nothing here imports TensorFlow, so `--help`, `--cfg job` and refused configs answer
at once. The process exits with the job's code (see `runner.job`), or for a sweep with 1
when any job did not complete as declared (a refused config included).

Two things happen around Hydra's entry point, both within Hydra's documented interfaces:

- Errors. Hydra prints its own composition errors (a misspelt key, malformed YAML, a
  missing config) as several lines or a stack trace and exits 1, from inside
  `hydra._internal.utils.run_and_report`, which leaves no hook. But it re-raises instead
  when `HYDRA_FULL_ERROR=1`, so `main` sets that variable for Hydra, catches what comes
  out, and prints one line naming the file or key at fault (`runner.errors.explain`),
  exiting 2 like the runner's own config errors. A user who set `HYDRA_FULL_ERROR=1`
  gets the full traceback, as Hydra promises.
- Signals. SIGINT and SIGTERM raise `Interrupted` (a KeyboardInterrupt, so no
  `except Exception` swallows it). Hydra skips `on_multirun_end` on an interruption, so
  `main` writes the sweep's summary itself from what the finished jobs left on disk and
  exits 130 (SIGINT) or 143 (SIGTERM). Each job's log is written atomically, so a job cut
  short leaves no `results.json` at all, never half of one.
- Trust. Hydra composes through `runner.config.hydra_guard` (installed before the entry
  point), which refuses a config from a folder the command line named (`--config-dir`,
  `--config-path`, `hydra.searchpath`) whose part of Hydra's own config could run code
  (callbacks, launcher targets, logging factories), as Hydra composed it and before Hydra
  acts on it; and which reads config files only when regular, bounded and inside their folder.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, Dict, Optional, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from runner import errors, job
from runner.config import deadline, hydra_guard, schema
from runner.record.mlflow_run import JobContext
from runner.sweep import folders, lock, resume, summary


def config_dir() -> Path:
    """The configs: shipped inside the package (wheel), or `conf/` beside it (checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"runner's configs are missing: looked in {here / 'conf'} and {here.parent / 'conf'}")


schema.register()
folders.register()  # ${pid:} and ${first:} for collision-safe, resumable folders
_exit_code = 0
_last_run_dir: Optional[Path] = None  # the output folder of the job running in this process

# The exit code of a process stopped by signal N is 128 + N, as a shell reports it.
EXIT_INTERRUPTED: Dict[int, int] = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_entry(cfg: DictConfig) -> int:
    global _exit_code, _last_run_dir
    from hydra.core.hydra_config import HydraConfig

    if _signal_received is not None:  # its exception was swallowed (a finalizer prints and drops it)
        raise Interrupted(_signal_received)
    hc = HydraConfig.get()
    name = cfg.get("name") or hc.runtime.choices.get("experiment") or "run"
    with deadline.deadline("resolving the config's interpolations"):
        container = cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    _last_run_dir = Path(hc.runtime.output_dir)
    from hydra.types import RunMode

    in_sweep = hc.mode == RunMode.MULTIRUN
    context = JobContext(
        overrides=tuple(str(o) for o in hc.overrides.task),
        sweep_dir=Path(hc.runtime.cwd, str(hc.sweep.dir)) if in_sweep else None,
        job_num=int(hc.job.num) if in_sweep else None,
        cwd=Path(hc.runtime.cwd),  # hydra.job.chdir=true moved this process into the run's folder
    )
    code = job.run(container, _last_run_dir, name=str(name), in_sweep=in_sweep, context=context)
    _exit_code = max(_exit_code, code)
    return code


_signal_received: Optional[int] = None


def _raise_interrupted(signum: int, frame: Any) -> None:
    global _signal_received
    _signal_received = signum  # remembered: code the exception passes through may replace it
    raise Interrupted(signum)


def main() -> None:
    """`python -m runner`: run Hydra's entry point and exit with the outcome's code."""
    global _signal_received
    _signal_received = None
    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then re-raises, and we report (see above)
    handlers = {s: signal.signal(s, _raise_interrupted) for s in EXIT_INTERRUPTED}
    try:
        hydra_guard.install()  # Hydra then judges what a config folder says about Hydra itself
        resume.check_argv(sys.argv[1:])  # before Hydra makes a sweep folder named after it
        _hydra_entry()
    except (lock.Refused, deadline.DeadlineExceeded) as err:  # BaseExceptions, which Hydra lets through
        print(err.headline(), file=sys.stderr)
        sys.exit(errors.EXIT_CONFIG_ERROR)
    except KeyboardInterrupt as err:
        sys.exit(_report_interruption(err.signum if isinstance(err, Interrupted) else signal.SIGINT))
    except Exception as err:
        if _signal_received is not None:
            # The signal landed in library code whose cleanup raised anew (seen in OmegaConf
            # mid-composition: an AttributeError replaces the interruption); it is still one.
            sys.exit(_report_interruption(_signal_received))
        headline, detail, code = errors.explain(err)
        sweep_dir = summary.current_sweep_dir
        if sweep_dir is not None and sweep_dir.is_dir() and summary.job_folders(sweep_dir):
            # A job raised (Hydra's sweeper re-raises it after the batch and skips
            # on_multirun_end), or a later batch failed to compose: summarize from disk.
            rows = summary.finish_safely(sweep_dir)
            if user_wants_traceback:
                raise
            if code == errors.EXIT_CONFIG_ERROR:
                print(headline, file=sys.stderr)
                if detail:
                    print(detail, file=sys.stderr)
            else:
                print(summary.ended_by_error(sweep_dir, rows, headline.removeprefix("error: ")), file=sys.stderr)
            sys.exit(max(code, 1))
        if user_wants_traceback:
            raise
        print(headline, file=sys.stderr)
        if detail:
            print(detail, file=sys.stderr)
        sys.exit(code)
    finally:
        for s, h in handlers.items():
            if signal.getsignal(s) is _raise_interrupted:
                signal.signal(s, h)
        if not user_wants_traceback:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    if _signal_received is not None:
        # the signal's exception was swallowed where it landed (an `Exception ignored in` a
        # finalizer, seen in CI under MLflow: the sweep ran on to its end): still an interruption
        sys.exit(_report_interruption(_signal_received))
    if summary.current_sweep_dir is not None:
        # a sweep's code comes from its summary, the same under every launcher (a job's own
        # code stays in its worker process under joblib or submitit): 1 if any job failed
        if not summary.finished:  # on_multirun_end raised (Hydra warned and went on)
            summary.finish_safely(summary.current_sweep_dir)
        sys.exit(summary.last_exit_code)
    sys.exit(_exit_code)


def _report_interruption(signum: int) -> int:
    """Summarize what finished before the signal; return the exit code (128 + signum)."""
    for s in EXIT_INTERRUPTED:  # a second signal must not cut the summary short
        signal.signal(s, signal.SIG_IGN)
    name = signal.Signals(signum).name
    sweep_dir = summary.current_sweep_dir
    if sweep_dir is not None and sweep_dir.is_dir():
        cut = ("interrupted", f"interrupted by {name} before results.json was written")
        from runner.sweep import mlflow_sweep

        mlflow_sweep.interrupted = True  # log.mlflow: the sweep's parent run ends KILLED
        rows = summary.finish_safely(sweep_dir, mark_missing=cut)  # the job the signal cut short
        finished = sum(1 for r in rows if r["status"] != "interrupted") if rows is not None else "?"
        print(
            f"sweep interrupted by {name}: {finished} job(s) finished and logged; summary in {sweep_dir}",
            file=sys.stderr,
        )
    elif _last_run_dir is not None:
        print(f"interrupted by {name}; run folder: {_last_run_dir}", file=sys.stderr)
    else:
        print(f"interrupted by {name}", file=sys.stderr)
    return EXIT_INTERRUPTED[signum]
