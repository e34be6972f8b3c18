"""The errors a user can cause, each naming the config key at fault."""

from __future__ import annotations

import difflib
import re
from typing import Any, List, Optional, Tuple


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


_QUOTED = re.compile(r"'([^'\n]{81,})'")
MAX_HEADLINE = 400


def _quoted_short(line: str) -> str:
    """`line` with every quoted piece cut to 80 characters, non-printables escaped."""
    line = _QUOTED.sub(lambda m: short(m.group(1), 80), line)
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
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = omega.full_key or getattr(omega, "key", None) or "config"
    message = (omega.msg or str(omega)).strip().splitlines()[0]
    if isinstance(omega, (ConfigKeyError, ConfigAttributeError)) and "not in" in message:
        owner = getattr(omega.object_type, "__name__", None) or "this section"
        fields = list(getattr(omega.object_type, "__dataclass_fields__", {}))
        close = difflib.get_close_matches(str(omega.key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; keys: {', '.join(fields)}" if fields else "")
        message = f"no such key in {owner}{hint}"
    source = ""
    outer_first = str(outer).strip().splitlines()[0] if str(outer).strip() else ""
    if outer_first.startswith("Error merging '") or outer_first.startswith("In '"):
        source = f" (in {outer_first.split(chr(39))[1]})"
    return f"config error: {key}: {message}{source}"
