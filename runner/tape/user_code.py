"""A user's own code as the function: imported from trusted modules, built once, called under the tape.

`load` imports the callable a `CallableSpec` names (runner/config/callables.py), walking its
dotted path only through modules the environment trusts (`RUNNER_TRUST`) and refusing an
object defined elsewhere (`mylib.system` that is really `os.system`), or instantiates its
`_target_` mapping with Hydra's `instantiate` once every `_target_` passed the same walk.
Whatever cannot be imported, does not exist or is not callable is a `ConfigError` (exit 2).

`UserCode.build` calls the code once at the point, outside any tape, as Keras does on a
first call: variables are created then, and every trainable variable the call read becomes
a source `trainable_variables` may name, by its path (`dense/kernel`). (A plain function run
eagerly, whose variables no request names, skips it: `UserCode.needs_build`.) After that the code
is called wherever the steps are computed (`runner.tape.forward.run_function`): under the
shared tape, on a recomputing request's fresh tapes, and by the finite-difference check.
Inside a `tf.function` (`tape.compile: function | xla`) it runs through autograph, so
Python control flow on tensors becomes graph control flow.

Importing this module imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from types import ModuleType
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf

from runner.config import trust
from runner.config.callables import TRAINABLE_VARIABLES, CallableSpec, targets
from runner.config.spec import JobSpec
from runner.errors import ConfigError
from runner.tape.forward import CALLABLE_STEP

KEY = CALLABLE_STEP  # the config key, and the step a failure of the code is logged under


def resolve(key: str, path: str, trusted: Tuple[str, ...]) -> Any:
    """The object at `path`, imported through trusted modules only; or a ConfigError."""
    trust.require(key, path, trusted)
    parts = path.split(".")
    first = next(i for i in range(1, len(parts)) if trust.is_trusted(".".join(parts[:i]), trusted))
    obj: Any = _import(key, ".".join(parts[:first]))
    if not trust.is_trusted(obj.__name__, trusted):  # the package put another module in its place
        raise ConfigError(key, f"{path!r} leads into module {obj.__name__!r}, which is not trusted ({trust.ENV})")
    for part in parts[first:]:
        if isinstance(obj, ModuleType) and not hasattr(obj, part):
            obj = _import(key, f"{obj.__name__}.{part}", missing=f"{path!r}: module {obj.__name__!r} has no {part!r}")
        elif not hasattr(obj, part):
            raise ConfigError(key, f"{path!r}: {getattr(obj, '__name__', type(obj).__name__)!r} has no {part!r}")
        else:
            obj = getattr(obj, part)
        if isinstance(obj, ModuleType) and not trust.is_trusted(obj.__name__, trusted):
            raise ConfigError(key, f"{path!r} leads into module {obj.__name__!r}, which is not trusted ({trust.ENV})")
    if inspect.isroutine(obj) or inspect.isclass(obj):
        home = getattr(obj, "__module__", None) or ""
        if not home:
            raise ConfigError(key, f"{path!r} is a built-in that no trusted module defines ({trust.ENV})")
        if not trust.is_trusted(home, trusted):
            raise ConfigError(
                key, f"{path!r} is defined in module {home!r}, which is not trusted ({trust.ENV}); name it there"
            )
    return obj


def _import(key: str, module: str, missing: Optional[str] = None) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name is not None and (module == err.name or module.startswith(err.name + ".")):
            raise ConfigError(
                key, missing or f"no module named {module!r} (the working folder is importable)"
            ) from None
        raise ConfigError(key, f"importing {module!r} failed: ModuleNotFoundError: {err}") from None
    except BaseException as err:  # the user's module raised (or exited) while importing: say what
        if isinstance(err, KeyboardInterrupt):
            raise
        raise ConfigError(key, f"importing {module!r} failed: {type(err).__name__}: {_first_line(err)}") from None


def _instantiate(spec: CallableSpec, trusted: Tuple[str, ...]) -> Any:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    config = spec.instantiation()
    for key, target in targets(KEY, config):
        resolve(key, target, trusted)  # imports them, through trusted modules only
    config.setdefault("_convert_", "all")  # plain lists and dicts for the user's code, not OmegaConf's
    try:
        return instantiate(config)
    except InstantiationException as err:
        cause = err.__cause__ or err
        raise ConfigError(
            KEY, f"instantiating {config['_target_']!r} failed: {type(cause).__name__}: {_first_line(cause)}"
        ) from None
    except BaseException as err:  # a factory calling sys.exit must not end the run as if it passed
        if isinstance(err, KeyboardInterrupt):
            raise
        raise ConfigError(
            KEY, f"instantiating {config['_target_']!r} failed: {type(err).__name__}: {_first_line(err)}"
        ) from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


@dataclasses.dataclass
class UserCode:
    """The loaded callable, how it takes the inputs, and the variables its first call read."""

    spec: CallableSpec
    fn: Any
    inputs: Tuple[str, ...]
    # the inputs' names in the order they are passed positionally, or () for keywords
    positional: Tuple[str, ...]
    variables: Dict[str, tf.Variable] = dataclasses.field(default_factory=dict)
    _graph_fn: Any = None

    @property
    def outputs(self) -> Tuple[str, ...]:
        return self.spec.outputs

    def __call__(self, env: Mapping[str, Any]) -> Dict[str, Any]:
        """The code's outputs by name, from the inputs in `env`; raises what the code raises
        (a TypeError for what it returns that is not a floating tensor or the declared mapping)."""
        fn = self.fn
        if tf.inside_function():  # a tf.function: Python control flow on tensors through autograph
            if self._graph_fn is None:
                self._graph_fn = tf.autograph.to_graph(_calling(self.fn))
            fn = self._graph_fn
        try:
            if self.positional:
                result = fn(*(env[name] for name in self.positional))
            else:
                result = fn(**{name: env[name] for name in self.inputs})
        except (KeyboardInterrupt, GeneratorExit):  # the person running the command stops it
            raise
        except BaseException as err:
            if isinstance(err, Exception):
                raise
            # SystemExit, asyncio.CancelledError: would end the run with no log (and a sweep
            # with it); the run's error instead, under the same type name
            why = f"function.callable called sys.exit({err.code!r})" if isinstance(err, SystemExit) else str(err)
            raise type(type(err).__name__, (Exception,), {})(why) from None
        return self._named(result)

    def _named(self, result: Any) -> Dict[str, Any]:
        if self.spec.mapping:
            if not isinstance(result, Mapping):
                raise TypeError(
                    f"function.callable returned {_what(result)}, but function.output declares a mapping with "
                    f"{', '.join(self.outputs)}"
                )
            keys = [str(k) for k in result]
            if sorted(keys) != sorted(self.outputs):
                raise TypeError(
                    f"function.callable returned a mapping with {', '.join(keys) or 'no keys'}; function.output "
                    f"declares {', '.join(self.outputs)}"
                )
            return {name: _tensor(name, result[name]) for name in self.outputs}
        if isinstance(result, Mapping):
            raise TypeError(
                f"function.callable returned a mapping ({', '.join(map(str, result))}); declare its names: "
                f"function.output: [{', '.join(map(str, result))}]"
            )
        return {self.outputs[0]: _tensor(self.outputs[0], result)}

    def record(self) -> Dict[str, Any]:
        """The run log's `code`: what ran, under which trust, and the variables it read."""
        trusted = trust.prefixes()
        return {
            "callable": self.spec.path if self.spec.path else self.spec.instantiation(),
            "trusted": list(trusted),
            "outputs": list(self.outputs),
            "called_with": f"positional ({', '.join(self.positional)})" if self.positional else "keywords",
            "variables": {path: {"shape": list(v.shape), "dtype": v.dtype.name} for path, v in self.variables.items()},
            "sources": sources(trusted),
        }

    def needs_build(self, spec: JobSpec) -> bool:
        """Whether the job calls the code once before the tape: to find the variables a
        request names (`trainable_variables`), to create an instantiated object's variables
        (a Keras layer builds on its first call) outside the tape and any `tf.function`, or
        before a compiled program traces it. A plain function run eagerly needs none: its
        first call is the one under the tape (a second forward pass saved, per job)."""
        wants = any(TRAINABLE_VARIABLES in r.sources for r in spec.requests)
        return wants or self.spec.path is None or spec.tape.compile != "eager"

    def build(self, spec: JobSpec) -> Optional[BaseException]:
        """Call the code once at the point, outside any tape; keep the trainable variables it
        read. Returns what the call raised (the run's error), or None."""
        env: Dict[str, Any] = {i.name: tf.constant(spec.point[i.name], dtype=i.dtype) for i in spec.inputs}
        try:
            with tf.GradientTape(watch_accessed_variables=True) as probe:
                self(env)
        except Exception as err:
            return err
        paths: Dict[str, tf.Variable] = {}
        taken = set(env) | set(self.outputs) | {s.name for s in spec.steps}
        for var in probe.watched_variables():
            path = str(getattr(var, "path", None) or var.name.split(":")[0])
            unique, n = path, 1
            while unique in paths or unique in taken:
                unique, n = f"{path}_{n}", n + 1
            paths[unique] = var
        self.variables = paths
        return None


