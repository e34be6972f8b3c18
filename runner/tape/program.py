"""The tape program: run a validated `JobSpec` on a real `tf.GradientTape`.

The program does what the founding notebook does by hand: create the inputs, open one
tape with the configured options, watch what is to be watched, compute every step inside
it (steps listed in `tape.stop_recording` inside `tape.stop_recording()`), leave the
`with` block, and then ask the tape for each derivative in request order. First-order
requests (`gradient`, `jacobian`, `batch_jacobian`) all go to that one shared tape, so a
non-persistent tape really refuses its second request, and the RuntimeError TensorFlow
raises is recorded as the run's error.

Requests that need more than one tape (a `gradient` of `order` > 1, a `hessian`) or
forward mode (`jvp`, and `hvp`, forward-over-reverse) cannot be answered by the shared
tape: they run the function again on their own fresh tapes / `ForwardAccumulator`, and
leave the shared tape alone. How each kind is answered is its rule in
:mod:`runner.tape.requests`.

`tape.compile: function | xla` runs the whole program (forward pass and requests) as one
`tf.function` (XLA-compiled for `xla`). Compiled programs are cached per process, keyed on
the spec's structure, and the point is passed in as tensors: jobs that differ only in
point values reuse the traced program instead of tracing it again.

TensorFlow's warnings during the program (a watched integer tensor, ...) are captured
into `Outcome.warnings` instead of being left on stderr.

Importing this module imports TensorFlow; :mod:`runner.job` imports it only after the
config has been validated.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.platform import tf_logging  # home of log_first_n's counters

from runner.config.spec import JobSpec, RequestSpec
from runner.language.lowering import lower
from runner.tape import requests
from runner.tape.forward import Code, StepFailed, run_function

# How many times a compiled tape program has been traced in this process (tests read it).
TRACES = 0
# Compiled programs by the structure of their spec; bounded, oldest dropped first.
_COMPILED: "OrderedDict[tuple, _Compiled]" = OrderedDict()
_MAX_COMPILED = 32


@dataclass
class Failure:
    """The first failure of a run: where it happened and what TensorFlow said."""

    type: str
    message: str
    derivative: Optional[str] = None  # the request it hit
    step: Optional[str] = None  # or the step whose computation raised


@dataclass
class Derivative:
    request: RequestSpec
    value: Any  # np.ndarray, None (TF gave None), or {source: value}
    seconds: Optional[float]  # None when compiled (the requests run as one program)


@dataclass
class Outcome:
    values: Dict[str, np.ndarray] = field(default_factory=dict)
    derivatives: List[Derivative] = field(default_factory=list)
    error: Optional[Failure] = None
    seconds: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    # the run log's "tape" record: compile mode, whether this job traced, watched variables
    tape: Dict[str, Any] = field(default_factory=dict)


def run(spec: JobSpec, code: Optional[Code] = None) -> Outcome:
    """Run the job's tape program; never raises for what TensorFlow raises.

    `code`: the user's code (`runner.tape.user_code.UserCode`, built) when the function is a
    callable; its variables join the environment by path.
    """
    out = Outcome()
    with _captured_warnings() as caught:
        if spec.tape.compile == "eager":
            _run_eager(spec, out, code)
        else:
            _run_compiled(spec, out, code)
    out.warnings = caught
    return out


# ---- running: eagerly, or as a cached tf.function ---------------------------------------


def _evaluators(spec: JobSpec) -> Dict[str, Any]:
    return {s.name: lower(s.expr, tf.as_dtype(spec.constants_dtype)) for s in spec.steps}


def _run_eager(spec: JobSpec, out: Outcome, code: Optional[Code]) -> None:
    env: Dict[str, Any] = {}
    for inp in spec.inputs:
        value = spec.point[inp.name]
        if inp.kind == "variable":
            env[inp.name] = tf.Variable(value, dtype=inp.dtype, trainable=inp.trainable, name=inp.name)
        else:
            env[inp.name] = tf.constant(value, dtype=inp.dtype)
    env.update(_variables(code))
    result = _program(spec, _evaluators(spec), env, code, clock=time.perf_counter)
    out.values = {name: _numpy(v) for name, v in result.values.items()}
    out.derivatives = [Derivative(req, _numpy(v), s) for req, v, s in result.derivatives]
    out.error = result.failure
    out.seconds.update(result.seconds)
    out.tape = {"compile": "eager", "watched_variables": result.watched_variables}


def _run_compiled(spec: JobSpec, out: Outcome, code: Optional[Code]) -> None:
    key = _structure_key(spec, code)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = _Compiled(spec, code)
        while len(_COMPILED) > _MAX_COMPILED:
            _COMPILED.popitem(last=False)
    else:
        _COMPILED.move_to_end(key)
    traces_before = TRACES
    t0 = time.perf_counter()
    try:
        values, derivatives = compiled(spec)
    except Exception as err:  # raised while the compiled program ran (not while tracing)
        out.error = Failure(type(err).__name__, message(err))
        out.seconds["program"] = time.perf_counter() - t0
        out.tape = {"compile": spec.tape.compile, "traced": TRACES > traces_before}
        return
    out.seconds["program"] = time.perf_counter() - t0
    # tf.function returns dicts with sorted keys; give them back in the spec's order
    out.values = {name: _numpy(values[name]) for name in compiled.value_names if name in values}
    out.derivatives = [Derivative(req, _numpy(v), None) for req, v in zip(compiled.completed, derivatives)]
    out.error = compiled.failure
    out.tape = {
        "compile": spec.tape.compile,
        "traced": TRACES > traces_before,
        "traces": compiled.function.experimental_get_tracing_count(),
        "watched_variables": compiled.watched_variables,
    }


def _structure_key(spec: JobSpec, code: Optional[Code] = None) -> tuple:
    """Everything of a spec that shapes its graph; point values are left out on purpose.

    A job's own code (a fresh Keras layer, its variables) is never another job's: its
    program is its own.
    """
    return (
        id(code),
        spec.tape.compile,
        repr(spec.inputs),
        tuple((s.name, s.text) for s in spec.steps),
        repr(spec.tape),
        repr(spec.requests),
        spec.constants_dtype,
        tuple((name, np.shape(a)) for name, a in spec.point.items()),
    )


class _Compiled:
    """One spec structure's `tf.function`, its variables, and what its trace found.

    Variables are created once, outside the function (a `tf.function` may not create them
    on later calls), and assigned each job's point. Constants are passed as tensor
    arguments of fixed dtype and shape, so new values never cause a retrace. What tracing
    learns (the first failure, which requests completed) depends only on the structure,
    so it is kept here and stays right for every later call of the same trace.
    """

    def __init__(self, spec: JobSpec, code: Optional[Code]):
        self.spec = spec
        self.code = code
        self.evaluators = _evaluators(spec)
        self.variables = {
            i.name: tf.Variable(spec.point[i.name], dtype=i.dtype, trainable=i.trainable, name=i.name)
            for i in spec.inputs
            if i.kind == "variable"
        }
        self.value_names: List[str] = []
        self.completed: List[RequestSpec] = []
        self.failure: Optional[Failure] = None
        self.watched_variables: List[str] = []
        # autograph is for the user's code only (runner/tape/user_code.py converts it)
        self.function = tf.function(self._traced, jit_compile=spec.tape.compile == "xla", autograph=False)

    def _traced(self, constants: Dict[str, tf.Tensor]) -> Tuple[Dict[str, Any], List[Any]]:
        global TRACES
        TRACES += 1  # a Python side effect: runs only while tracing
        env = {i.name: self.variables[i.name] if i.kind == "variable" else constants[i.name] for i in self.spec.inputs}
        env.update(_variables(self.code))
        result = _program(self.spec, self.evaluators, env, self.code, clock=None)
        self.value_names = list(result.values)
        self.completed = [req for req, _, _ in result.derivatives]
        self.failure = result.failure
        self.watched_variables = result.watched_variables
        # variables are returned as their values (a tf.function cannot return a Variable)
        values = {k: tf.convert_to_tensor(v) for k, v in result.values.items()}
        return values, [v for _, v, _ in result.derivatives]

    def __call__(self, spec: JobSpec) -> Tuple[Dict[str, Any], List[Any]]:
        for name, var in self.variables.items():
            var.assign(spec.point[name])
        constants = {
            i.name: tf.constant(spec.point[i.name], dtype=i.dtype) for i in spec.inputs if i.kind == "constant"
        }
        return self.function(constants)


# ---- the program itself ---------------------------------------------------------------


def _variables(code: Optional[Code]) -> Dict[str, Any]:
    """The user's code's variables by path (`trainable_variables` names them), or none."""
    return dict(getattr(code, "variables", {})) if code is not None else {}


@dataclass
class _Result:
    values: Dict[str, Any]
    derivatives: List[Tuple[RequestSpec, Any, Optional[float]]]
    failure: Optional[Failure]
    seconds: Dict[str, float]
    watched_variables: List[str]


def _program(
    spec: JobSpec, evaluators: Dict[str, Any], env: Dict[str, Any], code: Optional[Code], clock: Any
) -> _Result:
    """The shared tape, the steps, then every request in order; stops at the first failure.

    Runs eagerly, or inside a `tf.function` while tracing (then `clock` is None: times
    measured while tracing would mean nothing).
    """
    now = clock or (lambda: 0.0)
    t0 = now()
    failure: Optional[Failure] = None
    try:
        with tf.GradientTape(
            persistent=spec.tape.persistent,
            watch_accessed_variables=spec.tape.watch_accessed_variables,
        ) as tape:
            for name in spec.tape.watch:
                tape.watch(env[name])
            run_function(spec.steps, evaluators, env, code, paused=spec.tape.stop_recording, pause=tape.stop_recording)
    except StepFailed as failed:  # TensorFlow's own errors: shapes, dtypes, ...
        failure = Failure(type(failed.error).__name__, message(failed.error), step=failed.step)
    except Exception as err:
        failure = Failure(type(err).__name__, message(err))
    watched = [name for name, v in env.items() if any(v is w for w in tape.watched_variables())]
    seconds = {"forward": now() - t0}
    derivatives: List[Tuple[RequestSpec, Any, Optional[float]]] = []
    t1 = now()
    if failure is None:
        for req in spec.requests:
            r0 = now()
            try:
                value = requests.answer(spec, evaluators, env, tape, req, code)
            except Exception as err:
                # a step (or the user's code) that raised when the request computed it again
                cause, step = (err.error, err.step) if isinstance(err, StepFailed) else (err, None)
                failure = Failure(type(cause).__name__, message(cause), derivative=req.name, step=step)
                break
            derivatives.append((req, value, now() - r0 if clock else None))
        seconds["derivatives"] = now() - t1
    return _Result(dict(env), derivatives, failure, seconds, watched)


# ---- TensorFlow's warnings, into the run log --------------------------------------------


class _ListHandler(logging.Handler):
    def __init__(self, sink: List[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def _captured_warnings() -> Iterator[List[str]]:
    """Collect what TensorFlow warns during the program (its `tensorflow` logger, absl's
    logger and Python warnings) into a list, instead of printing it to stderr."""
    caught: List[str] = []
    handler = _ListHandler(caught)
    loggers = [logging.getLogger("tensorflow"), logging.getLogger("absl")]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in loggers]
    # TensorFlow logs some warnings only the first n times per process (log_first_n);
    # every job's log should still list its own, also after earlier jobs in this process
    # (a sweep with the basic launcher, a test session), so the counts start afresh.
    getattr(tf_logging, "_log_counter_per_token", {}).clear()
    for lg in loggers:
        lg.handlers = [handler]
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as python_warnings:
            warnings.simplefilter("always")
            yield caught
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers = handlers
            lg.propagate = propagate
    caught.extend(f"{w.category.__name__}: {w.message}" for w in python_warnings)


# ---- conversions ----------------------------------------------------------------------


def _numpy(v: Any) -> Any:
    """Tensors (also inside mappings) as NumPy arrays; None stays None."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: _numpy(x) for k, x in v.items()}
    if isinstance(v, tf.IndexedSlices):
        v = tf.convert_to_tensor(v)
    if isinstance(v, tf.Tensor):
        # A read-only view of the tensor's own buffer (TensorFlow's documented zero-copy
        # way, `Tensor.numpy`'s docstring); `.numpy()` copies, 5.4 ms of a 10^6-point job.
        try:
            return np.asarray(memoryview(v))
        except (TypeError, ValueError, BufferError):  # a dtype with no buffer format (bfloat16, strings)
            pass
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


def message(err: BaseException) -> str:
    """TensorFlow's message, without the op-trace noise it sometimes appends."""
    text = str(err).strip()
    return text.split("\n")[0] if len(text) > 500 else text
