"""What a config folder may say about Hydra itself, judged on what Hydra composes.

A config's `hydra:` section is Hydra's, not the runner's: Hydra instantiates the classes it
names (`callbacks`, `launcher`, `sweeper`), hands `job_logging` to `logging.config`
(whose `()` key calls any importable function), imports the packages `searchpath` names,
exports `job.env_set` to every worker process, and the SLURM launcher runs `setup` lines
in a shell. All of that happens before a job starts, so the runner's own validation comes
too late.

So the judgement happens inside Hydra's own composition, on what Hydra will act on, never
on a re-reading of the files (which must then agree with Hydra on headers, symlinks,
defaults paths and flag spellings, and did not). `install` makes this process's Hydra
compose with `JudgingConfigLoader`, which is Hydra's `ConfigLoaderImpl` plus two checks:

- every config Hydra loads from an untrusted source, *as Hydra placed it* (its package
  header and any `@package` of the defaults entry applied, by Hydra's own code), may set
  under `hydra:` only the harmless keys in `ALLOWED` (and name the runner's own
  callbacks), and may set `resume` only to a folder below the working folder;
- a trusted config (one of Hydra's or the runner's) may not be moved into `hydra` by an
  untrusted config's defaults entry (`/function/cubic@hydra.callbacks.x`), and an untrusted
  primary config may not extend Hydra's search path (Hydra imports `pkg://` entries).

Trusted sources are Hydra's own configs (`pkg://hydra.conf`), the ConfigStore (code:
the runner's schema, installed launchers), and the runner's shipped `conf/`. Everything
else is untrusted content, however the command line named it: `--config-dir` (any
spelling argparse accepts), `--config-path`, any `hydra.searchpath` entry. The command
line's own overrides are trusted: that is the user's own hand.

Files are read through `FileConfigSource`: a config file must be a regular file
(a FIFO or a device is refused, never opened for reading), at most `MAX_CONFIG_BYTES`,
and inside its config folder once symlinks are resolved (a symlinked subfolder or a
defaults path like `/../data/evil` that leads out is refused).

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import io
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

from hydra.core.default_element import ResultDefault
from hydra.core.override_parser.types import Override
from hydra.plugins.config_source import ConfigResult, ConfigSource
from omegaconf import OmegaConf

from runner.config import files
from runner.config.deadline import deadline
from runner.errors import ConfigError, short
from runner.hydra_compat import ConfigLoaderImpl, loader_patch_points
from runner.hydra_compat import FileConfigSource as HydraFileConfigSource

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
# Callbacks a config file may name: the runner's own (a copy of conf/config.yaml names them).
SAFE_CALLBACKS = ("runner.sweep.summary.SweepSummary", "runner.sweep.progress.Progress")
MAX_CONFIG_BYTES = 256 << 10  # one config file: 1,000 steps take about 25 KB; the shipped ones are under 2 KB

_FOLDERS = ("run.dir", "sweep.dir", "sweep.subdir", "output_subdir")
# the runner's configs: inside the package (wheel) or beside it (checkout)
_RUNNER_DIR = Path(__file__).resolve().parents[1]
_SHIPPED = {os.path.realpath(_RUNNER_DIR / "conf"), os.path.realpath(_RUNNER_DIR.parent / "conf")}


def install() -> None:
    """Make this process's Hydra compose through `JudgingConfigLoader` and read config files
    through `FileConfigSource`. Idempotent; call before Hydra's entry point."""
    hydra_internal, SourcesRegistry, Plugins = loader_patch_points()
    Plugins.instance()  # registers Hydra's own sources first, so ours is not replaced after
    SourcesRegistry.instance().types[FileConfigSource.scheme()] = FileConfigSource
    hydra_internal.ConfigLoaderImpl = JudgingConfigLoader


