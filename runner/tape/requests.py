"""Answering derivative requests on real tapes: one rule per kind, in `RULES` (imports TensorFlow).

A request the kind table (:mod:`runner.config.kinds`) marks as recomputing (and any
gradient of order > 1) runs the function again from its sources on fresh tapes or a
`ForwardAccumulator` (see `_recomputed`); every other request asks the shared tape the
program ran the steps under, so that a non-persistent tape really refuses its second
request. Either way the kind's rule in `RULES` computes the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import tensorflow as tf

from runner.config.schema import Kind
from runner.config.spec import JobSpec, RequestSpec
from runner.tape.forward import Code, run_function

_UNCONNECTED = {"none": tf.UnconnectedGradients.NONE, "zero": tf.UnconnectedGradients.ZERO}


def answer(
    spec: JobSpec,
    evaluators: Dict[str, Any],
    env: Dict[str, Any],
    tape: Any,
    req: RequestSpec,
    code: Optional[Code] = None,
) -> Any:
    """The value of `req`: a tensor, None, or a mapping source -> value. Raises what TF raises."""
    if req.recomputes:
        return _recomputed(spec, evaluators, env, req, code)
    return _first_order(tape, req, env)


@dataclass(frozen=True)
class Ask:
    """What a rule works from: the first pass's tensors, and either the shared tape or
    (for a recomputing request) the function again, from the sources."""

    req: RequestSpec
    env: Dict[str, Any]
    shared: Optional[tf.GradientTape] = None
    forward: Optional[Callable[[], Any]] = None

    @property
    def sources(self) -> List[Any]:
        return [self.env[s] for s in self.req.sources]

    @property
    def target(self) -> Any:
        return self.env[self.req.target]

    @property
    def tape(self) -> tf.GradientTape:
        if self.shared is None:
            raise TypeError(f"kind {self.req.kind} asks the shared tape, but its request recomputes")
        return self.shared

    def again(self) -> Any:
        """The target computed again from the sources (on whatever tapes are open)."""
        if self.forward is None:
            raise TypeError(f"kind {self.req.kind} recomputes, but its request asks the shared tape")
        return self.forward()

    @property
    def unconnected(self) -> Any:
        return _UNCONNECTED[self.req.unconnected]


def _first_order(tape: tf.GradientTape, req: RequestSpec, env: Dict[str, Any]) -> Any:
    """A request the shared tape answers."""
    return RULES[req.kind](Ask(req, env, shared=tape))


def _recomputed(
    spec: JobSpec, evaluators: Dict[str, Any], env: Dict[str, Any], req: RequestSpec, code: Optional[Code]
) -> Any:
    """A higher-order gradient, Hessian, JVP or HVP, on fresh tapes / accumulators.

    The function is recomputed from the request's sources (the very tensors of the first
    pass: inputs, or step values held fixed), so the tapes record exactly the path from
    the sources to the target. Steps under `tape.stop_recording` keep their first-pass
    values: constants here, as they are to the shared tape. The user's code runs again too
    (its variables, sources by their paths, are read by the code itself), unless every
    output it gives is a source.
    """
    sources = {s: env[s] for s in req.sources}

    # steps under stop_recording keep their first-pass values; sources are held as given
    fixed = {**{s: env[s] for s in spec.tape.stop_recording}, **sources}

    def forward() -> Any:
        e: Dict[str, Any] = {i.name: sources.get(i.name, env[i.name]) for i in spec.inputs}
        return run_function(spec.steps, evaluators, e, code, fixed=fixed)[req.target]

    return RULES[req.kind](Ask(req, env, forward=forward))


# ---- one rule per kind ------------------------------------------------------------------


def _gradient(a: Ask) -> Any:
    req = a.req
    if a.forward is not None:  # order > 1: nested tapes
        return _nth_gradient(a.again, a.sources[0], req.order, a.unconnected)
    output_gradients = None
    if req.weights is not None:
        output_gradients = tf.constant(req.weights, dtype=a.target.dtype)
    grads = a.tape.gradient(a.target, a.sources, output_gradients=output_gradients, unconnected_gradients=a.unconnected)
    return _by_source(req, grads)


def _jacobian(a: Ask) -> Any:
    return _by_source(a.req, a.tape.jacobian(a.target, a.sources, **_jacobian_options(a.req)))


def _batch_jacobian(a: Ask) -> Any:
    # one source (checked in the config)
    return _by_source(a.req, [a.tape.batch_jacobian(a.target, a.sources[0], **_jacobian_options(a.req))])


def _hessian(a: Ask) -> Any:
    """The Jacobian of the gradient (of the target's sum, as `tf.hessians`): for one source
    of shape S, an array of shape S + S; for several, a mapping source -> source -> block."""
    req, sources = a.req, a.sources
    with tf.GradientTape(persistent=len(sources) > 1) as outer:
        outer.watch(sources)
        with tf.GradientTape() as inner:
            inner.watch(sources)
            target = a.again()
        grads = inner.gradient(target, sources, unconnected_gradients=a.unconnected)
    rows = []
    for g in grads:
        if g is None:
            rows.append([None] * len(sources))
        else:
            rows.append([outer.jacobian(g, s, **_jacobian_options(req)) for s in sources])
    if not req.several:
        return rows[0][0]
    return {x: dict(zip(req.sources, row)) for x, row in zip(req.sources, rows)}


def _jvp(a: Ask) -> Any:
    # one tensor for all sources: each moves along its tangent together
    with tf.autodiff.ForwardAccumulator(a.sources, _tangents(a)) as acc:
        target = a.again()
    return acc.jvp(target, unconnected_gradients=a.unconnected)


def _hvp(a: Ask) -> Any:
    """Forward over reverse: the Hessian of the target times the tangents."""
    primals = a.sources
    with tf.autodiff.ForwardAccumulator(primals, _tangents(a)) as acc:
        with tf.GradientTape() as tape:
            tape.watch(primals)
            target = a.again()
        grads = tape.gradient(target, primals, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return _by_source(a.req, [acc.jvp(g, unconnected_gradients=a.unconnected) for g in grads])


RULES: Dict[str, Callable[[Ask], Any]] = {
    Kind.gradient.value: _gradient,
    Kind.jacobian.value: _jacobian,
    Kind.batch_jacobian.value: _batch_jacobian,
    Kind.hessian.value: _hessian,
    Kind.jvp.value: _jvp,
    Kind.hvp.value: _hvp,
}


# ---- shared by the rules ------------------------------------------------------------------


def _nth_gradient(forward: Any, source: Any, order: int, unconnected: Any) -> Any:
    """d^n target / d source^n through n nested tapes (None as soon as a level is None)."""
    with tf.GradientTape() as tape:
        tape.watch(source)
        inner = forward() if order == 1 else _nth_gradient(forward, source, order - 1, unconnected)
    if inner is None:
        return None
    return tape.gradient(inner, source, unconnected_gradients=unconnected)


def _jacobian_options(req: RequestSpec) -> Dict[str, Any]:
    return {
        "unconnected_gradients": _UNCONNECTED[req.unconnected],
        "parallel_iterations": req.parallel_iterations,
        "experimental_use_pfor": req.experimental_use_pfor,
    }


def _by_source(req: RequestSpec, values: List[Any]) -> Any:
    return dict(zip(req.sources, values)) if req.several else values[0]


def _tangents(a: Ask) -> List[tf.Tensor]:
    """The configured tangent of each source, in its dtype, broadcast to its shape."""
    return [_tangent(a.req, s, a.env[s]) for s in a.req.sources]


def _tangent(req: RequestSpec, source: str, primal: Any) -> tf.Tensor:
    value = req.tangent(source)
    if value is None:
        raise ValueError(f"no tangent given for source {source!r}")
    return tf.broadcast_to(tf.constant(value, dtype=primal.dtype), tf.shape(primal))
