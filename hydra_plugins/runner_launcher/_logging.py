"""`hydra.core.utils.configure_log`, with the logging configs resolved once where they can be.

Every job reconfigures Python's logging twice: to `hydra.job_logging` when it starts
(its file handler writes the job's `<name>.log`) and back to `hydra.hydra_logging` when
it ends. `configure_log` resolves the config's interpolations each time, parsing them
anew (about 1 ms a job). Here the launcher's hydra_logging is resolved once, and the
job_logging once per composition when its only interpolations are the two that differ
by job in a known way, `${hydra.runtime.output_dir}` and `${hydra.job.name}` (Hydra's
default); anything else is resolved per job exactly as `configure_log` does.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Optional

from hydra.core.utils import configure_log
from omegaconf import DictConfig, OmegaConf

from runner import hydra_compat as _hydra_compat

_KNOWN = re.compile(r"\$\{(hydra\.runtime\.output_dir|hydra\.job\.name)\}")


def configure(container: Optional[Dict[str, Any]], verbose: Any) -> None:
    """What configure_log does, given the logging config already resolved (a fresh copy:
    `logging.config.dictConfig` consumes it)."""
    if container is None:
        configure_log(None, verbose)  # type: ignore[arg-type]
        return
    if container["root"] is not None:
        _hydra_compat.configure_logging(container)
    if isinstance(verbose, bool):
        if verbose:
            logging.getLogger().setLevel(logging.DEBUG)
    else:
        for name in [verbose] if isinstance(verbose, str) else verbose:
            logging.getLogger(name).setLevel(logging.DEBUG)


class JobLogging:
    """The job_logging config of one composition, resolved per job as cheaply as is exact."""

    def __init__(self, full: DictConfig):
        self.full = full
        node = full.hydra.job_logging
        self.raw = OmegaConf.to_container(node, resolve=False) if node is not None else None
        self.fast = self.raw is not None and all(_only_known(s) for s in _strings(self.raw))

    def container(self, output_dir: str) -> Optional[Dict[str, Any]]:
        if self.raw is None:
            return None
        if not self.fast:
            return OmegaConf.to_container(self.full.hydra.job_logging, resolve=True)  # type: ignore[return-value]
        values = {"hydra.runtime.output_dir": output_dir, "hydra.job.name": str(self.full.hydra.job.name)}
        return _substitute(self.raw, values)


def _only_known(text: str) -> bool:
    return "\\" not in text and "${" not in _KNOWN.sub("", text)


def _strings(node: Any):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def _substitute(node: Any, values: Dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if isinstance(node, str) and "${" in node:
        return _KNOWN.sub(lambda m: values[m.group(1)], node)
    return node
