"""Finite differences of the job's own program, re-run by TensorFlow in float64.

`Forward` (:mod:`runner.verify.forward_pass`) re-runs the function at any point, with chosen
inputs or steps moved and the tape's held names kept fixed; `fd_jacobian` takes central (and one-sided) differences of it, one element at a time;
`kinks` tells a real kink from a smooth bend; `fd_reference` assembles the derivative a
request asks for, for every kind of SPEC.

Importing this module does not import TensorFlow; building a `Forward` does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runner.config.kinds import KINDS, MAX_FD_ELEMENTS
from runner.config.schema import Kind
from runner.config.spec import RequestSpec
from runner.verify.forward_pass import EXACT, Forward, Move, Unverifiable

# Sources larger than MAX_FD_ELEMENTS (runner/config/kinds.py, beside each kind's check cost,
# which the job's bounds add up) are not verified element by element: 2 runs per element.


# ---- finite differences ------------------------------------------------------------------


@dataclasses.dataclass
class Jacobian:
    central: np.ndarray  # f.shape + x.shape
    forward: np.ndarray
    backward: np.ndarray
    noise: float  # rounding noise of the differences, absolute
    steps: np.ndarray  # the step per element of x


def fd_jacobian(
    fun: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, level: int = 0, move: Move = EXACT
) -> Jacobian:
    """Central (and one-sided) differences of `fun` at `x0`, one element of x at a time,
    with steps and rounding for the dtype `move` says x is computed in."""
    x0 = _within_limit(x0)
    f0 = np.asarray(fun(x0), dtype=np.float64)
    flat = x0.ravel()
    central = np.zeros(f0.shape + (flat.size,))
    forward = np.zeros_like(central)
    backward = np.zeros_like(central)
    steps = np.zeros(flat.size)
    rel = move.rel(level)
    for j in range(flat.size):
        up, down, h_up, h_down, h = _moved(flat, j, rel, move)
        fp = np.asarray(fun(up.reshape(x0.shape)), dtype=np.float64)
        fm = np.asarray(fun(down.reshape(x0.shape)), dtype=np.float64)
        central[..., j] = (fp - fm) / (h_up + h_down)
        forward[..., j] = (fp - f0) / h_up
        backward[..., j] = (f0 - fm) / h_down
        steps[j] = h
    shape = f0.shape + x0.shape
    finite = f0[np.isfinite(f0)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    noise = 10 * move.eps * max(1.0, scale) / float(np.min(steps)) if steps.size else 0.0
    return Jacobian(
        central.reshape(shape), forward.reshape(shape), backward.reshape(shape), noise, steps.reshape(x0.shape)
    )


def _moved(flat: np.ndarray, j: int, rel: float, move: Move) -> Tuple[np.ndarray, np.ndarray, float, float, float]:
    """x moved up and down at element j by the relative step `rel`, as `move` rounds it, the
    steps actually representable, and the step asked for."""
    h = rel * max(1.0, abs(flat[j]))
    up, down = flat.copy(), flat.copy()
    up[j] += h
    down[j] -= h
    up, down = move.snap(up), move.snap(down)
    return up, down, up[j] - flat[j], flat[j] - down[j], h


def _within_limit(x0: Any) -> np.ndarray:
    """`x0` in float64, when element-wise differences may take it (one message for every caller)."""
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.size > MAX_FD_ELEMENTS:
        raise Unverifiable(f"the source has {x0.size} elements; finite differences take at most {MAX_FD_ELEMENTS}")
    return x0


def central_differences(
    fun: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, level: int = 0, move: Move = EXACT
) -> np.ndarray:
    """`fd_jacobian(...).central` without the one-sided differences (and the run at x0 they
    need): f.shape + x.shape, with the same steps."""
    x0 = _within_limit(x0)
    flat, rel, columns = x0.ravel(), move.rel(level), []
    for j in range(flat.size):
        up, down, h_up, h_down, _ = _moved(flat, j, rel, move)
        fp, fm = (np.asarray(fun(v.reshape(x0.shape)), dtype=np.float64) for v in (up, down))
        columns.append((fp - fm) / (h_up + h_down))
    if not columns:  # an empty source: the shape of f from one run
        return np.zeros(np.shape(fun(x0)) + x0.shape)
    return np.stack(columns, axis=-1).reshape(columns[0].shape + x0.shape)


def kinks(
    fun: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, jac: Jacobian, move: Move = EXACT
) -> List[Tuple[Tuple[int, ...], float, float]]:
    """Elements where the left and right slopes differ: (index into f.shape + x.shape, left, right).

    A smooth function's one-sided slopes differ by about h * |f''|, which shrinks with the
    step; a kink's differ by a jump that does not. Suspects are re-measured with a step
    eight times smaller, and only a jump that stays is reported.
    """
    jump = np.abs(jac.forward - jac.backward)
    suspect = np.argwhere(np.nan_to_num(jump, nan=0.0) > 1e-3 * np.maximum(1.0, np.abs(np.nan_to_num(jac.central))))
    out = []
    x0 = np.asarray(x0, dtype=np.float64)
    f0 = np.asarray(fun(x0), dtype=np.float64)
    nf = f0.ndim
    for idx in suspect[:8]:
        idx = tuple(int(i) for i in idx)
        xi = idx[nf:]
        h = float(jac.steps[xi]) / 8
        up, down = x0.copy(), x0.copy()
        up[xi] += h
        down[xi] -= h
        up, down = move.snap(up), move.snap(down)
        h_up, h_down = float(up[xi] - x0[xi]), float(x0[xi] - down[xi])
        if not h_up or not h_down:
            continue
        right = (np.asarray(fun(up))[idx[:nf]] - f0[idx[:nf]]) / h_up
        left = (f0[idx[:nf]] - np.asarray(fun(down))[idx[:nf]]) / h_down
        # the rounding of f in the dtype it is computed in, over the smaller step: in float32
        # it can exceed a smooth bend's jump, which must not read as a kink
        rounding = 20 * move.eps * max(1.0, abs(float(f0[idx[:nf]]))) / min(h_up, h_down)
        if abs(right - left) > max(0.5 * jump[idx], rounding):
            out.append((idx, float(left), float(right)))
    return out


@dataclasses.dataclass
class Reference:
    value: Any  # np.ndarray, or None where the tape does not connect the source
    method: str
    noise: float = 0.0
    kink: Optional[str] = None  # readable description of a non-differentiable point
    note: Optional[str] = None
    # the dtype the differences were taken in, when not float64 (code that does not take
    # it), and the relative tolerance that dtype's differences need
    precision: Optional[str] = None
    rtol: float = 0.0
    # the target is computed by the user's code: whether it uses a source is known only by running it
    opaque: bool = False
    # `noise` is the error of the differences measured by `measure_error`, not estimated
    measured: bool = False
    # the comparison with TensorFlow's value made with the reference (runner/verify/pointwise.py's Stats)
    stats: Any = None


def weights(req: RequestSpec, shape: Tuple[int, ...]) -> np.ndarray:
    """`output_gradients` broadcast to the target's shape: the arrays the spec evaluated once,
    which the tape used too."""
    if req.weights is None:
        return np.ones(shape)
    return np.broadcast_to(np.asarray(req.weights, dtype=np.float64), shape)


def tangent(req: RequestSpec, source: str, base: np.ndarray) -> np.ndarray:
    """The tangent of one source, as the spec evaluated it (the tape's very numbers)."""
    if req.tangents is None:
        return np.ones(base.shape)
    t = req.tangent(source)
    if t is None:
        raise Unverifiable(f"no tangent given for source {source!r}")
    return np.broadcast_to(np.asarray(t, dtype=np.float64), base.shape)


def _describe_kink(name: str, kink: Tuple[Tuple[int, ...], float, float], nf: int) -> str:
    idx, left, right = kink
    where = f"{name}[{', '.join(map(str, idx[nf:]))}]" if len(idx) > nf else name
    return f"non-differentiable point at {where}: left slope {left:.6g}, right slope {right:.6g}"


def fd_reference(
    fwd: Forward,
    req: RequestSpec,
    sources: Tuple[str, ...],
    combined: bool,
    batched: Optional[Callable[[], Optional[Reference]]] = None,
) -> Reference:
    """The derivative `req` asks for, by finite differences on `fwd`: its kind's rule in `FD_RULES`.

    Each source is moved alone; `combined` (jvp/hvp whose value is one tensor for all
    sources) moves all sources along their tangents together. `batched` (a target elementwise
    in its one source, a batch Jacobian: `batched_differences.batched_reference`) gives the
    reference first where it applies, every element in a few runs; None where it does not.
    """
    rule = FD_RULES.get(req.kind)
    if rule is None:
        raise Unverifiable(f"kind {req.kind!r} has no finite-difference check")
    fixed = KINDS[req.kind].order
    # a hessian and an hvp are second derivatives by nature: the run logs them as order 2
    if fixed is not None and req.order not in (1, fixed):
        raise Unverifiable(f"kind {req.kind} with order {req.order} has no finite-difference check")
    ref = batched() if batched is not None else None
    ref = ref if ref is not None else rule(fwd, req, sources, combined)
    move = coarsest(fwd, sources)
    if move.dtype is not None:
        nested = max(req.order, fixed or 1) > 1
        ref.precision = move.name
        ref.rtol = NARROW_RTOL.get(move.name, 0.2) * (10 if nested else 1)
    return ref


# The relative tolerance of differences taken in a narrower dtype than float64 (first
# order; ten times this for nested differences): above their rounding, eps / step, and
# truncation, step**2, at the steps `Move.rel` takes (float32: ~2e-5 each).
NARROW_RTOL = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 2e-1}


