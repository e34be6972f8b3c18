"""The tape program: run a validated `JobSpec` on a real `tf.GradientTape`.

The program does what the founding notebook does by hand: create the inputs, open one
tape with the configured options, watch what is to be watched, compute every step inside
it (steps listed in `tape.stop_recording` inside `tape.stop_recording()`), leave the
`with` block, and then ask the tape for each derivative in request order. Because every
request goes to that same tape, a non-persistent tape really refuses its second request,
and the RuntimeError TensorFlow raises is recorded as the run's error.

Importing this module imports TensorFlow; :mod:`runner.job` imports it only after the
config has been validated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf

from runner.lowering import lower
from runner.spec import JobSpec, RequestSpec

_UNCONNECTED = {"none": tf.UnconnectedGradients.NONE, "zero": tf.UnconnectedGradients.ZERO}


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
    value: Any  # np.ndarray, None (TF gave None), or {source: np.ndarray | None}
    seconds: float


@dataclass
class Outcome:
    values: Dict[str, np.ndarray] = field(default_factory=dict)
    derivatives: List[Derivative] = field(default_factory=list)
    error: Optional[Failure] = None
    seconds: Dict[str, float] = field(default_factory=dict)


def run(spec: JobSpec) -> Outcome:
    """Run the job's tape program; never raises for what TensorFlow raises."""
    out = Outcome()
    t0 = time.perf_counter()
    evaluators = {s.name: lower(s.expr, tf.as_dtype(spec.constants_dtype)) for s in spec.steps}
    env: Dict[str, Any] = {}
    for inp in spec.inputs:
        value = spec.point[inp.name]
        if inp.kind == "variable":
            env[inp.name] = tf.Variable(value, dtype=inp.dtype, trainable=inp.trainable, name=inp.name)
        else:
            env[inp.name] = tf.constant(value, dtype=inp.dtype)

    stop = set(spec.tape.stop_recording)
    current = None
    try:
        with tf.GradientTape(
            persistent=spec.tape.persistent,
            watch_accessed_variables=spec.tape.watch_accessed_variables,
        ) as tape:
            for name in spec.tape.watch:
                tape.watch(env[name])
            for step in spec.steps:
                current = step.name
                if step.name in stop:
                    with tape.stop_recording():
                        env[step.name] = evaluators[step.name](env)
                else:
                    env[step.name] = evaluators[step.name](env)
    except Exception as err:  # TensorFlow's own errors: shapes, dtypes, ...
        out.error = Failure(type(err).__name__, _message(err), step=current)
    out.seconds["forward"] = time.perf_counter() - t0
    out.values = {name: _numpy(v) for name, v in env.items()}
    if out.error:
        return out

    t1 = time.perf_counter()
    for req in spec.requests:
        r0 = time.perf_counter()
        try:
            value = _gradient(tape, req, env)
        except Exception as err:
            out.error = Failure(type(err).__name__, _message(err), derivative=req.name)
            break
        out.derivatives.append(Derivative(req, value, time.perf_counter() - r0))
    out.seconds["derivatives"] = time.perf_counter() - t1
    return out


def evaluate(spec: JobSpec, point: Dict[str, np.ndarray], dtype: Optional[str] = None) -> Dict[str, np.ndarray]:
    """The values of every input and step at `point`, with no tape: the plain forward pass.

    `dtype` (e.g. "float64") overrides every float input's dtype, for checks that need
    more precision than the run itself; raises what TensorFlow raises.
    """
    constants = tf.as_dtype(dtype or spec.constants_dtype)
    env: Dict[str, Any] = {}
    for inp in spec.inputs:
        d = dtype if (dtype and inp.is_float) else inp.dtype
        env[inp.name] = tf.constant(point[inp.name], dtype=d)
    for step in spec.steps:
        env[step.name] = lower(step.expr, constants)(env)
    return {name: _numpy(v) for name, v in env.items()}


def _gradient(tape: tf.GradientTape, req: RequestSpec, env: Dict[str, Any]) -> Any:
    sources = [env[s] for s in req.sources]
    output_gradients = None
    if req.output_gradients is not None:
        output_gradients = tf.constant(req.output_gradients, dtype=env[req.target].dtype)
    grads = tape.gradient(
        env[req.target],
        sources,
        output_gradients=output_gradients,
        unconnected_gradients=_UNCONNECTED[req.unconnected],
    )
    values = [_numpy(g) for g in grads]
    if req.several:
        return dict(zip(req.sources, values))
    return values[0]


def _numpy(v: Any) -> Optional[np.ndarray]:
    if v is None:
        return None
    if isinstance(v, tf.IndexedSlices):
        v = tf.convert_to_tensor(v)
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v)


def _message(err: BaseException) -> str:
    """TensorFlow's message, without the op-trace noise it sometimes appends."""
    text = str(err).strip()
    return text.split("\n")[0] if len(text) > 500 else text
