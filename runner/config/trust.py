"""What a user's config folder may say about Hydra itself.

A config's `hydra:` section is Hydra's, not the runner's: Hydra instantiates the classes it
names (`callbacks`, `launcher`, `sweeper`), hands `job_logging` to `logging.config`
(whose `()` key calls any importable function), imports the packages `searchpath` names,
exports `job.env_set` to every worker process, and the SLURM launcher runs `setup` lines
in a shell. All of that happens before a job starts, so the runner's own validation comes
too late. Config files from elsewhere (`--config-dir`, `--config-path`, a `file://` entry of
`hydra.searchpath`) are therefore read first, as plain YAML with a safe loader, and
refused when they reach into Hydra beyond the harmless keys in `ALLOWED`, place a file
in Hydra's groups (a `hydra/` folder), or move content into Hydra's package
(`# @package hydra...`, `...@hydra...` in a defaults list). Selecting an installed launcher
(`override hydra/launcher: joblib`) stays allowed, as does everything typed on the
command line: that is the user's own hand.

The runner's shipped `conf/` is trusted and not read here. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from runner.errors import ConfigError

# Dotted keys under `hydra:` a config file may set: where runs go, and how many workers.
ALLOWED = (
    "run.dir",
    "sweep.dir",
    "sweep.subdir",
    "job.name",
    "job.chdir",
    "output_subdir",
    "verbose",
    "launcher.n_jobs",
)
# Callbacks a config file may name: the runner's own (a copy of conf/config.yaml names it).
SAFE_CALLBACKS = ("runner.sweep.summary.SweepSummary", "runner.sweep.progress.Progress")
MAX_FILES = 2000  # a config folder larger than this is not a config folder

_PACKAGE = re.compile(r"^\s*#\s*@package\s+(\S+)", re.MULTILINE)


# the `runner` package: Hydra resolves --config-path against runner/cli.py's folder
_RUNNER_DIR = Path(__file__).resolve().parents[1]


def config_folders(argv: List[str]) -> List[Path]:
    """The folders of configs the command line brings in besides the shipped `conf/`."""
    found: List[Path] = []
    flags = ("--config-dir", "-cd", "--config-path", "-cp")
    for i, arg in enumerate(argv):
        for flag in flags:
            value = _flag_value(argv, i, flag)
            if value is not None:
                found.append(Path(value).expanduser())
                if flag in ("--config-path", "-cp"):  # Hydra reads it relative to runner/cli.py
                    found.append(_RUNNER_DIR / value)
        if arg.lstrip("+").startswith("hydra.searchpath="):
            found += [Path(f) for f in re.findall(r"file://([^,\]\s'\"]+)", arg)]
    shipped = {(_RUNNER_DIR / "conf").resolve(), (_RUNNER_DIR.parent / "conf").resolve()}  # wheel, checkout
    unique = list(dict.fromkeys(found))  # an absolute --config-path is found twice
    return [f for f in unique if f.is_dir() and f.resolve() not in shipped]


def _flag_value(argv: List[str], i: int, flag: str) -> Optional[str]:
    """The value of `flag` if argv[i] is it (`--config-dir DIR` or `--config-dir=DIR`)."""
    if argv[i] == flag:
        return argv[i + 1] if i + 1 < len(argv) else None
    if argv[i].startswith(flag + "="):
        return argv[i][len(flag) + 1 :]
    return None


def check_argv(argv: List[str]) -> None:
    """Refuse, as a `ConfigError`, a config folder on the command line that configures Hydra."""
    for folder in config_folders(argv):
        check_folder(folder)


def check_folder(folder: Path) -> None:
    """Refuse, as a `ConfigError`, a folder with a file that reaches into Hydra's config."""
    files: List[Path] = []
    for root, _dirs, names in os.walk(folder):  # symlinked folders are not followed
        files += [Path(root) / n for n in names if n.endswith((".yaml", ".yml"))]
        if len(files) > MAX_FILES:  # stop early: `--config-dir ~` must not walk a whole home
            raise ConfigError(str(folder), f"more than {MAX_FILES} YAML files; that is not a config folder")
    for path in sorted(files):
        _check_file(path, path.relative_to(folder))


def _check_file(path: Path, rel: Path) -> None:
    if rel.parts[0] == "hydra":
        raise ConfigError(
            str(path),
            "a config folder may not add configs to Hydra's own groups (hydra/...); "
            "choose an installed one on the command line, e.g. hydra/launcher=joblib",
        )
    text = path.read_text(errors="replace")
    header = _PACKAGE.search(text)
    if header and header.group(1).removeprefix("_global_.").split(".")[0] == "hydra":
        raise ConfigError(str(path), f"'# @package {header.group(1)}' moves this file into Hydra's own config")
    import yaml

    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return  # Hydra will refuse it, naming the line (runner.errors.explain)
    if not isinstance(data, dict):
        return
    for entry in data.get("defaults") or []:
        words = entry if isinstance(entry, str) else " ".join(str(k) for k in entry) if isinstance(entry, dict) else ""
        if re.search(r"@\s*(_global_\.)?hydra\b", words):
            raise ConfigError(f"{path}: defaults", f"{words!r} places a config inside Hydra's own config")
    section = data.get("hydra")
    if section is None:
        return
    for key, value in _leaves(section):
        if re.fullmatch(r"callbacks\.\w+\._target_", key) and value in SAFE_CALLBACKS:
            continue
        if key in _FOLDERS and not _inside(str(value)):
            raise ConfigError(
                f"{path}: hydra.{key}",
                f"{value!r} leaves the working folder; a config file may choose only relative folders "
                "without '..' (give another on the command line)",
            )
        if key not in ALLOWED:
            raise ConfigError(
                f"{path}: hydra.{key}",
                f"a config file may not set this (Hydra acts on it before any check, and it can run code); "
                f"allowed under hydra: {', '.join(ALLOWED)}; anything else goes on the command line",
            )


_FOLDERS = ("run.dir", "sweep.dir", "sweep.subdir", "output_subdir")


def _inside(folder: str) -> bool:
    """A relative path that stays below the working folder.

    Interpolations may give only a timestamp, the process id or the job's name/number
    (`${now:...}`, `${pid:}`, `${hydra.job.num}`), which cannot make a path absolute.
    """
    # The shipped sweep folder is ${first:${resume},DEFAULT}: `resume` comes from the command
    # line (trusted); only DEFAULT is the file's own choice.
    m = re.fullmatch(r"\$\{first:\$\{resume\},(.*)\}", folder)
    if m:
        folder = m.group(1)
    plain = re.sub(r"\$\{(now:(?:[^}/\\.]|\.(?!\.))*|hydra[.:]job\.\w+|pid:)\}", "x", folder)
    if "${" in plain or plain.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:", plain):
        return False
    return ".." not in re.split(r"[/\\]", plain)


def _leaves(node: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """(dotted key, value) of every leaf, stopping at allowed keys."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            key = f"{prefix}{k}"
            if key in ALLOWED:
                yield key, v
            else:
                yield from _leaves(v, key + ".")
    elif prefix:
        yield prefix[:-1], node
