"""The errors a user can cause, each naming the config key at fault."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple


class ConfigError(ValueError):
    """A config that cannot run: refused before TensorFlow is imported.

    `key` is the dotted config key at fault (``function.steps.z``), `message` says what is
    wrong in one line, and `detail` (optional) is shown below it, such as the expression
    with a caret under the fault.
    """

    def __init__(self, key: str, message: str, detail: str | None = None):
        message = _quoted_short(message)  # what a message quotes of a user's input stays short
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
        self.detail = detail

    def headline(self) -> str:
        return f"config error: {self.key}: {self.message}"


def short(value: Any, limit: int = 40) -> str:
    """`repr(value)`, cut to about `limit` characters: what a message may quote of a user's input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def whole_number(key: str, value: Any, minimum: Optional[int] = None) -> int:
    """`value` if it is an int (not a bool) of at least `minimum`, else a ConfigError naming `key`."""
    if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ConfigError(key, f"expected a whole number{bound}, got {short(value)}")
    return value


def true_or_false(key: str, value: Any) -> bool:
    """`value` if it is a bool, else a ConfigError naming `key` (YAML's 0 and 1 are not)."""
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


# Exit codes of refused configs and of the runner's own failures (see docs/run-log.md, "Outcomes
# and exit codes"); `runner.job` uses the same 2 for the configs it refuses.
EXIT_CONFIG_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def explain(err: BaseException) -> Tuple[str, Optional[str], int]:
    """One headline, an optional detail and the exit code for an error Hydra raised.

    Hydra's composition errors (a misspelt key, a value of the wrong type, malformed YAML,
    a missing config, an override the grammar rejects) are config errors: the headline
    names the file or key at fault. Anything else is the runner's own failure, reported in
    one line with a pointer to the traceback. What Hydra and OmegaConf quote of a user's
    file (`Value 'AAAA...' could not be converted`) is cut short and escaped.
    """
    headline, detail, code = _explain(err)
    return _quoted_short(headline), detail, code


# a quoted piece: pairs of quotes taken left to right, so that the text between two quoted
# pieces ("'a' in the folder /long/path/; did you mean 'b'") is never taken for one
_QUOTED = re.compile(r"(?<!\w)'([^'\n]*)'(?!\w)")
MAX_HEADLINE = 400


def _quoted_short(line: str) -> str:
    """`line` with every quoted piece cut to 80 characters, non-printables escaped."""
    line = _QUOTED.sub(lambda m: short(m.group(1), 80) if len(m.group(1)) > 80 else m.group(0), line)
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return line if len(line) <= MAX_HEADLINE else line[: MAX_HEADLINE - 3] + "..."


def _explain(err: BaseException) -> Tuple[str, Optional[str], int]:
    import yaml
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(err, ConfigError):
        return err.headline(), _indent(err.detail) if err.detail else None, EXIT_CONFIG_ERROR
    chain = _chain(err)
    marked = next((e for e in chain if isinstance(e, yaml.MarkedYAMLError)), None)
    if marked is not None:
        return _yaml_headline(marked), None, EXIT_CONFIG_ERROR
    if isinstance(err, OverrideParseException):
        first, _, rest = str(err).partition("\n")
        return (
            f"config error: command line: cannot parse the override: {first}",
            _indent(rest) or None,
            EXIT_CONFIG_ERROR,
        )
    defaults = _defaults_error(err)
    if defaults is not None:
        return defaults, None, EXIT_CONFIG_ERROR
    hint = _hint(err)
    if hint is not None:
        return hint[0], hint[1], EXIT_CONFIG_ERROR
    if isinstance(err, MissingConfigException):
        first, _, rest = str(err).partition("\n")
        options = rest.split("Config search path:")[0].strip()
        return f"config error: {first}", _indent(options) if options else None, EXIT_CONFIG_ERROR
    omega = next((e for e in chain if isinstance(e, OmegaConfBaseException)), None)
    if omega is not None and isinstance(err, (HydraException, OmegaConfBaseException)):
        return _omegaconf_headline(omega, err), None, EXIT_CONFIG_ERROR
    if isinstance(err, RecursionError):  # YAML, OmegaConf and Hydra's grammar all recurse
        return "config error: a value is nested too deeply to read (Python's recursion limit)", None, EXIT_CONFIG_ERROR
    if isinstance(err, (HydraException, yaml.YAMLError)):
        first, _, rest = str(err).strip().partition("\n")
        return f"config error: {first}", _indent(rest.strip()) if rest.strip() else None, EXIT_CONFIG_ERROR
    return (
        f"error: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}",
        "    (a fault of the runner, not of the config; set HYDRA_FULL_ERROR=1 for the traceback)",
        EXIT_INTERNAL_ERROR,
    )


