"""Which Python modules the person running the command trusts: `RUNNER_TRUST` (imports nothing).

A config may name a user's own code (`function.callable`), but it cannot make that code
trusted: only the environment of the command does, `RUNNER_TRUST=mylib,otherpkg.sub`, a
comma-separated list of module prefixes matched by whole dotted components (`mylib`
trusts `mylib` and `mylib.layers`, never `mylibx`). No config key reads it, and a config
file cannot set it (`hydra.job.env_set` is refused in files, runner/config/hydra_guard.py).

The check here is by name, before anything is imported; `runner.tape.user_code` checks
again what the import gives (a trusted module's attribute that is really `os.system` is
refused there, see `defined_in_trusted`).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Tuple

from runner.errors import ConfigError

ENV = "RUNNER_TRUST"


def prefixes(environ: Optional[Mapping[str, str]] = None) -> Tuple[str, ...]:
    """The trusted module prefixes, from `RUNNER_TRUST` (empty entries and spaces ignored)."""
    raw = (os.environ if environ is None else environ).get(ENV, "")
    out = []
    for part in raw.split(","):
        part = part.strip()
        if part and all(p.isidentifier() for p in part.split(".")):
            out.append(part)
    return tuple(out)


def is_trusted(module: str, trusted: Tuple[str, ...]) -> bool:
    """Whether `module` is a trusted prefix or lies below one, by whole dotted components."""
    return any(module == p or module.startswith(p + ".") for p in trusted)


def dotted(key: str, path: object) -> str:
    """A dotted path `pkg.module.name` as given, or a ConfigError naming `key`; no part may be
    one of Python's own attributes (`__globals__`, `__class__`, `__loader__`), which lead to
    objects no trusted module defines."""
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"expected a dotted path such as mylib.losses.huber, got {path!r}")
    parts = path.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise ConfigError(
            key, f"{path!r} is not a dotted path to a callable (module.name, each part a Python identifier)"
        )
    if any(p.startswith("__") and p.endswith("__") for p in parts):
        raise ConfigError(
            key, f"{path!r} goes through Python's own attributes (__...__); name a callable the module defines"
        )
    return path


def require(key: str, path: str, trusted: Optional[Tuple[str, ...]] = None) -> None:
    """Refuse `path` unless its module lies in a trusted prefix; nothing is imported.

    The callable itself is the last component, so `mylib.huber` needs `mylib` trusted:
    a prefix that covers the whole path (`RUNNER_TRUST=mylib.huber`) names no module.
    """
    trusted = prefixes() if trusted is None else trusted
    module = path.rsplit(".", 1)[0]
    if is_trusted(module, trusted):
        return
    now = f"RUNNER_TRUST is {','.join(trusted)}" if trusted else "RUNNER_TRUST is not set"
    # the narrowest trust that runs it: its own module (`runner` would trust all of the runner)
    raise ConfigError(
        key,
        f"module {module!r} is not trusted ({now}); a config cannot grant trust: to run its code, "
        f"start the command with {ENV}={module} in the environment",
    )