def coarsest(fwd: Forward, sources: Tuple[str, ...]) -> Move:
    """The least precise way any of `sources` is moved (the steps and rounding that rule)."""
    return max((fwd.move(s) for s in sources), key=lambda m: m.eps, default=EXACT)


def _target_of(fwd: Forward, req: RequestSpec, source: str) -> Callable[[np.ndarray], np.ndarray]:
    """The target as a function of one source, the rest held at the point."""
    return lambda s: fwd.target(req.target, {source: s})


def _fd_gradient(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool) -> Reference:
    (source,) = sources
    base = fwd.base
    t_of = _target_of(fwd, req, source)
    move = fwd.move(source)
    w = weights(req, base[req.target].shape)
    if req.order == 1:
        phi = lambda s: np.sum(w * t_of(s))  # noqa: E731 - the scalar TF differentiates
        jac = fd_jacobian(phi, base[source], 0, move)
        found = kinks(phi, base[source], jac, move)
        kink = _describe_kink(source, found[0], 0) if found else None
        return Reference(jac.central, "finite_difference", jac.noise, kink)

    def grad_at(level: int) -> Callable[[np.ndarray], np.ndarray]:
        if level == 0:
            return lambda s: fd_jacobian(lambda u: np.sum(w * t_of(u)), s, 0, move).central
        inner = grad_at(level - 1)
        return lambda s: fd_jacobian(lambda u: np.sum(inner(u)), s, level, move).central

    return Reference(grad_at(req.order - 1)(base[source]), "finite_difference", 0.0)


