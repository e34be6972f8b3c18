"""From a composed config to a validated job spec.

`build` reads the plain mapping Hydra composed (see :mod:`runner.config.schema`) and either
returns a `JobSpec` whose every name resolves, every expression parses and every point
is an array, or raises a `ConfigError` naming the key at fault. It runs before
TensorFlow is imported, so a broken config is refused at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from runner.config import callables, points, settings
from runner.config import expect as expects
from runner.config.expect import ExpectSpec
from runner.config.requests import RequestSpec, build_requests, label, name_list
from runner.config.schema import DTYPES, INPUT_KINDS, INPUT_OPTION_KEYS, Compile, Verify
from runner.errors import ConfigError, short, true_or_false
from runner.language import expression, shapes

_INSTANTIATION_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
COMPILE_MODES = tuple(c.value for c in Compile)


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
class JobSpec:
    name: str
    inputs: Tuple[InputSpec, ...]
    steps: Tuple[StepSpec, ...]
    point: Dict[str, np.ndarray]
    tape: TapeSpec
    requests: Tuple[RequestSpec, ...]
    expect: Optional[ExpectSpec]
    settings: settings.RunSettings
    constants_dtype: str = field(default="float32")
    verify: str = "auto"  # auto | symbolic | finite_difference | off
    callable: Optional[callables.CallableSpec] = None  # the user's code, run before the steps


def screen(cfg: Mapping[str, Any]) -> None:
    """Refuse what no key may hold (instantiation keys) and keys the schema does not know.

    The first check of every config, before any key is read for its value.
    """
    for key in cfg:  # function, point, derivatives, expect, ...: a config never instantiates
        node = cfg[key]
        if key == "function" and isinstance(node, Mapping):  # but names trusted code (callables.py)
            node = {k: v for k, v in node.items() if k != "callable"}
        _refuse_instantiation(str(key), node)
    _refuse_unknown_keys(cfg)


def build(cfg: Mapping[str, Any], name: str = "run", run_settings: Optional[settings.RunSettings] = None) -> JobSpec:
    """Validate a composed config (as a plain mapping) into a `JobSpec`.

    `run_settings`: the config's settings when the caller has built them already (`job.run`
    needs `resume` first); else they are built here, after `screen`, as `job.run` does.
    """
    screen(cfg)
    if run_settings is None:
        run_settings = settings.build(cfg)
    given = cfg.get("name")
    if given is not None and not isinstance(given, str):
        raise ConfigError("name", f"expected text or null, got {short(given)}")
    limits = run_settings.limits
    function = cfg.get("function") or {}
    inputs = _inputs(function.get("inputs"))
    code = callables.build(function, _check_name)
    outputs = code.outputs if code else ()
    if code:
        callables.check_names(code, tuple(i.name for i in inputs))
    raw_steps = function.get("steps") or {}
    if isinstance(raw_steps, Mapping):
        shapes.check_steps(len(raw_steps), limits)
    steps = _steps(raw_steps, {i.name for i in inputs} | set(outputs))
    point = _point(cfg.get("point") or {}, inputs)
    tape = _tape(cfg.get("tape") or {}, inputs, steps)
    requests = build_requests(cfg.get("derivatives") or [], inputs, steps, point, limits.order, outputs)
    expect = expects.build(cfg.get("expect"), [r.name for r in requests])
    verify = _verify(cfg.get("verify"), expect)
    point_shapes = {k: v.shape for k, v in point.items()}
    # what the user's code gives has no shape until it runs: only the rest is bounded here
    known_steps, known_requests = callables.without_code(steps, requests, outputs)
    shapes.check_job(known_steps, point_shapes, [i.dtype for i in inputs], known_requests, verify, limits)
    float_dtypes = {i.dtype for i in inputs if i.is_float}
    return JobSpec(
        name=given or name,
        inputs=inputs,
        steps=steps,
        point=point,
        tape=tape,
        requests=requests,
        expect=expect,
        settings=run_settings,
        constants_dtype=float_dtypes.pop() if len(float_dtypes) == 1 else "float32",
        verify=verify,
        callable=code,
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

    def check(prefix: str, node: Any, cls: type, owner: str = "") -> None:
        if not isinstance(node, Mapping):
            return
        fields = [f.name for f in dataclasses.fields(cls)]
        for k in node:
            if k not in fields:
                close = difflib.get_close_matches(str(k), fields, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"keys: {', '.join(fields)}"
                raise ConfigError(f"{prefix}{k}", f"no such key in {owner or cls.__name__}; {hint}")

    check("", cfg, schema.RunnerConfig)
    for key, cls in (
        ("function", schema.FunctionConfig),
        ("tape", schema.TapeConfig),
        ("expect", schema.ExpectConfig),
        ("log", schema.LogConfig),
        ("limits", schema.LimitsConfig),
    ):
        check(f"{key}.", cfg.get(key), cls)
    if isinstance(cfg.get("derivatives"), (list, tuple)):
        fields = tuple(f.name for f in dataclasses.fields(schema.DerivativeConfig))
        for i, req in enumerate(cfg["derivatives"]):
            check(f"derivatives[{i}].", req, schema.DerivativeConfig, request_owner(req, fields))


def request_owner(req: Any, fields: Tuple[str, ...]) -> str:
    """How a message names a request of `derivatives`: `request 'dz/dx'`, or `this request`
    (as `runner.errors` does for Hydra's errors)."""
    name = label(req, fields)
    return f"request {name!r}" if name else "this request"


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
        trainable = true_or_false(f"{key}.trainable", opts.get("trainable", True))
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
            raise ConfigError(key, f"{name!r} is already an input or output; a step needs a name of its own")
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
        if not inp.is_float and arr.size:
            info = np.iinfo(inp.dtype)  # TensorFlow would fail on a number beyond it, or wrap it around
            low, high = arr.min(), arr.max()
            if low < info.min or high > info.max:
                raise ConfigError(
                    f"point.{inp.name}",
                    f"input {inp.name!r} is {inp.dtype}, which holds {info.min} to {info.max}; "
                    f"its point holds {short(low.item() if low < info.min else high.item())}",
                )
        out[inp.name] = arr
    return out


def _tape(raw: Mapping, inputs: Tuple[InputSpec, ...], steps: Tuple[StepSpec, ...]) -> TapeSpec:
    input_names = [i.name for i in inputs]
    if raw.get("watch") is None:
        watch = tuple(i.name for i in inputs if i.kind == "constant")
    else:
        watch = name_list("tape.watch", raw.get("watch"), input_names, "input")
    stop = name_list("tape.stop_recording", raw.get("stop_recording") or [], [s.name for s in steps], "step")
    compile_mode = str(raw.get("compile", "eager"))
    if compile_mode not in COMPILE_MODES:
        raise ConfigError("tape.compile", f"expected one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    return TapeSpec(
        persistent=true_or_false("tape.persistent", raw.get("persistent", False)),
        watch_accessed_variables=true_or_false(
            "tape.watch_accessed_variables", raw.get("watch_accessed_variables", True)
        ),
        watch=watch,
        stop_recording=stop,
        compile=compile_mode,
    )


def _verify(raw: Any, expect: Optional[ExpectSpec]) -> str:
    mode = "auto" if raw is None else str(getattr(raw, "value", raw))
    allowed = [v.value for v in Verify]
    if mode not in allowed:
        raise ConfigError("verify", f"expected one of {', '.join(allowed)}, got {raw!r}")
    if mode == "off" and expect is not None and expect.checks is not None:
        raise ConfigError("expect.checks", "declares that checks pass, but verify: off runs none; set verify: auto")
    return mode