def _calling(fn: Any) -> Any:
    """`fn(*args, **kwargs)` as a plain function autograph converts, and with it the user's
    code it calls (a Keras layer's `call`, a function with `if` on a tensor)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return call


def _what(value: Any) -> str:
    return f"a {type(value).__name__}"


def _tensor(name: str, value: Any) -> Any:
    if isinstance(value, tf.Variable):
        value = tf.convert_to_tensor(value)
    if not isinstance(value, tf.Tensor):
        raise TypeError(f"function.callable returned {_what(value)} for {name!r}, not a tensor")
    if not value.dtype.is_floating:
        raise TypeError(
            f"function.callable returned {name!r} as {value.dtype.name}; an output is differentiated, so it must be "
            "a floating-point tensor (float16, bfloat16, float32 or float64)"
        )
    return value


def load(spec: JobSpec) -> UserCode:
    """The job's code, imported or instantiated (a ConfigError for what cannot be)."""
    assert spec.callable is not None
    trusted = trust.prefixes()
    _working_folder_importable()
    _fresh_keras_names()
    if spec.callable.path is not None:
        fn = resolve(KEY, spec.callable.path, trusted)
        what = spec.callable.path
    else:
        fn = _instantiate(spec.callable, trusted)
        what = f"instantiating {spec.callable.instantiation()['_target_']!r}"
    if not callable(fn) or inspect.isclass(fn) and spec.callable.path is not None:
        name = type(fn).__name__
        kind = (
            "a class (instantiate it with _target_)" if inspect.isclass(fn) else f"a{'n' * (name[0] in 'aeiou')} {name}"
        )
        raise ConfigError(KEY, f"{what} gives {kind}, not a callable the inputs can be passed to")
    inputs = tuple(i.name for i in spec.inputs)
    return UserCode(spec.callable, fn, inputs, positional=_positional(fn, inputs))


