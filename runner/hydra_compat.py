"""Every use the runner makes of Hydra's (and OmegaConf's) internals, in one place.

Hydra's public API has no hook for what the runner's plugins do (apply value overrides to an
already composed config, flush the log handlers, subclass the basic sweeper) nor for what its
config guard does (judge each config as Hydra's own loader places it, read config files
through a source that refuses FIFOs and links out), so they use the private classes and
functions Hydra's own code uses. Each one is named here once, with what it stands for; when a
Hydra release moves one, this module is the only place to change (`tests/test_hydra_conformance.py`
runs Hydra's launcher suites, and against a Hydra pre-release when the package index has one).
`runner/config/hydra_guard.py` and `hydra_plugins/runner_launcher/` import from here.

`runner/errors.py` also names two of Hydra's private modules, as text: it reads Hydra's own
traceback frames to word a config error, importing nothing of them.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Tuple, Type

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

if TYPE_CHECKING:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

__all__ = [
    "ConfigLoaderImpl",
    "FileConfigSource",
    "loader_patch_points",
    "basic_sweeper",
    "apply_overrides",
    "configure_logging",
    "deprecation_warning",
    "flush_loggers",
    "get_omega_conf_dumper",
    "get_overrides_dirname",
    "raw_value",
    "share_child",
]


def basic_sweeper() -> Type["BasicSweeper"]:
    """Hydra's BasicSweeper class as it is now. Not imported once here: Hydra's plugin scan
    executes its module again whenever it rescans (as it does this package's plugin
    modules, but not this one), and a subclass made from a class of an earlier scan fails
    (`super(type, obj): obj must be an instance or subtype of type`)."""
    from hydra._internal.core_plugins import basic_sweeper as module

    return module.BasicSweeper


def apply_overrides(values: List[Override], cfg: DictConfig) -> None:
    """Hydra's second stage of composition (value overrides onto the composed config),
    raising what `load_configuration` raises."""
    try:
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
    except OmegaConfBaseException as e:
        raise ConfigCompositionException().with_traceback(sys.exc_info()[2]) from e


def get_overrides_dirname(overrides: List[Override], exclude_keys: List[str], item_sep: str, kv_sep: str) -> str:
    """hydra.job.override_dirname of a job, as Hydra 1.3 computes it. (Imported when called:
    Hydra 1.4 dropped it for the `${hydra_override_dirname:}` resolver, and an import error
    here would hide everything else a 1.4 run reports.)"""
    from hydra._internal.config_loader_impl import get_overrides_dirname as dirname

    return dirname(overrides=overrides, exclude_keys=exclude_keys, item_sep=item_sep, kv_sep=kv_sep)


def flush_loggers() -> None:
    """`hydra.core.utils._flush_loggers`: flush every logging handler (run_job does, after the task)."""
    try:
        from hydra.core.utils import _flush_loggers
    except ImportError:  # its body, as in Hydra 1.3
        for ref in getattr(logging, "_handlerList", []):
            try:
                ref().flush()
            except Exception:
                pass
        return
    _flush_loggers()


def configure_logging(container: Dict[str, Any]) -> None:
    """What `hydra.core.utils.configure_log` does with a resolved logging config."""
    try:
        from hydra._internal.logging_config import configure_logging as hydra_configure
    except ImportError:  # Hydra releases without it call dictConfig directly
        logging.config.dictConfig(container)
        return
    hydra_configure(container)


def deprecation_warning(message: str, stacklevel: int = 1) -> None:
    """Hydra's deprecation warning (an error under HYDRA_DEPRECATION_WARNINGS_AS_ERRORS)."""
    try:
        from hydra._internal.deprecation_warning import deprecation_warning as warn
    except ImportError:
        import warnings

        warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)
        return
    warn(message=message, stacklevel=stacklevel + 1)


def get_omega_conf_dumper() -> Any:
    """The YAML dumper `OmegaConf.to_yaml` uses."""
    from omegaconf._utils import get_omega_conf_dumper as dumper

    return dumper()


def raw_value(cfg: DictConfig, key: str) -> Any:
    """The value stored at `cfg[key]`, interpolations left as text (not resolved)."""
    return cfg._get_node(key)._value()  # type: ignore[union-attr]


def share_child(view: DictConfig, source: DictConfig, key: str) -> None:
    """Make `view[key]` the very node `source[key]` (its parent stays `source`), so one set
    of changes shows in both; OmegaConf's API would copy it."""
    view.__dict__["_content"][key] = source._get_node(key)


def node_walk(cfg: DictConfig, path: tuple, found: Callable[[Any], Any], missing: Any) -> Any:
    """The value `OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)` holds at
    `path`, given to `found`, or `missing` when the path ends in a container or goes through
    anything but plain mappings (None, ???, an interpolation)."""
    from omegaconf import Container

    node: Any = cfg
    for key in path:
        if not isinstance(node, DictConfig) or node._is_none() or node._is_missing() or node._is_interpolation():
            return missing
        try:
            node = node._get_child(key)
        except Exception:  # not a key of it (validate_and_normalize raised)
            return missing
    if node is None or isinstance(node, Container):
        return missing
    return found(node._value())


# ---- the config guard (runner/config/hydra_guard.py) -------------------------------------
# Hydra's loader, subclassed to judge each config as composed, and its file source, whose
# class name a replacement keeps (workers register Hydra's source again by that name).


def loader_patch_points() -> Tuple[Any, Any, Any]:
    """(hydra._internal.hydra, whose ConfigLoaderImpl the guard replaces; SourcesRegistry;
    Plugins), imported when the guard is installed."""
    from hydra._internal import hydra as hydra_internal
    from hydra._internal.sources_registry import SourcesRegistry
    from hydra.core.plugins import Plugins

    return hydra_internal, SourcesRegistry, Plugins