def _defaults_error(err: BaseException) -> Optional[str]:
    """A defaults list Hydra cannot read: `experiment=1` (or true, null, nan, [1],
    ~experiment=1) on the command line, or `- override /function: 1` in a file.

    Hydra's defaults-list code fails on these with a bare ValueError or TypeError, which
    names neither the group nor the file; the failing frame holds them (`override`, or `d`
    and `item` for a list of choices; `config_path` for a file's list).
    """
    if not isinstance(err, (ValueError, TypeError)) or err.__traceback__ is None:
        return None
    tb = err.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    module, local = tb.tb_frame.f_globals.get("__name__"), tb.tb_frame.f_locals
    if module == "hydra._internal.config_repository" and isinstance(local.get("config_path"), str):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.removeprefix(f"In {local['config_path']}: ")
        first = first if len(first) <= 80 else first[:77] + "..."
        return f"config error: {local['config_path']}: defaults: {first}"
    if module != "hydra._internal.defaults_list":
        return None
    override, default = local.get("override"), local.get("d")
    if override is not None and hasattr(override, "key_or_group"):
        group, value = str(override.key_or_group), override.value()
        if isinstance(value, list):
            value = next((v for v in value if not isinstance(v, str)), value)
    elif default is not None and getattr(default, "group", None) and "item" in local:
        group, value = str(default.group), local["item"]
    else:
        return None
    return f"config error: {group}: expected the name of a config in {group}/, got {short(value)}"


def _chain(err: BaseException) -> List[BaseException]:
    out: List[BaseException] = []
    e: Optional[BaseException] = err
    while e is not None and e not in out:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _indent(text: str) -> str:
    return "\n".join("    " + line.strip() for line in text.splitlines() if line.strip())


def _yaml_headline(err: Any) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a config file"
    what = err.problem or "malformed YAML"
    context = f" ({err.context})" if err.context else ""
    return f"config error: {where}: malformed YAML: {what}{context}"