def _positional(fn: Any, inputs: Tuple[str, ...]) -> Tuple[str, ...]:
    """How the inputs are passed: one input as the single positional argument; several in
    the order of the parameters they name, when they are its leading positional parameters
    (as `tf.custom_gradient` needs: it differentiates by positional arguments only); else
    () for keyword arguments."""
    if len(inputs) == 1:
        return inputs
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return ()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    leading = [p.name for p in params[: len(inputs)] if p.kind in kinds]
    return tuple(leading) if sorted(leading) == sorted(inputs) else ()


def bind(spec: JobSpec, code: UserCode) -> JobSpec:
    """The spec with each `sources: trainable_variables` given as the variables' paths (a
    mapping by path); a ConfigError when the code read none."""
    requests = []
    for i, req in enumerate(spec.requests):
        if TRAINABLE_VARIABLES in req.sources:
            if not code.variables:
                raise ConfigError(
                    f"derivatives[{i}].sources",
                    f"{TRAINABLE_VARIABLES}, but {spec.callable.text if spec.callable else 'the code'} created or "
                    "read no trainable variable when called at the point",
                )
            paths = tuple(code.variables)
            tangents = None if req.tangents is None else {p: req.tangents[TRAINABLE_VARIABLES] for p in paths}
            req = dataclasses.replace(req, sources=paths, several=True, tangents=tangents)
        requests.append(req)
    return dataclasses.replace(spec, requests=tuple(requests))


def _working_folder_importable() -> None:
    """The working folder is importable, as `python -m` makes it: also in a joblib, submitit
    or SLURM worker, whose `sys.path` need not start with it. The folder the command was
    started in (Hydra's `runtime.cwd`), never the run folder a config's `hydra.job.chdir`
    moved into: a config may not choose where trusted code is imported from."""
    import os
    import sys

    here = os.getcwd()
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            here = str(HydraConfig.get().runtime.cwd)
    except (ImportError, ValueError):  # no Hydra run: this process's folder is the one
        pass
    if here not in sys.path:
        sys.path.insert(0, here)


def _fresh_keras_names() -> None:
    """Keras names layers (and so variable paths, `dense/kernel`) from a per-process counter:
    a second job in the same process (a sweep, a test session) would get `dense_1/kernel`.
    Start it afresh for every job, so a job's paths do not depend on the jobs before it.
    Only the counter: `keras.backend.clear_session` would also drop settings (floatx, the
    dtype policy) a user's module set once when imported."""
    import sys

    if "keras" not in sys.modules:  # not imported yet: its counter starts at 0 anyway
        return
    try:
        import collections

        from keras.src.backend.common import global_state

        global_state.set_global_attribute("object_name_uids", collections.defaultdict(int))
    except (ImportError, AttributeError):  # another Keras: its names may carry a suffix
        pass


# The most trusted modules whose files `sources` fingerprints (a run log stays small).
MAX_SOURCES = 64


def sources(trusted: Tuple[str, ...]) -> Dict[str, Optional[str]]:
    """The sha256 of the file of every trusted module this process imported: the code that
    could have run, so that a log tells when it changed (`python -m runner.rerun` compares
    logs). None for a module without a file of its own; at most MAX_SOURCES, by name.

    Once per job, so the trusted names are found again only when the set of imported modules
    grew, and a file is hashed again only when its size or modification time changed."""
    import sys

    key = (trusted, len(sys.modules))
    if _trusted_names.get("key") != key:
        heads = tuple(trusted)
        found = [n for n in list(sys.modules) if n.startswith(heads) and trust.is_trusted(n, trusted)]
        _trusted_names.update(key=key, names=sorted(found)[:MAX_SOURCES])
    out: Dict[str, Optional[str]] = {}
    for name in _trusted_names["names"]:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        out[name] = _file_digest(path) if path else None
    return out


_trusted_names: Dict[str, Any] = {}
_digests: Dict[Tuple[str, int, int], str] = {}


def _file_digest(path: str) -> Optional[str]:
    import hashlib
    import os

    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        if key not in _digests:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            _digests[key] = h.hexdigest()
        return _digests[key]
    except OSError:
        return None