class FileConfigSource(HydraFileConfigSource):
    """Hydra's `file://` config source, reading only regular files inside its folder, bounded.

    It keeps the name of the class it replaces: a worker process (joblib, submitit) gets the
    registry of sources from the launching process and then registers Hydra's own
    `FileConfigSource` again, which Hydra skips for a class of the same name and refuses
    (`ValueError`) for any other name.
    """

    def _full_path(self, config_path: str) -> Path:
        return Path(self.path) / config_path

    def load_config(self, config_path: str) -> ConfigResult:
        name = self._normalize_file_name(config_path)
        path = self._full_path(name)
        data = files.read_bounded(path, str(path), MAX_CONFIG_BYTES, inside=Path(self.path), name="this file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(str(path), f"not UTF-8 text (byte {err.start})") from None
        files.check_yaml_size(text, str(path))  # nested aliases: 362 bytes took OmegaConf minutes
        try:
            header = ConfigSource._get_header_dict(text[:512])  # what Hydra's own source reads
        except ValueError as err:
            raise ConfigError(str(path), f"bad header line: {short(str(err), 60)}") from None
        stream = io.StringIO(text)
        stream.name = str(path)  # YAML's errors name the file, as with Hydra's own source
        return ConfigResult(
            config=OmegaConf.load(stream),
            path=f"{self.scheme()}://{self.path}",
            provider=self.provider,
            header=header,
        )

    def is_group(self, config_path: str) -> bool:
        return self._exists(config_path, stat.S_ISDIR)

    def is_config(self, config_path: str) -> bool:
        return self._exists(self._normalize_file_name(config_path), stat.S_ISREG, refuse_other=True)

    def _exists(self, config_path: str, kind: Any, refuse_other: bool = False) -> bool:
        """Whether `config_path` is there and of `kind`; a `ConfigError` when it leads out of
        the folder, or (`refuse_other`) is something else than a regular file: a FIFO, a device."""
        path = self._full_path(config_path)
        try:
            info = os.stat(path)  # follows symlinks; opens nothing, so a FIFO cannot block
        except OSError:
            if os.path.islink(path):  # a dangling link or a loop: say so, not "not found"
                files.resolve(path, str(path), name="this link")
            return False
        files.resolve(path, str(path), inside=Path(self.path), name="this path")
        if refuse_other and not kind(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            files.read_bounded(path, str(path), MAX_CONFIG_BYTES, name="this file")  # raises, naming what it is
        return bool(kind(info.st_mode))


class JudgingConfigLoader(ConfigLoaderImpl):
    """Hydra's config loader, refusing what an untrusted config says about Hydra (see above),
    and composing within a time bound (`runner.config.deadline`)."""

    def load_configuration(self, *args: Any, **kwargs: Any) -> Any:
        with deadline("composing the config"):
            return super().load_configuration(*args, **kwargs)

    def _process_config_searchpath(
        self, config_name: Optional[str], parsed_overrides: List[Override], repo: Any
    ) -> None:
        typed = any(o.get_key_element() == "hydra.searchpath" for o in parsed_overrides)
        if config_name is not None and not typed:  # Hydra would use the primary config's
            primary = repo.load_config(config_path=config_name)
            if primary is not None and not _trusted(primary):
                if OmegaConf.select(primary.config, "hydra.searchpath") is not None:
                    raise ConfigError(
                        f"{_where(primary, config_name)}: hydra.searchpath",
                        "a config file may not extend Hydra's search path (Hydra imports what it names); "
                        "give hydra.searchpath on the command line",
                    )
        super()._process_config_searchpath(config_name, parsed_overrides, repo)

    def _load_single_config(self, default: ResultDefault, repo: Any) -> ConfigResult:
        result = super()._load_single_config(default, repo)
        if not _trusted(result):
            judge(result.config, _where(result, default.config_path or ""))
        elif _moved_into_hydra(default) and default.parent is not None:
            parent = repo.load_config(config_path=default.parent)
            if parent is not None and not _trusted(parent):
                raise ConfigError(
                    f"{_where(parent, default.parent)}: defaults",
                    f"places {default.config_path!r} inside Hydra's own config ({default.package}); "
                    "a config file may not",
                )
        return result


def _trusted(result: ConfigResult) -> bool:
    """A config from Hydra itself, the ConfigStore (code) or the runner's shipped `conf/`."""
    if result.is_schema_source or result.path in ("pkg://hydra.conf", "structured://"):
        return True
    scheme, _, where = result.path.partition("://")
    return scheme == "file" and os.path.realpath(where) in _SHIPPED


def _moved_into_hydra(default: ResultDefault) -> bool:
    """A config placed in `hydra` elsewhere than its own group's package."""
    package = default.package or ""
    if package != "hydra" and not package.startswith("hydra."):
        return False
    group = (default.config_path or "").rpartition("/")[0].replace("/", ".")
    return package != group


def _where(result: ConfigResult, config_path: str) -> str:
    """The file a config came from, for a message: `/home/me/conf/experiment/a.yaml`."""
    root = result.path.partition("://")[2]
    return str(Path(root) / ConfigSource._normalize_file_name(config_path))


def judge(config: Any, where: str) -> None:
    """Refuse, as a `ConfigError` naming `where` and the key, an untrusted config (as placed
    by Hydra) that sets Hydra's config beyond `ALLOWED`, or `resume` outside the working folder."""
    if not OmegaConf.is_dict(config):
        return
    raw = OmegaConf.to_container(config, resolve=False)  # as written: interpolations unresolved
    assert isinstance(raw, dict)
    resume = raw.get("resume")
    if resume is not None and not _inside(str(resume)):
        raise ConfigError(
            f"{where}: resume",
            f"{short(str(resume))} leaves the working folder; a config file may resume only a folder "
            "below it, without '..' (give another on the command line)",
        )
    _judge_limits(raw.get("limits"), where)
    _judge_tracking(raw.get("log"), where)
    from runner.config.points import config_files

    for key, path in config_files({k: v for k, v in raw.items() if k != "hydra"}):
        if not _inside(path):
            raise ConfigError(
                f"{where}: {key}.file",
                f"{short(path)} is not below the working folder; a config file may name only point files "
                "there, by a relative path without '..' (give another on the command line)",
            )
    if "hydra" not in raw:
        return
    section = raw["hydra"]
    # `hydra: ${oc.create:...}` would become a whole section: judged as one key
    leaves = _leaves(section) if isinstance(section, dict) else iter([("", section)])
    for key, value in leaves:
        if re.fullmatch(r"callbacks\.\w+\._target_", key) and value in SAFE_CALLBACKS:
            continue
        if key not in ALLOWED:
            raise ConfigError(
                f"{where}: {'.'.join(('hydra', key)).rstrip('.')}",
                f"a config file may not set this (Hydra acts on it before any check, and it can run code); "
                f"allowed under hydra: {', '.join(ALLOWED)}; anything else goes on the command line",
            )
        problem = _problem(key, value)
        if problem:
            raise ConfigError(f"{where}: hydra.{key}", problem)


def _judge_limits(limits: Any, where: str) -> None:
    """A config file may lower a bound on work (`limits.*`), never raise it: only the command
    line may (`limits.memory=16GiB`)."""
    if not isinstance(limits, dict):
        return  # null keeps the defaults; anything else is refused by the settings' own check
    from runner.config.schema import LimitsConfig
    from runner.config.settings import size_in_bytes

    for key, value in limits.items():
        default = getattr(LimitsConfig, str(key), None)
        if default is None:
            continue  # a misspelt key: the schema refuses it, naming it
        if isinstance(value, str) and "${" in value:
            raised = True  # an interpolation may resolve to anything: only the command line decides
        elif key == "memory":
            try:
                raised = size_in_bytes(f"limits.{key}", value) > size_in_bytes(f"limits.{key}", default)
            except ConfigError:
                raised = False  # not a size at all: the settings refuse it, saying what a size is
        else:
            raised = isinstance(value, int) and not isinstance(value, bool) and value > default
        if raised:
            raise ConfigError(
                f"{where}: limits.{key}",
                f"{short(str(value))} is above the default ({default}); a config file may lower a limit, "
                f"only the command line may raise it (limits.{key}=...)",
            )


_LOCAL_STORE = re.compile(r"(sqlite:///|file:)(.*)", re.S)


def _judge_tracking(log: Any, where: str) -> None:
    """A config file may turn MLflow on (`log.mlflow: true`: the store the user's environment
    names) or name a local store below the working folder (`sqlite:///mlflow.db`), never a
    server or a database elsewhere: it would receive the run's log, and MLflow would send it
    the user's credentials (MLFLOW_TRACKING_TOKEN, ...). The command line may name any."""
    value = log.get("mlflow") if isinstance(log, dict) else None
    if value is None or isinstance(value, bool):
        return
    match = _LOCAL_STORE.fullmatch(value) if isinstance(value, str) else None
    # a plain relative path: `file://HOST/ABS` is /ABS to MLflow, `%2F` is decoded to '/', and
    # SQLite opens `sqlite:///file:/ABS?uri=true` as a URI filename, /ABS
    if match is None or re.search(r"[%?#]|^//|^file:", match.group(2)) or not _inside(match.group(2)):
        raise ConfigError(
            f"{where}: log.mlflow",
            f"{short(str(value))}: a config file may say true or name a store below the working folder, "
            "not a server or a store elsewhere (it would get your runs and MLflow credentials); "
            "name it on the command line",
        )


def _problem(key: str, value: Any) -> Optional[str]:
    """What is wrong with an allowed key's value in a config file, or None."""
    if key in _FOLDERS and not _inside(str(value)):
        return (
            f"{short(str(value))} leaves the working folder; a config file may choose only relative "
            "folders without '..' (give another on the command line)"
        )
    if key == "job.name" and not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", str(value)):
        return f"{short(str(value))} is not a plain name (letters, digits, '_', '.', '-'; it names files)"
    if key == "launcher.n_jobs":
        cores = os.cpu_count() or 1
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= abs(value) <= cores
        if not ok:
            return (
                f"{short(str(value))} workers: a config file may ask for 1 to {cores} (this machine's "
                f"cores; -1 means all); ask for more on the command line"
            )
    return None


def _inside(folder: str) -> bool:
    """A relative path that stays below the working folder.

    Interpolations may give only a timestamp of strftime directives, digits, letters, '-',
    '_' and ':' (no '.', which `.${now:.}` would make '..'), the process id, or the job's
    number, id or name (itself a plain name), none of which can make a path absolute or climb.
    """
    # The shipped sweep folder is ${first:${resume},DEFAULT}: `resume` is judged on its own
    # (above); only DEFAULT is the file's own choice.
    m = re.fullmatch(r"\$\{first:\$\{resume\},(.*)\}", folder)
    if m:
        folder = m.group(1)
    plain = re.sub(r"\$\{(now:[%\w:-]*|hydra[.:]job\.(?:num|name|id)|pid:)\}", "x", folder)
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
