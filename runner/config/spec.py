"""From a composed config to a validated job spec.

`build` reads the plain mapping Hydra composed (see :mod:`runner.config.schema`) and either
returns a `JobSpec` whose every name resolves, every expression parses and every point
is an array, or raises a `ConfigError` naming the key at fault. It runs before
TensorFlow is imported, so a broken config is refused at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from runner.config import points
from runner.config.schema import DTYPES, INPUT_KINDS, INPUT_OPTION_KEYS, RunnerConfig, Verify
from runner.errors import ConfigError
from runner.language import expression, shapes

_INSTANTIATION_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
_MISSING = "???"
COMPILE_MODES = ("eager", "function", "xla")
# Kinds a request answers by running the function again on its own tapes or accumulator
# (nested reverse mode, forward mode) instead of asking the shared tape; so does a
# gradient of order > 1.
RECOMPUTING_KINDS = ("hessian", "jvp", "hvp")


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str  # constant | variable
    dtype: str
    trainable: bool = True

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith(("float", "bfloat"))


@dataclass(frozen=True)
class StepSpec:
    name: str
    text: str
    expr: expression.Expr


@dataclass(frozen=True)
class TapeSpec:
    persistent: bool
    watch_accessed_variables: bool
    watch: Tuple[str, ...]  # the names to `tape.watch`, resolved from `watch: null`
    stop_recording: Tuple[str, ...]
    compile: str


@dataclass(frozen=True)
class RequestSpec:
    name: str
    kind: str
    target: str
    sources: Tuple[str, ...]
    several: bool  # sources given as a list of more than one: the value is a mapping
    order: int = 1
    unconnected: str = "none"
    output_gradients: Any = None
    tangents: Any = None
    parallel_iterations: Optional[int] = None
    experimental_use_pfor: bool = True

    @property
    def recomputes(self) -> bool:
        """Whether the request runs the function again on its own tapes or accumulator
        (nested reverse mode, forward mode) instead of asking the shared tape."""
        return self.kind in RECOMPUTING_KINDS or self.order > 1


@dataclass(frozen=True)
class ExpectSpec:
    error: Optional[str]
    derivatives: Dict[str, Any]
    rtol: float
    atol: float
    checks: Optional[str] = None  # "pass": every derivative's check must pass

    def declared(self) -> Dict[str, Any]:
        """What the run log records under `expect.declared`."""
        out: Dict[str, Any] = {}
        if self.error is not None:
            out["error"] = self.error
        if self.derivatives:
            out["derivatives"] = dict(self.derivatives)
            out["rtol"] = self.rtol
            out["atol"] = self.atol
        if self.checks is not None:
            out["checks"] = self.checks
        return out


@dataclass(frozen=True)
class LogSettings:
    """`log.*`: how the run log and its artifacts are written (see `schema.LogConfig`)."""

    max_inline_elements: int
    tf_verbose: bool
    tensorboard: bool
    plots: Optional[bool]  # None: plot a single run, not each job of a sweep


@dataclass(frozen=True)
class RunSettings:
    """How a job runs, as against what it computes: seeding, determinism, resume, logging."""

    seed: int
    determinism: bool
    resume: Optional[str]  # the sweep folder being resumed
    log: LogSettings


@dataclass(frozen=True)
class JobSpec:
    name: str
    inputs: Tuple[InputSpec, ...]
    steps: Tuple[StepSpec, ...]
    point: Dict[str, np.ndarray]
    tape: TapeSpec
    requests: Tuple[RequestSpec, ...]
    expect: Optional[ExpectSpec]
    settings: RunSettings
    constants_dtype: str = field(default="float32")
    verify: str = "auto"  # auto | symbolic | finite_difference | off


def settings(cfg: Mapping[str, Any]) -> RunSettings:
    """Validate `seed`, `determinism`, `resume` and `log.*` into `RunSettings`.

    Hydra types these at composition, but configs built in code reach `job.run` untyped, so
    each is checked here too. Kept apart from `build` because `job.run` needs `resume`
    before it builds anything: a job a resumed sweep already finished is not built again.
    """
    defaults = RunnerConfig()  # the schema holds every default, once
    seed = cfg.get("seed", defaults.seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError("seed", f"expected a whole number, got {seed!r}")
    determinism = _true_or_false("determinism", cfg.get("determinism", defaults.determinism))
    resume = cfg.get("resume", defaults.resume)
    if resume is not None and not isinstance(resume, str):
        raise ConfigError("resume", f"expected the path of a sweep folder to resume, or null, got {resume!r}")
    log = cfg.get("log")
    if log is None:
        log = {}
    if not isinstance(log, Mapping):
        raise ConfigError("log", f"expected a mapping ({', '.join(vars(defaults.log))}), got {log!r}")
    max_inline = log.get("max_inline_elements", defaults.log.max_inline_elements)
    if not isinstance(max_inline, int) or isinstance(max_inline, bool) or max_inline < 0:
        raise ConfigError("log.max_inline_elements", f"expected a whole number >= 0, got {max_inline!r}")
    tf_verbose = _true_or_false("log.tf_verbose", log.get("tf_verbose", defaults.log.tf_verbose))
    tensorboard = _true_or_false("log.tensorboard", log.get("tensorboard", defaults.log.tensorboard))
    plots = log.get("plots", defaults.log.plots)
    if plots is not None and not isinstance(plots, bool):
        raise ConfigError("log.plots", f"expected true, false or null, got {plots!r}")
    return RunSettings(
        seed=seed,
        determinism=determinism,
        resume=resume or None,  # "" resumes nothing, as null does
        log=LogSettings(max_inline, tf_verbose, tensorboard, plots),
    )


def _true_or_false(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def build(cfg: Mapping[str, Any], name: str = "run") -> JobSpec:
    """Validate a composed config (as a plain mapping) into a `JobSpec`."""
    run_settings = settings(cfg)  # first, as in `job.run`, so both name the same fault first
    function = cfg.get("function") or {}
    for key in cfg:  # function, point, derivatives, expect, ...: a config never instantiates
        _refuse_instantiation(str(key), cfg[key])
    _refuse_unknown_keys(cfg)
    inputs = _inputs(function.get("inputs"))
    steps = _steps(function.get("steps") or {}, {i.name for i in inputs})
    point = _point(cfg.get("point") or {}, inputs)
    tape = _tape(cfg.get("tape") or {}, inputs, steps)
    requests = _requests(cfg.get("derivatives") or [], inputs, steps, point)
    expect = _expect(cfg.get("expect"), [r.name for r in requests])
    verify = _verify(cfg.get("verify"), expect)
    shapes.check_job(steps, {k: v.shape for k, v in point.items()}, [i.dtype for i in inputs], len(requests))
    float_dtypes = {i.dtype for i in inputs if i.is_float}
    return JobSpec(
        name=cfg.get("name") or name,
        inputs=inputs,
        steps=steps,
        point=point,
        tape=tape,
        requests=requests,
        expect=expect,
        settings=run_settings,
        constants_dtype=float_dtypes.pop() if len(float_dtypes) == 1 else "float32",
        verify=verify,
    )


def _refuse_instantiation(key: str, node: Any) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k in _INSTANTIATION_KEYS:
                raise ConfigError(f"{key}.{k}", "instantiation keys are not allowed: a config never runs Python code")
            _refuse_instantiation(f"{key}.{k}", v)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            _refuse_instantiation(f"{key}[{i}]", v)


def _refuse_unknown_keys(cfg: Mapping[str, Any]) -> None:
    """A key the schema does not know is a typo (or `+tape.persistant=1`): name it.

    Hydra refuses most of them at composition; this catches what it lets through
    (appended keys, configs built in code) with the same message.
    """
    import dataclasses
    import difflib

    from runner.config import schema

    def check(prefix: str, node: Any, cls: type) -> None:
        if not isinstance(node, Mapping):
            return
        fields = [f.name for f in dataclasses.fields(cls)]
        for k in node:
            if k not in fields:
                close = difflib.get_close_matches(str(k), fields, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"keys: {', '.join(fields)}"
                raise ConfigError(f"{prefix}{k}", f"no such key in {cls.__name__}; {hint}")

    check("", cfg, schema.RunnerConfig)
    for key, cls in (
        ("function", schema.FunctionConfig),
        ("tape", schema.TapeConfig),
        ("expect", schema.ExpectConfig),
        ("log", schema.LogConfig),
    ):
        check(f"{key}.", cfg.get(key), cls)
    if isinstance(cfg.get("derivatives"), (list, tuple)):
        for i, req in enumerate(cfg["derivatives"]):
            check(f"derivatives[{i}].", req, schema.DerivativeConfig)


def _check_name(key: str, name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(key, f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)")
    if name in expression.RESERVED:
        raise ConfigError(key, f"{name!r} is a function or constant of the expression language; choose another name")
    return name


def _inputs(raw: Any) -> Tuple[InputSpec, ...]:
    if raw is None or raw == {} or raw == []:
        raise ConfigError("function.inputs", "no inputs declared; declare at least one, e.g. inputs: [x]")
    if isinstance(raw, (list, tuple)):
        return tuple(
            InputSpec(_check_name(f"function.inputs[{i}]", n), "constant", "float32") for i, n in enumerate(raw)
        )
    if not isinstance(raw, Mapping):
        raise ConfigError("function.inputs", f"expected a mapping name -> options or a list of names, got {raw!r}")
    out = []
    for name, opts in raw.items():
        key = f"function.inputs.{name}"
        _check_name(key, name)
        opts = {} if opts is None else opts
        if not isinstance(opts, Mapping):
            raise ConfigError(key, f"expected options such as {{kind: constant, dtype: float32}}, got {opts!r}")
        unknown = set(opts) - set(INPUT_OPTION_KEYS)
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", f"unknown option; allowed: {', '.join(INPUT_OPTION_KEYS)}")
        kind = opts.get("kind", "constant")
        if kind not in INPUT_KINDS:
            raise ConfigError(f"{key}.kind", f"expected one of {', '.join(INPUT_KINDS)}, got {kind!r}")
        dtype = opts.get("dtype", "float32")
        if dtype not in DTYPES:
            raise ConfigError(f"{key}.dtype", f"expected one of {', '.join(DTYPES)}, got {dtype!r}")
        trainable = opts.get("trainable", True)
        if not isinstance(trainable, bool):
            raise ConfigError(f"{key}.trainable", f"expected true or false, got {trainable!r}")
        if "trainable" in opts and kind != "variable":
            raise ConfigError(f"{key}.trainable", "only a variable can be trainable; set kind: variable")
        out.append(InputSpec(name, kind, dtype, trainable))
    return tuple(out)


def _steps(raw: Any, input_names: set) -> Tuple[StepSpec, ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError("function.steps", f"expected a mapping name -> expression, got {raw!r}")
    all_steps = list(raw)
    known = set(input_names)
    out = []
    for name, text in raw.items():
        key = f"function.steps.{name}"
        _check_name(key, name)
        if name in input_names:
            raise ConfigError(key, f"{name!r} is already an input; a step needs a name of its own")
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = repr(text)
        try:
            expr = expression.parse(text)
        except expression.ExpressionError as err:
            raise ConfigError(key, str(err), err.pointer()) from None
        for used, col in sorted(expression.names(expr).items(), key=lambda kv: kv[1]):
            if used in known or used in expression.CONSTANTS:
                continue
            if used == name:
                why = f"step {name!r} uses itself"
            elif used in all_steps:
                why = f"uses step {used!r}, which is defined later; steps may use only inputs and earlier steps"
            else:
                why = f"unknown name {used!r}; known here: {', '.join(sorted(known)) or 'none'}"
            raise ConfigError(key, f"{why} (column {col})", f"{text.strip()}\n{' ' * (col - 1)}^")
        known.add(name)
        out.append(StepSpec(name, text.strip(), expr))
    return tuple(out)


def _point(raw: Any, inputs: Tuple[InputSpec, ...]) -> Dict[str, np.ndarray]:
    if not isinstance(raw, Mapping):
        raise ConfigError("point", f"expected a mapping input -> value, got {raw!r}")
    by_name = {i.name: i for i in inputs}
    for name in raw:
        if name not in by_name:
            raise ConfigError(f"point.{name}", f"no input named {name!r}; inputs: {', '.join(by_name)}")
    for inp in inputs:
        if inp.name not in raw:
            raise ConfigError(
                f"point.{inp.name}", f"input {inp.name!r} has no point; give it a value, e.g. point.{inp.name}=1.0"
            )
    arrays = points.evaluate_all("point", {i.name: raw[i.name] for i in inputs})
    out = {}
    for inp in inputs:
        arr = arrays[inp.name]
        if not inp.is_float and arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise ConfigError(
                f"point.{inp.name}", f"input {inp.name!r} is {inp.dtype}, but its point is not a whole number"
            )
        out[inp.name] = arr
    return out


def _name_list(key: str, raw: Any, allowed: List[str], what: str) -> Tuple[str, ...]:
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        raise ConfigError(key, f"expected a name or a list of names, got {raw!r}")
    for n in items:
        if n not in allowed:
            raise ConfigError(key, f"unknown {what} {n!r}; known: {', '.join(allowed) or 'none'}")
    return tuple(items)


def _tape(raw: Mapping, inputs: Tuple[InputSpec, ...], steps: Tuple[StepSpec, ...]) -> TapeSpec:
    input_names = [i.name for i in inputs]
    if raw.get("watch") is None:
        watch = tuple(i.name for i in inputs if i.kind == "constant")
    else:
        watch = _name_list("tape.watch", raw.get("watch"), input_names, "input")
    stop = _name_list("tape.stop_recording", raw.get("stop_recording") or [], [s.name for s in steps], "step")
    compile_mode = str(raw.get("compile", "eager"))
    if compile_mode not in COMPILE_MODES:
        raise ConfigError("tape.compile", f"expected one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    return TapeSpec(
        persistent=bool(raw.get("persistent", False)),
        watch_accessed_variables=bool(raw.get("watch_accessed_variables", True)),
        watch=watch,
        stop_recording=stop,
        compile=compile_mode,
    )


def default_name(kind: str, target: str, sources: Tuple[str, ...], order: int) -> str:
    """`dy/dx`, `d2y/dx2`, `dz/d(x,w)`; other kinds as `hessian(y; x)`."""
    src = sources[0] if len(sources) == 1 else f"({','.join(sources)})"
    if kind == "gradient":
        if order == 1:
            return f"d{target}/d{src}"
        return f"d{order}{target}/d{src}{order}"
    return f"{kind}({target}; {', '.join(sources)})"


_SUPPORTED_KINDS = ("gradient", "jacobian", "batch_jacobian", "hessian", "jvp", "hvp")
# Kinds whose `order` is fixed: a Hessian and a Hessian-vector product are second order.
_SECOND_ORDER_KINDS = ("hessian", "hvp")
_FORWARD_KINDS = ("jvp", "hvp")  # they take `tangents`
_JACOBIAN_KINDS = ("jacobian", "batch_jacobian", "hessian")  # parallel_iterations, experimental_use_pfor
_UNCONNECTED = ("none", "zero")


def _requests(
    raw: Any, inputs: Tuple[InputSpec, ...], steps: Tuple[StepSpec, ...], point: Mapping[str, np.ndarray]
) -> Tuple[RequestSpec, ...]:
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("derivatives", f"expected a list of requests, got {raw!r}")
    names = [i.name for i in inputs] + [s.name for s in steps]
    depends = _dependencies(steps)
    out: List[RequestSpec] = []
    seen: Dict[str, int] = {}
    for i, req in enumerate(raw):
        key = f"derivatives[{i}]"
        if not isinstance(req, Mapping):
            raise ConfigError(key, f"expected a mapping with target and sources, got {req!r}")
        target = req.get("target")
        if target in (None, _MISSING):
            raise ConfigError(f"{key}.target", "missing; name the step or input to differentiate")
        if target not in names:
            raise ConfigError(f"{key}.target", f"unknown target {target!r}; known: {', '.join(names)}")
        raw_sources = req.get("sources")
        if raw_sources in (None, _MISSING, []):
            raise ConfigError(f"{key}.sources", "missing; name the input(s) or step(s) to differentiate by")
        sources = _name_list(f"{key}.sources", raw_sources, names, "source")
        if len(set(sources)) != len(sources):
            raise ConfigError(f"{key}.sources", f"a source is listed twice: {list(sources)}")
        kind = str(req.get("kind", "gradient"))
        if kind not in _SUPPORTED_KINDS:
            raise ConfigError(f"{key}.kind", f"unknown kind {kind!r}; supported: {', '.join(_SUPPORTED_KINDS)}")
        order = _order(key, kind, req.get("order", 1), sources)
        _check_options(key, kind, order, req)
        if kind == "batch_jacobian":
            _check_batch(key, target, sources, point)
        tangents = _tangents(key, kind, req.get("tangents"), sources, point) if kind in _FORWARD_KINDS else None
        if kind in RECOMPUTING_KINDS or order > 1:
            _check_independent_sources(key, sources, depends)
        name = req.get("name") or default_name(kind, target, sources, order)
        if name in seen:
            raise ConfigError(
                f"{key}.name", f"{name!r} is already the name of derivatives[{seen[name]}]; give this request a name"
            )
        seen[name] = i
        out.append(
            RequestSpec(
                name=name,
                kind=kind,
                target=target,
                sources=sources,
                several=not isinstance(raw_sources, str) and len(sources) > 1,
                order=order,
                unconnected=str(req.get("unconnected", "none")),
                output_gradients=req.get("output_gradients"),
                tangents=tangents,
                parallel_iterations=req.get("parallel_iterations"),
                experimental_use_pfor=bool(req.get("experimental_use_pfor", True)),
            )
        )
    return tuple(out)


def _order(key: str, kind: str, order: Any, sources: Tuple[str, ...]) -> int:
    if not isinstance(order, int) or isinstance(order, bool) or order < 1:
        raise ConfigError(f"{key}.order", f"expected a whole number >= 1, got {order!r}")
    if kind in _SECOND_ORDER_KINDS:
        if order not in (1, 2):
            raise ConfigError(f"{key}.order", f"a {kind} is second order; leave order out (or 2), got {order}")
        return 2
    if kind != "gradient" and order != 1:
        raise ConfigError(
            f"{key}.order",
            f"order > 1 is for kind gradient (nested tapes); use kind hessian for a {kind} of a gradient",
        )
    if order > 1 and len(sources) > 1:
        raise ConfigError(
            f"{key}.sources",
            f"an order-{order} gradient takes one source; use kind hessian for mixed second derivatives",
        )
    return order


def _check_options(key: str, kind: str, order: int, req: Mapping) -> None:
    """Refuse options the chosen kind does not take, naming the option."""
    unconnected = str(req.get("unconnected", "none"))
    if unconnected not in _UNCONNECTED:
        raise ConfigError(f"{key}.unconnected", f"expected none or zero, got {unconnected!r}")
    if req.get("output_gradients") is not None:
        if kind != "gradient" or order != 1:
            raise ConfigError(f"{key}.output_gradients", "only a first-order gradient takes output_gradients")
        points.evaluate(f"{key}.output_gradients", req["output_gradients"])
    if req.get("tangents") is not None and kind not in _FORWARD_KINDS:
        raise ConfigError(f"{key}.tangents", f"only kinds {' and '.join(_FORWARD_KINDS)} take tangents (forward mode)")
    pi = req.get("parallel_iterations")
    if pi is not None:
        if kind not in _JACOBIAN_KINDS:
            raise ConfigError(
                f"{key}.parallel_iterations", f"only kinds {', '.join(_JACOBIAN_KINDS)} take parallel_iterations"
            )
        if not isinstance(pi, int) or isinstance(pi, bool) or pi < 1:
            raise ConfigError(f"{key}.parallel_iterations", f"expected a whole number >= 1, got {pi!r}")
    pfor = req.get("experimental_use_pfor", True)
    if not isinstance(pfor, bool):
        raise ConfigError(f"{key}.experimental_use_pfor", f"expected true or false, got {pfor!r}")
    if pfor is False and kind not in _JACOBIAN_KINDS:
        raise ConfigError(
            f"{key}.experimental_use_pfor", f"only kinds {', '.join(_JACOBIAN_KINDS)} take experimental_use_pfor"
        )


def _check_batch(key: str, target: str, sources: Tuple[str, ...], point: Mapping[str, np.ndarray]) -> None:
    if len(sources) != 1:
        raise ConfigError(f"{key}.sources", "a batch_jacobian takes exactly one source")
    # Inputs' shapes are known before TensorFlow runs; a step's shape is TensorFlow's to check.
    for role, name in (("target", target), ("sources", sources[0])):
        if name in point and np.ndim(point[name]) < 2:
            raise ConfigError(
                f"{key}.{role}",
                f"a batch_jacobian needs a {role.rstrip('s')} of rank 2 or more ([batch, ...]); "
                f"{name!r} has shape {list(np.shape(point[name]))}",
            )


def _tangents(
    key: str, kind: str, raw: Any, sources: Tuple[str, ...], point: Mapping[str, np.ndarray]
) -> Dict[str, Any]:
    """Forward mode's direction: a mapping source -> value (a bare value for one source).

    Values are kept as the config gave them (so the spec stays printable and hashable by
    its text) after checking that each denotes an array of a fitting shape.
    """
    if raw is None:
        raise ConfigError(
            f"{key}.tangents", f"missing; a {kind} needs a direction: a value per source, e.g. tangents: 1.0"
        )
    if not (
        isinstance(raw, Mapping)
        and set(raw) <= set(sources)
        and raw
        and not set(raw) & set(points.GENERATORS + points.WRAPPERS)
    ):
        if len(sources) > 1:
            raise ConfigError(
                f"{key}.tangents", f"expected a mapping source -> value for the sources {', '.join(sources)}"
            )
        raw = {sources[0]: raw}
    missing = [s for s in sources if s not in raw]
    if missing:
        raise ConfigError(f"{key}.tangents", f"no tangent for source(s) {', '.join(missing)}")
    for s in sources:
        arr = points.evaluate(f"{key}.tangents.{s}", raw[s])
        if s in point and arr.ndim and arr.shape != np.shape(point[s]):
            raise ConfigError(
                f"{key}.tangents.{s}",
                f"shape {list(arr.shape)} does not match the source's shape {list(np.shape(point[s]))} (a number is broadcast)",
            )
    return {s: raw[s] for s in sources}


def _dependencies(steps: Tuple[StepSpec, ...]) -> Dict[str, set]:
    """For each step, every input and step it is computed from (transitively)."""
    deps: Dict[str, set] = {}
    for step in steps:
        direct = set(expression.names(step.expr)) - set(expression.CONSTANTS)
        deps[step.name] = set(direct).union(*(deps.get(d, set()) for d in direct))
    return deps


def _check_independent_sources(key: str, sources: Tuple[str, ...], depends: Dict[str, set]) -> None:
    """Requests that recompute the function hold their step sources fixed (see program.py):
    a step source computed from another source would then lose that path, so refuse it."""
    for s in sources:
        upstream = depends.get(s, set()) & set(sources)
        if upstream:
            raise ConfigError(
                f"{key}.sources",
                f"step {s!r} is computed from source {sorted(upstream)[0]!r}; a nested or forward-mode request "
                "needs sources that do not depend on one another",
            )


def _expect(raw: Any, request_names: List[str]) -> Optional[ExpectSpec]:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError("expect", f"expected a mapping (error, derivatives, rtol, atol), got {raw!r}")
    error = raw.get("error")
    if error is not None and (not isinstance(error, str) or not error.isidentifier()):
        raise ConfigError("expect.error", f"expected an exception type name such as RuntimeError, got {error!r}")
    derivs = dict(raw.get("derivatives") or {})
    for n in derivs:
        if n not in request_names:
            raise ConfigError(
                f"expect.derivatives.{n}", f"no derivative request is named {n!r}; names: {', '.join(request_names)}"
            )
    checks = raw.get("checks")
    if checks is not None and checks != "pass":
        raise ConfigError(
            "expect.checks", f"expected pass (every derivative's check must pass) or null, got {checks!r}"
        )
    if error is None and not derivs and checks is None:
        return None  # `expect` with nothing declared (e.g. expect.error=null) declares nothing
    return ExpectSpec(error, derivs, float(raw.get("rtol", 1e-6)), float(raw.get("atol", 1e-6)), checks)


def _verify(raw: Any, expect: Optional[ExpectSpec]) -> str:
    mode = "auto" if raw is None else str(getattr(raw, "value", raw))
    allowed = [v.value for v in Verify]
    if mode not in allowed:
        raise ConfigError("verify", f"expected one of {', '.join(allowed)}, got {raw!r}")
    if mode == "off" and expect is not None and expect.checks is not None:
        raise ConfigError("expect.checks", "declares that checks pass, but verify: off runs none; set verify: auto")
    return mode