def _fd_jacobian(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool) -> Reference:
    (source,) = sources
    base = fwd.base
    t_of = _target_of(fwd, req, source)
    move = fwd.move(source)
    jac = fd_jacobian(t_of, base[source], 0, move)
    found = kinks(t_of, base[source], jac, move)
    kink = _describe_kink(source, found[0], base[req.target].ndim) if found else None
    return Reference(jac.central, "finite_difference", jac.noise, kink)


def _fd_batch_jacobian(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool) -> Reference:
    ref = _fd_jacobian(fwd, req, sources, combined)
    ref.value = batch_diagonal(ref.value, fwd.base[req.target].shape, fwd.base[sources[0]].shape)
    return ref


def _fd_hessian(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool) -> Reference:
    """The block (s, r) for `sources` (s, r) (a hessian by several sources), or (s, s) for (s,)."""
    return Reference(hessian_block(fwd, req, sources[0], sources[-1]), "finite_difference", 0.0)


def fd_block(fwd: Forward, req: RequestSpec, s: str, r: str, opaque: bool) -> Reference:
    """The block (s, r) of a hessian by several sources, by `fd_reference`; through the
    user's code (`opaque`) with its error measured."""
    sources = (s,) if r == s else (s, r)
    ref = fd_reference(fwd, req, sources, combined=False)
    ref.opaque = opaque
    if opaque:
        measure_error(fwd, req, sources, False, ref)
    return ref


def hessian_block(fwd: Forward, req: RequestSpec, s: str, r: str) -> np.ndarray:
    """The block (s, r) of the Hessian of sum(target), s.shape + r.shape, as TensorFlow
    builds it: the Jacobian by r (outer differences, larger steps) of the gradient by s
    (inner differences), every other source held at the point."""

    def gradient(at_r: np.ndarray) -> np.ndarray:
        moved = {r: at_r}
        at_s = at_r if r == s else fwd.base[s]
        return central_differences(lambda u: np.sum(fwd.target(req.target, {**moved, s: u})), at_s, 0, fwd.move(s))

    return central_differences(gradient, fwd.base[r], 1, fwd.move(r))