def _omegaconf_headline(omega: Any, outer: BaseException) -> str:
    """`tape.persistant: no such key in TapeConfig; did you mean 'persistent'?`"""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = omega.full_key or getattr(omega, "key", None) or "config"
    message = (omega.msg or str(omega)).strip().splitlines()[0]
    if isinstance(omega, (ConfigKeyError, ConfigAttributeError)) and "not in" in message:
        owner = getattr(omega.object_type, "__name__", None) or "this section"
        fields = list(getattr(omega.object_type, "__dataclass_fields__", {}))
        element = _list_element(outer)
        if element is not None and str(key) == str(omega.key):  # checked before it joined its list
            key, request = f"{element[0]}[{element[1]}].{key}", element[2] if element[0] == "derivatives" else None
        else:  # `derivatives.0.soures=x`: the request is in place, named by its full key
            parent = getattr(omega, "parent_node", None)
            in_place = re.fullmatch(r"derivatives\[\d+\]\.[^.]+", str(key)) and OmegaConf.is_dict(parent)
            request = OmegaConf.to_container(parent, resolve=False) if in_place else None
        if request is not None:
            name = _request_label(request, tuple(fields))
            owner = f"request {name!r}" if name else "this request"
        close = difflib.get_close_matches(str(omega.key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; keys: {', '.join(fields)}" if fields else "")
        message = f"no such key in {owner}{hint}"
    source = ""
    outer_first = str(outer).strip().splitlines()[0] if str(outer).strip() else ""
    if outer_first.startswith("Error merging '") or outer_first.startswith("In '"):
        source = f" (in {outer_first.split(chr(39))[1]})"
    return f"config error: {key}: {message}{source}"


RequestLabel = Callable[[Any, Tuple[str, ...]], Optional[str]]
_labels: List[RequestLabel] = []


def name_requests_with(label: RequestLabel) -> None:
    """How a message names a request of `derivatives` (`dz/dx`): `runner.config.requests`, which
    knows the default names, registers its `label` when imported (it imports this module, so
    this module cannot import it)."""
    _labels[:] = [label]


def _request_label(raw: Any, fields: Tuple[str, ...]) -> Optional[str]:
    return _labels[0](raw, fields) if _labels else None


def _list_element(err: BaseException) -> Optional[Tuple[str, int, Any]]:
    """(list key, index, the element as written) when OmegaConf refused an element of a list of
    structured configs (`derivatives`) while merging it in: its error names only the element's
    key (`sourcse`), so the merging frame (`_list_merge`: `dest`, `temp_target`, `item`) says which."""
    from omegaconf import OmegaConf

    found = None
    for module, function, local in _frames(err):
        if module == "omegaconf.basecontainer" and function == "_list_merge" and "temp_target" in local:
            found = local  # the innermost one
    if found is None or found.get("item") is None:
        return None
    item = found["item"]
    raw = OmegaConf.to_container(item, resolve=False) if OmegaConf.is_config(item) else item
    return str(found["dest"]._get_full_key(None)), len(found["temp_target"]), raw


def _frames(err: BaseException) -> Iterator[Tuple[Any, str, Dict[str, Any]]]:
    """(module, function, locals) of every frame of every exception in `err`'s chain."""
    for e in _chain(err):
        tb = e.__traceback__
        while tb is not None:
            yield tb.tb_frame.f_globals.get("__name__"), tb.tb_frame.f_code.co_name, tb.tb_frame.f_locals
            tb = tb.tb_next


def _hint(err: BaseException) -> Optional[Tuple[str, Optional[str]]]:
    """Hydra errors whose own words point the wrong way, reworded from what Hydra composed."""
    frames = list(_frames(err))
    found = _no_package(err, frames) or _primary_missing(frames)
    return (found, None) if found else _not_found(err, frames)


_NO_PACKAGE = (
    "{file} has no '# @package _global_' line: its keys landed under '{package}' "
    "(add that line as its first line, as conf/experiment/*.yaml do)"
)


def _no_package(err: BaseException, frames: List[Tuple[Any, str, Dict[str, Any]]]) -> Optional[str]:
    """An experiment file without `# @package _global_`: Hydra placed it under its group's
    package (`experiment`), so its keys are refused as `experiment: no such key`, or its
    defaults' overrides as `Could not override 'function@experiment.function'`."""
    import dataclasses

    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    from runner.config.schema import RunnerConfig

    omega = next((e for e in _chain(err) if isinstance(e, (ConfigKeyError, ConfigAttributeError))), None)
    runner_keys = {f.name for f in dataclasses.fields(RunnerConfig)}
    for module, function, local in frames:
        if function == "_compose_config_from_defaults_list" and omega is not None and "loaded" in local:
            default, loaded = local.get("default"), local["loaded"]
            package = getattr(default, "package", None)
            if not package or str(omega.full_key) != package or loaded.header.get("package"):
                continue
            placed = OmegaConf.select(loaded.config, package)
            if isinstance(placed, DictConfig) and set(placed.keys()) & runner_keys:
                return f"config error: {package}: " + _NO_PACKAGE.format(
                    file=_file_of(loaded, str(getattr(default, "config_path", ""))), package=package
                )
        if function == "ensure_overrides_used" and module == "hydra._internal.defaults_list":
            meta, key = local.get("meta"), str(local.get("key"))
            where = getattr(meta, "containing_config_path", None)
            if not where or "/" not in where:
                continue
            package = where.rpartition("/")[0].replace("/", ".")
            loaded = _cached(frames, where)
            if (
                loaded is not None
                and not loaded.header.get("package")
                and key.partition("@")[2].startswith(package + ".")
            ):
                return f"config error: {package}: " + _NO_PACKAGE.format(file=_file_of(loaded, where), package=package)
    return None


def _cached(frames: List[Tuple[Any, str, Dict[str, Any]]], config_path: str) -> Any:
    """The config Hydra loaded (and cached) for `config_path` in this composition, or None."""
    for _, function, local in frames:
        repo = local.get("caching_repo") if function == "_load_configuration_impl" else None
        if repo is not None:
            return getattr(repo, "cache", {}).get(f"config_path={config_path}")
    return None


def _file_of(loaded: Any, config_path: str) -> str:
    """`/home/me/conf/experiment/mine.yaml` for a config Hydra loaded from a folder."""
    scheme, _, root = str(loaded.path).partition("://")
    name = config_path if config_path.endswith(".yaml") else f"{config_path}.yaml"
    return str(Path(root) / name) if scheme == "file" else f"{loaded.path}/{name}"


_CONFIG_DIR = "a folder given with --config-dir DIR, searched beside the shipped configs (DIR/experiment/NAME.yaml)"


def _primary_missing(frames: List[Tuple[Any, str, Dict[str, Any]]]) -> Optional[str]:
    """`--config-path X` (or `-cp X`), a Hydra habit: it replaces the runner's primary config
    folder, and a relative X names a Python package beside the runner module."""
    here = Path(__file__).resolve().parent
    shipped = {(here / "conf").resolve(), (here.parent / "conf").resolve()}  # as runner.cli.config_dir
    for _, function, local in frames:
        if function == "_missing_config_error":
            sources, primary = local["self"].get_sources(), local.get("config_name") is None
        elif function == "config_not_found_error" and getattr(local.get("element"), "primary", False):
            sources, primary = local["repo"].get_sources(), True
        else:
            continue
        main = next((s for s in sources if s.provider == "main"), None)
        if main is None or (main.scheme() == "file" and Path(main.path).resolve() in shipped):
            return None  # the shipped folder: `--config-name` chose a config it lacks
        if main.scheme() == "pkg":
            what = f"names a Python package path relative to the runner module ({main.path!r}: not found)"
        elif not main.available():
            what = f"names a folder that is not there ({main.path})"
        else:
            what = f"replaces the runner's primary config, and {main.path} has no config.yaml" if primary else ""
        if what:
            return f"config error: --config-path (-cp): {what}; your own configs go in {_CONFIG_DIR}"
    return None


def _not_found(
    err: BaseException, frames: List[Tuple[Any, str, Dict[str, Any]]]
) -> Optional[Tuple[str, Optional[str]]]:
    """`experiment=NAME` chosen on the command line, with no such config: say whether a close
    name is shipped, and how to use a folder of one's own (`--config-dir`)."""
    import textwrap

    for _, function, local in frames:
        element, tree = local.get("element"), local.get("tree")
        if function != "config_not_found_error" or element is None or element.primary or tree is None:
            continue
        parent = tree.parent.node.get_config_path() if tree.parent is not None else None
        group, _, name = element.get_config_path().rpartition("/")
        if parent != "config" or not group or group.startswith("hydra/"):
            return None  # a file's defaults list, or Hydra's own groups: Hydra's words are right
        options = list(getattr(err, "options", None) or [])
        close = difflib.get_close_matches(name, options, n=1)
        mean = f"; did you mean {close[0]!r}?" if close else ""
        own = [s.path for s in local["repo"].get_sources() if s.scheme() == "file" and s.provider != "main"]
        if own:
            where = " or ".join(f"{d}/{group}/" for d in own)
            headline = f"config error: {group}: no config {name!r} in the shipped {group}/ or in {where}{mean}"
        else:
            headline = (
                f"config error: {group}: no shipped config {name!r}{mean} "
                f"(to use your own folder of configs: --config-dir DIR, with DIR/{group}/{name}.yaml)"
            )
        detail = textwrap.fill(f"available: {', '.join(options)}", 96) if options else None
        return headline, _indent(detail) if detail else None
    return None
