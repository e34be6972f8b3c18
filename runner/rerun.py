"""`python -m runner.rerun RUN_DIR`: run a logged run again and say whether it reproduces.

The run's resolved config is read from `RUN_DIR/.hydra/config.yaml` (Hydra saves it with
every run), run again in `RUN_DIR/.rerun/` with the same seed and determinism settings,
and every value and derivative is compared with the logged one: `identical` (the same
bits, as logged), `within tolerance` (`--rtol`/`--atol`, with the largest difference), or
`MISMATCH`. The status, error type and verdict on `expect` must match too.

The run folder may come from anyone. Its log is read whole or not at all
(`runner.record.log_reader.read_log`), nothing in it through a link (the folder named on the
command line may be one: the command line is trusted). Its saved config is read with a size
cap, its aliases counted before it is parsed (`runner.config.files.check_yaml_size`), its
`hydra` node left out (Hydra saves none there), and it is parsed and its interpolations
resolved within a bound (`runner.config.deadline`: `RUNNER_COMPOSE_SECONDS`, 30 s; 512 MiB), as
interpolations that repeat each other take time and text that doubles at each step. The rerun
writes only into a `.rerun/` it creates afresh: a `.rerun` that is a link (or not a folder) is
refused, never followed. A refusal is one line.

`python -m runner.rerun SWEEP_DIR` (a folder holding Hydra's `multirun.yaml`) does this for
every job of the sweep, in one process as the runner's launcher runs a sweep (one TensorFlow
import), and prints one line per job, `#N OVERRIDES: reproduced` or `NOT reproduced: LABELS
differ` (or why it cannot be rerun), then a count; it exits 0 only if every job reproduced.

Exit codes: 0 reproduced, 1 a mismatch (for a sweep: any job not reproduced, or one that
cannot be rerun), 2 not a run folder, a bad log or saved config, or a `.rerun` that is not a
folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy as np

from runner.config import deadline, files
from runner.errors import ConfigError, short
from runner.record import log_reader, runlog

RERUN_DIR = ".rerun"
SAVED_CONFIG = Path(".hydra") / "config.yaml"
# Hydra's saved config is a few kB; one this large would take minutes to parse as YAML.
CONFIG_LIMIT = 16 * 2**20
# The budget of parsing and resolving it: a real one takes milliseconds and a few MiB. The time
# is the bound on composing a config, and its variable; the person running the command may
# change it, the run folder cannot.


class Refused(Exception):
    """The rerun cannot start; the text says why in one line."""


def load_value(folder: Path, v: Any) -> Any:
    """A logged value as NumPy (arrays.npz references resolved), a dict of them, or None."""
    if v is None:
        return None
    if isinstance(v, dict) and "array" in v:
        with np.load(folder / v["array"]["file"]) as npz:
            return npz[v["array"]["key"]]
    if isinstance(v, dict):
        return {k: load_value(folder, x) for k, x in v.items()}
    return np.asarray(_finite_floats(v))


def _finite_floats(v: Any) -> Any:
    if isinstance(v, list):
        return [_finite_floats(x) for x in v]
    if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    return v


def compare(old: Any, new: Any, rtol: float, atol: float) -> Tuple[str, Optional[float]]:
    """("identical" | "within tolerance" | "MISMATCH", largest absolute difference)."""
    if isinstance(old, dict) or isinstance(new, dict):
        if not (isinstance(old, dict) and isinstance(new, dict)) or old.keys() != new.keys():
            return "MISMATCH", None
        parts = [compare(old[k], new[k], rtol, atol) for k in old]
        worst = max(parts, key=lambda p: ["identical", "within tolerance", "MISMATCH"].index(p[0]))
        diffs = [d for _, d in parts if d is not None]
        return worst[0], (max(diffs) if diffs else None)
    if old is None or new is None:
        return ("identical", None) if old is None and new is None else ("MISMATCH", None)
    if old.shape != new.shape:
        return "MISMATCH", None
    if np.array_equal(old, new, equal_nan=old.dtype.kind == "f" and new.dtype.kind == "f"):
        return "identical", 0.0
    a, b = old.astype(np.float64), new.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
        same_nonfinite = (np.isnan(a) & np.isnan(b)) | (a == b)
        ok = same_nonfinite | (diff <= atol + rtol * np.abs(a))
    largest = float(np.nanmax(np.where(same_nonfinite, 0.0, diff))) if diff.size else 0.0
    return ("within tolerance" if bool(np.all(ok)) else "MISMATCH"), largest


def items(folder: Path, record: Dict[str, Any]) -> Dict[str, Any]:
    """Every value and derivative of a run log, by a label such as `value x`, `gradient dy/dx`."""
    out = {f"value {k}": load_value(folder, v) for k, v in record["values"].items()}
    out.update({f"{d['kind']} {d['name']}": load_value(folder, d["value"]) for d in record["derivatives"]})
    return out


def rerun(run_dir: Path, rtol: float = 0.0, atol: float = 0.0) -> Tuple[int, List[str]]:
    """Run `run_dir` again; return the exit code and the report's lines. A bad log raises
    `log_reader.BadLog`; a bad saved config or `.rerun` raises `Refused`: before anything runs."""
    from runner import job
    from runner.sweep import folders

    folders.register()
    old = log_reader.read_log(run_dir)
    cfg = saved_config(run_dir)
    old_items = _loaded(run_dir, old)
    cfg["resume"] = None
    # the numbers are what is compared; no need to redraw the pictures
    log = cfg.get("log")
    cfg["log"] = {**(log if isinstance(log, dict) else {}), "tensorboard": False, "plots": False}
    out_dir = fresh_folder(run_dir / RERUN_DIR)
    job.run(cfg, out_dir, name=old["experiment"] or "rerun", echo=False)
    new = log_reader.read_log(out_dir)
    new_items = _loaded(out_dir, new)

    lines = [f"rerun of {run_dir} ({old['experiment']}) in {out_dir}"]
    refused = new.get("error") or {}
    if refused.get("type") == "ConfigError" and (old.get("error") or {}).get("type") != "ConfigError":
        # why the run could not run again (code not trusted here, say), in its own words
        lines.append(f"  config error: {refused.get('message')}")
    failed = False
    for label, want, got in [
        ("status", old["status"], new["status"]),
        ("error", (old.get("error") or {}).get("type"), (new.get("error") or {}).get("type")),
        ("expect met", old["expect"]["met"], new["expect"]["met"]),
    ]:
        same = want == got
        failed |= not same
        lines.append(
            f"  {label:<24} {'identical' if same else 'MISMATCH'}" + ("" if same else f": logged {want!r}, now {got!r}")
        )
    for label in dict.fromkeys([*old_items, *new_items]):
        if label not in old_items or label not in new_items:
            failed = True
            lines.append(f"  {label:<24} MISMATCH: {'not logged before' if label not in old_items else 'missing now'}")
            continue
        verdict, diff = compare(old_items[label], new_items[label], rtol, atol)
        failed |= verdict == "MISMATCH"
        detail = (
            ""
            if verdict == "identical" or diff is None
            else f" (largest |difference| {diff:.3g}; rtol {rtol:g}, atol {atol:g})"
        )
        lines.append(f"  {label:<24} {verdict}{detail}")
    lines.extend(_environment_changes(old["environment"], new["environment"], failed))
    lines.extend(_code_changes(old.get("code"), new.get("code")))
    lines.append("reproduced" if not failed else "NOT reproduced")
    return (1 if failed else 0), lines


MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it at the top of every sweep folder
# a label, its padding, then a verdict: how `rerun` writes each compared entry
_MISMATCH = re.compile(r"^  (\S+(?: \S+)*?)\s+MISMATCH\b")


def rerun_sweep(
    sweep_dir: Path, rtol: float = 0.0, atol: float = 0.0, say: Callable[[str], None] = lambda line: None
) -> Tuple[int, List[str]]:
    """`rerun` of every job of a sweep, in this process: one line per job and a count; exit
    code 0 only if every job reproduced. A job that cannot be rerun (no log, a bad one, a
    refused config) is a line saying why, and counts as not reproduced. `say` is given each
    line as soon as it is known (the command line prints it)."""
    from runner.config import overrides
    from runner.sweep import summary

    jobs = summary.job_folders(sweep_dir)
    lines: List[str] = []

    def add(line: str) -> None:
        lines.append(line)
        say(line)

    add(f"rerun of sweep {sweep_dir}: {len(jobs)} jobs")
    reproduced = 0
    for job_dir in jobs:
        head = " ".join([f"#{job_dir.name}", *overrides.overrides(job_dir)])
        if not (os.path.lexists(job_dir / runlog.RESULTS_FILE) and os.path.lexists(job_dir / SAVED_CONFIG)):
            add(f"  {head}: cannot rerun: not a run folder (needs results.json and .hydra/config.yaml)")
            continue
        try:
            code, job_lines = rerun(job_dir, rtol, atol)
        except log_reader.BadLog as err:
            add(f"  {head}: cannot rerun: bad run log: {err}")
            continue
        except Refused as err:
            add(f"  {head}: cannot rerun: {err}")
            continue
        if code == 0:
            reproduced += 1
            add(f"  {head}: reproduced")
        else:
            differ = [m.group(1) for m in map(_MISMATCH.match, job_lines) if m]
            why = (
                f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''}"
                if differ
                else f"python -m runner.rerun {job_dir} says why"
            )
            add(f"  {head}: NOT reproduced: {why}")
    add(
        f"{reproduced} of {len(jobs)} jobs reproduced"
        + ("" if reproduced == len(jobs) else f", {len(jobs) - reproduced} not")
    )
    return (0 if jobs and reproduced == len(jobs) else 1), lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.rerun", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "run_dir", type=Path, help="a run folder (holding results.json and .hydra/config.yaml), or a sweep folder"
    )
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: bit-identical)")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: bit-identical)")
    args = parser.parse_args(argv)
    run_dir: Path = args.run_dir
    if run_dir.is_symlink():  # named on the command line, which is trusted: below it, no link is followed
        run_dir = Path(os.path.realpath(run_dir))
    if (run_dir / MULTIRUN_FILE).is_file():
        return rerun_sweep(run_dir, args.rtol, args.atol, say=lambda line: print(line, flush=True))[0]
    if not (os.path.lexists(run_dir / runlog.RESULTS_FILE) and os.path.lexists(run_dir / SAVED_CONFIG)):
        print(f"not a run folder: {run_dir} (needs results.json and .hydra/config.yaml)", file=sys.stderr)
        return 2
    try:
        code, lines = rerun(run_dir, args.rtol, args.atol)
    except log_reader.BadLog as err:
        print(f"bad run log: {err}", file=sys.stderr)
        return 2
    except Refused as err:
        print(f"cannot rerun: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return code


def saved_config(run_dir: Path) -> Dict[str, Any]:
    """The resolved config Hydra saved with the run, less any `hydra` node, read with a size
    cap, parsed and resolved within `runner.config.deadline`'s bound; else `Refused`."""
    import yaml
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = run_dir / SAVED_CONFIG
    try:
        with log_reader.open_in_run(run_dir, *SAVED_CONFIG.parts) as f:
            text = log_reader.read_open(f, path, CONFIG_LIMIT).decode("utf-8")
        with deadline.deadline("reading it"):
            files.check_yaml_size(text, str(path))
            cfg = OmegaConf.create(text)
            if not isinstance(cfg, DictConfig):
                raise Refused(f"{path} is not a mapping")
            if "hydra" in cfg.keys():  # Hydra saves the job's part; a `hydra` node is not the job's
                del cfg["hydra"]  # (unlike `pop`, without resolving it)
            return cast(Dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    except log_reader.BadLog as err:  # a link, a FIFO, a device, too large
        raise Refused(str(err)) from None
    except ConfigError as err:  # aliases that expand too far
        raise Refused(f"{path}: {err.message}") from None
    except deadline.DeadlineExceeded as err:
        raise Refused(f"{path}: {err} (aliases or interpolations that repeat each other)") from None
    except UnicodeDecodeError:
        raise Refused(f"{path} is not UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise Refused(f"{path}: malformed YAML{where}: {getattr(err, 'problem', None) or 'cannot parse'}") from None
    except (OmegaConfBaseException, ValueError, RecursionError, MemoryError) as err:
        raise Refused(f"{path}: {type(err).__name__}: {_first_line(err)}") from None


def fresh_folder(out_dir: Path) -> Path:
    """`out_dir` made anew, empty, as a real folder: an earlier one is removed (without
    following the links in it), and a link or any other file there is refused, not followed."""
    try:
        mode: Optional[int] = os.lstat(out_dir).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise Refused(f"{out_dir} is a symbolic link; rerun writes only inside the run folder (remove the link)")
    if mode is not None and not stat.S_ISDIR(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a file"
        raise Refused(f"{out_dir} is {kind}, not a folder (remove it to rerun)")
    try:
        if mode is not None:
            shutil.rmtree(out_dir)  # safe against links inside: they are removed, not followed
        os.mkdir(out_dir)  # exclusive: whatever appeared meanwhile, even a link, fails here
    except OSError as err:
        raise Refused(f"{out_dir}: {err.strerror or err}") from None
    return out_dir


def _loaded(folder: Path, record: Dict[str, Any]) -> Dict[str, Any]:
    """`items`, with a corrupt arrays.npz (its headers were whole, its data not) a `BadLog`;
    MemoryError too: `read_log` checked each tensor's size, but a file may change since."""
    try:
        return items(folder, record)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as err:
        raise log_reader.BadLog(f"{folder / runlog.ARRAYS_FILE} is corrupt: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    """An error's first line, short and escaped (it may quote a user's file)."""
    text = str(err).strip()
    return short(text.splitlines()[0]) if text else type(err).__name__


def _environment_changes(was: Dict[str, Any], now: Dict[str, Any], failed: bool) -> List[str]:
    """A note on each compared entry of the environment (`runlog.COMPARED`: versions, devices,
    TensorFlow's build) that differs; when the numbers differ too, a line naming them all, or
    saying that none does. An entry the log does not hold (an older runner's) is not compared."""
    differ = [k for k in runlog.COMPARED if k in was and was.get(k) != now.get(k)]
    lines = []
    for k in differ:
        a, b = was.get(k), now.get(k)
        parts = (
            [(f"{k}.{sub}", a.get(sub), b.get(sub)) for sub in sorted(set(a) | set(b)) if a.get(sub) != b.get(sub)]
            if isinstance(a, dict) and isinstance(b, dict)  # TensorFlow's build: the items that differ
            else [(k, a, b)]
        )
        lines += [f"  note: {name} was {_short(x)}, now {_short(y)}" for name, x, y in parts]
    if failed:
        lines.append(
            f"  environment differs in: {', '.join(differ)}"
            if differ
            else "  environment: no compared entry differs (versions, devices, TensorFlow's build)"
        )
    return lines


def _short(v: Any, limit: int = 120) -> str:
    """An environment entry in one line: a printable text as is, anything else as JSON."""
    text = v if isinstance(v, str) and v.isprintable() else json.dumps(v, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _code_changes(old: Any, new: Any) -> List[str]:
    """Notes on the user's code between the runs: each trusted module whose file changed
    (`code.sources`, runner/tape/user_code.py), was not imported before, or is gone."""
    was = (old or {}).get("sources") if isinstance(old, dict) else None
    now = (new or {}).get("sources") if isinstance(new, dict) else None
    if not isinstance(was, dict) or not isinstance(now, dict):
        return []
    out = []
    for module in sorted(set(was) | set(now)):
        if module not in now:
            out.append(f"  note: code module {module} was imported before, not now")
        elif module not in was:
            out.append(f"  note: code module {module} is imported now, not before")
        elif was[module] != now[module]:
            out.append(f"  note: code module {module} changed (its file's sha256 differs)")
    return out


if __name__ == "__main__":
    sys.exit(main())