def _along_tangents(
    fwd: Forward, req: RequestSpec, sources: Tuple[str, ...]
) -> Tuple[Callable[[float], Dict[str, np.ndarray]], float]:
    """The sources moved by eps along their tangents, and the step unit (scale of the
    sources over the largest tangent) that keeps a step relative."""
    base = fwd.base
    tangents = {s: tangent(req, s, base[s]) for s in sources}

    def moved(eps: float) -> Dict[str, np.ndarray]:
        return {s: base[s] + eps * tangents[s] for s in sources}

    scale = max(max(1.0, float(np.max(np.abs(base[s])))) if base[s].size else 1.0 for s in sources)
    vmax = max((float(np.max(np.abs(v))) if v.size else 0.0) for v in tangents.values()) or 1.0
    return moved, scale / vmax


def _fd_jvp(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool) -> Reference:
    moved, unit = _along_tangents(fwd, req, req.sources)
    h = coarsest(fwd, sources).rel(0) * unit
    diff = (fwd.target(req.target, moved(h)) - fwd.target(req.target, moved(-h))) / (2 * h)
    return Reference(diff, "finite_difference", 0.0)


def _fd_hvp(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool) -> Reference:
    """The gradient (by differences) moved along the tangents (by differences).

    H v moves every source of the request along its tangent, whichever source's block is
    asked for: the gradient by `s` changes with the others too (the Hessian's cross terms).
    """
    moved, unit = _along_tangents(fwd, req, req.sources)
    h = coarsest(fwd, req.sources).rel(1) * unit
    out = {}
    for s in [sources[0]] if combined else sources:

        def grad(overrides: Dict[str, np.ndarray], s: str = s) -> np.ndarray:
            return fd_jacobian(
                lambda u: np.sum(fwd.target(req.target, {**overrides, s: u})), overrides[s], 0, fwd.move(s)
            ).central

        out[s] = (grad(moved(h)) - grad(moved(-h))) / (2 * h)
    return Reference(out[sources[0]], "finite_difference", 0.0)


FD_RULES: Dict[str, Callable[[Forward, RequestSpec, Tuple[str, ...], bool], Reference]] = {
    Kind.gradient.value: _fd_gradient,
    Kind.jacobian.value: _fd_jacobian,
    Kind.batch_jacobian.value: _fd_batch_jacobian,
    Kind.hessian.value: _fd_hessian,
    Kind.jvp.value: _fd_jvp,
    Kind.hvp.value: _fd_hvp,
}


def batch_diagonal(jac: np.ndarray, t_shape: Tuple[int, ...], s_shape: Tuple[int, ...]) -> np.ndarray:
    """From a full Jacobian (t.shape + s.shape) to `batch_jacobian`'s [b, t..., s...] blocks."""
    if not t_shape or not s_shape or t_shape[0] != s_shape[0]:
        raise Unverifiable(f"batch_jacobian needs a shared batch axis, got {list(t_shape)} and {list(s_shape)}")
    b = t_shape[0]
    ti, si = int(np.prod(t_shape[1:], dtype=int)), int(np.prod(s_shape[1:], dtype=int))
    full = jac.reshape(b, ti, b, si)
    blocks = np.stack([full[k, :, k, :] for k in range(b)])
    return blocks.reshape((b,) + tuple(t_shape[1:]) + tuple(s_shape[1:]))


# The second set of steps `measure_error` takes, relative to the first.
SECOND_STEPS = 0.25


def measure_error(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...], combined: bool, ref: Reference) -> None:
    """Measure the error of `ref`'s differences instead of estimating it: take them again
    with steps four times smaller and keep the largest difference between the two as
    `ref.noise`. Truncation error shrinks 16-fold with the step and rounding error grows
    4-fold, so the difference bounds the first set's error in either regime, and it scales
    with the function: a small loss's small gradient gets a small tolerance, which the
    estimate (rounding of numbers of size 1) would not give it. Used for the user's code,
    whose scale nothing else tells."""
    if ref.value is None or ref.kink is not None:
        return
    fwd.step_factor = SECOND_STEPS
    try:
        again = fd_reference(fwd, req, sources, combined).value
    finally:
        fwd.step_factor = 1.0
    a, b = np.asarray(ref.value, dtype=np.float64), np.asarray(again, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    ref.noise = 2.0 * float(np.max(np.abs(a - b)[both])) if both.any() else ref.noise
    ref.measured = bool(both.any())
