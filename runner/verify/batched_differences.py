"""Finite differences of a grid in a few runs: every source element moved at once.

When they apply: the target is elementwise in the source (`tape_graph.not_elementwise`:
every operation on the way from the source to the target acts elementwise, with
broadcasting, and no user code lies between them), or the request is a `batch_jacobian`,
whose batch rows the user declares independent (as TensorFlow assumes).

Why they are exact: elementwise, target element i depends on one source element only,
j(i), the one broadcasting pairs it with (one source element may feed many target elements).
Moving every source element j by its own step h_j changes element i exactly as moving
j(i) alone would, so (f(x + h) - f(x - h))_i / (2 h_j(i)) is the very number the
per-element differences of :mod:`runner.verify.finite_differences` give for
d target_i / d source_j(i), and every other element of the Jacobian is exactly 0. Two runs
give the whole Jacobian's diagonal, whatever the grid's size; the one-sided differences that
tell a kink come from the same two runs and the run at the point, and a suspect kink is
measured again with steps eight times smaller, all suspects in two more runs. Each kind's
derivative is built from that diagonal: a gradient sums it over the target elements each
source element feeds (weighted by `output_gradients`); a gradient of order k and a Hessian
nest it (the gradient is elementwise in the source too); a Jacobian, a batch Jacobian and a
Hessian embed it in their dense shape (zeros elsewhere: TensorFlow's own value has that
size, which the job's memory bound admitted); an hvp moves the batched gradient along the
tangents. A `batch_jacobian` that is not elementwise moves one position of a batch row in
every row at once: 2 runs per position, whatever the batch size.

The steps are the per-element ones, h_j = rel * max(1, |x_j|), rounded by `Move.snap`;
each difference is divided by its own element's step. Imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from runner.config.kinds import MAX_FD_ELEMENTS
from runner.config.schema import Kind
from runner.config.spec import JobSpec, RequestSpec
from runner.verify.finite_differences import Reference, _along_tangents, coarsest, weights
from runner.verify.forward_pass import EXACT, Forward, Move, Unverifiable, empty
from runner.verify.tape_graph import not_elementwise

Fun = Callable[[np.ndarray], np.ndarray]
Spread = Callable[[np.ndarray], np.ndarray]  # a source-shaped array -> the value's shape


@dataclasses.dataclass
class Diagonal:
    """The derivative of each element v of a value by the one source element that moves it."""

    central: np.ndarray  # the value's shape
    noise: float  # rounding noise of the differences, absolute
    kink: Optional[Tuple[Tuple[int, ...], float, float]] = None  # (index into the value, left, right)


def _steps(x0: np.ndarray, rel: float) -> np.ndarray:
    """Each element's own step, rel * max(1, |x_j|) (in place: a grid may hold 10^7 numbers)."""
    h = np.abs(x0, out=np.empty_like(x0))  # an array even of a scalar, to work in place
    np.maximum(h, 1.0, out=h)
    h *= rel
    return h


def _own(value: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """`value` as float64 that may be written in place: copied when it is read-only or may
    share memory with the moved source (a target that is the source itself)."""
    a = np.asarray(value, dtype=np.float64)
    return a if a.flags.writeable and not np.may_share_memory(a, moved) else a.copy()


def _max_abs(a: np.ndarray) -> float:
    """The largest finite |a|, 0 for none."""
    # max and -min, not max(|a|): no array of |a| (80 MB at 10^7 numbers); NaN and inf fall through
    top = max(float(np.max(a)), -float(np.min(a))) if a.size else 0.0
    if np.isfinite(top):
        return top
    finite = np.abs(a[np.isfinite(a)])
    return float(finite.max()) if finite.size else 0.0


def diagonal(
    fun: Fun, x0: np.ndarray, spread: Spread, level: int = 0, move: Move = EXACT, f0: Optional[np.ndarray] = None
) -> Diagonal:
    """Central differences of an elementwise `fun` at `x0`, every element moved at once (2 runs).

    `spread` takes a source-shaped array to the value's shape (broadcasting, or the identity).
    Given `f0` (the value at x0), the one-sided differences are taken too, and kinks sought.
    The arrays are worked on in place where they can be: fresh memory is slow at 10^7 numbers.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    h = _steps(x0, move.rel(level))
    up = move.snap(np.add(x0, h, out=empty(x0.shape)))  # aligned: TensorFlow reads it without a copy
    fp = _own(fun(up), up)  # worked on in place below
    h_up = np.subtract(up, x0, out=up)  # the steps as the dtype represents them
    down = move.snap(np.subtract(x0, h, out=empty(x0.shape)))
    fm = _own(fun(down), down)
    h_down = np.subtract(x0, down, out=down)
    noise = 10 * move.eps * max(1.0, _max_abs(fp if f0 is None else f0)) / float(h.min()) if h.size else 0.0
    np.add(h_up, h_down, out=h)
    central = np.subtract(fp, fm, out=np.empty_like(fp))
    central /= spread(h)
    out = Diagonal(central, noise)
    if f0 is not None:
        fp -= f0  # the forward difference, and the backward one, to the jump between them
        fp /= spread(h_up)
        np.subtract(f0, fm, out=fm)
        fm /= spread(h_down)
        fp -= fm
        jump = np.abs(fp, out=fp)
        del fm
        out.kink = _kink(fun, x0, f0, central, jump, spread, h, move)
    return out


def _kink(
    fun: Fun,
    x0: np.ndarray,
    f0: np.ndarray,
    central: np.ndarray,
    jump: np.ndarray,
    spread: Spread,
    h: np.ndarray,
    move: Move,
) -> Optional[Tuple[Tuple[int, ...], float, float]]:
    """The first element (in order) whose left and right slopes differ, as `kinks` of
    :mod:`runner.verify.finite_differences` tells it: suspects, whose one-sided slopes differ
    (`jump`), are measured again with steps eight times smaller (`h` / 16, `h` being the
    up and down steps together), all at once; a kink is a jump that stays."""
    limit = np.abs(central, out=np.empty_like(central))
    np.fmax(limit, 1.0, out=limit)  # NaN: 1
    limit *= 1e-3
    suspect = jump > limit  # never where the jump is NaN
    del limit
    if not suspect.any():
        return None
    # the source elements that move a suspect: where the spread of an element's own index hits one
    owner = spread(np.arange(x0.size, dtype=np.int64).reshape(x0.shape))
    flat = np.zeros(x0.size)
    at = np.unique(owner[suspect])
    flat[at] = h.ravel()[at] / 16
    small = flat.reshape(x0.shape)
    up, down = move.snap(x0 + small), move.snap(x0 - small)
    h_up, h_down = spread(up - x0)[suspect], spread(x0 - down)[suspect]
    right = (np.asarray(fun(up), dtype=np.float64)[suspect] - f0[suspect]) / h_up
    left = (f0[suspect] - np.asarray(fun(down), dtype=np.float64)[suspect]) / h_down
    least = np.minimum(h_up, h_down)
    # the rounding of f in its dtype over the smaller step: a smooth bend's jump must not read as a kink
    rounding = 20 * move.eps * np.maximum(1.0, np.abs(f0[suspect])) / np.where(least > 0, least, np.inf)
    real = (least > 0) & (np.abs(right - left) > np.maximum(0.5 * jump[suspect], rounding))
    if not real.any():
        return None
    k = int(np.argmax(real))
    idx = tuple(int(i) for i in np.argwhere(suspect)[k])
    return idx, float(left[k]), float(right[k])


def reduce_to(a: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast array back to `shape`: each source element's share of the target."""
    lead = a.ndim - len(shape)
    out = a.sum(axis=tuple(range(lead))) if lead else a
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and out.shape[i] != 1)
    return out.sum(axis=axes, keepdims=True) if axes else out


def _broadcaster(t_shape: Tuple[int, ...], s_shape: Tuple[int, ...]) -> Spread:
    if len(s_shape) > len(t_shape) or any(s not in (1, t) for s, t in zip(s_shape[::-1], t_shape[::-1])):
        raise Unverifiable(f"the source's shape {list(s_shape)} does not broadcast to the target's {list(t_shape)}")
    return lambda a: np.broadcast_to(a, t_shape)


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def _describe(name: str, kink: Tuple[Tuple[int, ...], float, float], owner: Tuple[int, ...]) -> str:
    _, left, right = kink
    where = f"{name}[{', '.join(map(str, owner))}]" if owner else name
    return f"non-differentiable point at {where}: left slope {left:.6g}, right slope {right:.6g}"


def _owner(idx: Tuple[int, ...], s_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The source element broadcasting pairs target element `idx` with."""
    tail = idx[len(idx) - len(s_shape) :] if s_shape else ()
    return tuple(0 if n == 1 else i for i, n in zip(tail, s_shape))


# ---- one rule per kind -------------------------------------------------------------------


def _gradient_of(fwd: Forward, req: RequestSpec, source: str) -> Fun:
    """s -> the weighted target summed to the source's shape: elementwise in s, its diagonal
    derivative is the gradient (what TensorFlow gives for a non-scalar target)."""
    s_shape = fwd.base[source].shape
    if req.weights is None:  # no product with ones: a grid may hold 10^7 numbers
        return lambda s: reduce_to(fwd.target(req.target, {source: s}), s_shape)
    w = weights(req, fwd.base[req.target].shape)
    return lambda s: reduce_to(w * fwd.target(req.target, {source: s}), s_shape)


def _gradient(fwd: Forward, req: RequestSpec, source: str) -> Reference:
    base, move = fwd.base, fwd.move(source)
    phi = _gradient_of(fwd, req, source)
    if req.order == 1:
        f0 = base[req.target] if req.weights is None else weights(req, base[req.target].shape) * base[req.target]
        d = diagonal(phi, base[source], _identity, 0, move, f0=reduce_to(f0, base[source].shape))
        kink = _describe(source, d.kink, d.kink[0]) if d.kink else None
        return Reference(d.central, "finite_difference", d.noise, kink)
    return Reference(_nested(phi, base[source], req.order, move), "finite_difference", 0.0)


def _nested(phi: Fun, x0: np.ndarray, order: int, move: Move) -> np.ndarray:
    """The order-th derivative of each element of the elementwise `phi` by its own element,
    the outer levels with larger steps (2**order runs)."""

    def level(k: int) -> Fun:
        if k == 0:
            return lambda s: diagonal(phi, s, _identity, 0, move).central
        inner = level(k - 1)
        return lambda s: diagonal(inner, s, _identity, k, move).central

    return level(order - 1)(x0)


def _dense(
    diag: np.ndarray, t_shape: Tuple[int, ...], s_shape: Tuple[int, ...], rows: Optional[int] = None
) -> np.ndarray:
    """The Jacobian t.shape + s.shape whose only nonzero elements are `diag`, each target
    element's derivative by the source element broadcasting pairs it with; with `rows`, the
    `batch_jacobian` blocks [b, t[1:]..., s[1:]...] of the leading `rows` batch rows."""
    s_size = int(np.prod(s_shape, dtype=np.int64))
    if rows is None:
        out_shape, rows = tuple(t_shape) + tuple(s_shape), 1
    else:
        out_shape = tuple(t_shape) + tuple(s_shape[1:])
    per_row = s_size // rows if rows else 0
    owner = np.broadcast_to(np.arange(s_size).reshape(s_shape), t_shape).reshape(rows, -1)
    owner = owner - per_row * np.arange(rows)[:, None]  # the index within the row
    full = np.zeros(owner.shape + (per_row,))
    b, t = np.indices(owner.shape)
    full[b, t, owner] = np.asarray(diag).reshape(owner.shape)
    return full.reshape(out_shape)


def _jacobian_diagonal(fwd: Forward, req: RequestSpec, source: str) -> Tuple[Diagonal, Optional[str]]:
    base, t_shape, s_shape = fwd.base, fwd.base[req.target].shape, fwd.base[source].shape
    spread = _broadcaster(t_shape, s_shape)
    t_of: Fun = lambda s: fwd.target(req.target, {source: s})  # noqa: E731
    d = diagonal(t_of, base[source], spread, 0, fwd.move(source), f0=base[req.target])
    kink = _describe(source, d.kink, _owner(d.kink[0], s_shape)) if d.kink else None
    return d, kink


def _jacobian(fwd: Forward, req: RequestSpec, source: str) -> Reference:
    d, kink = _jacobian_diagonal(fwd, req, source)
    dense = _dense(d.central, fwd.base[req.target].shape, fwd.base[source].shape)
    return Reference(dense, "finite_difference", d.noise, kink)


def _batch_jacobian(fwd: Forward, req: RequestSpec, source: str) -> Reference:
    t_shape, s_shape = fwd.base[req.target].shape, fwd.base[source].shape
    if len(t_shape) != len(s_shape):  # the batch axes are not broadcasting's pairs: by position
        return _by_position(fwd, req, source)
    if not t_shape or t_shape[0] != s_shape[0]:
        raise Unverifiable(f"batch_jacobian needs a shared batch axis, got {list(t_shape)} and {list(s_shape)}")
    d, kink = _jacobian_diagonal(fwd, req, source)
    return Reference(_dense(d.central, t_shape, s_shape, rows=s_shape[0]), "finite_difference", d.noise, kink)


def _hessian(fwd: Forward, req: RequestSpec, source: str) -> Reference:
    """Of one source: d2/ds_j2 of sum(target) on the diagonal, exactly 0 elsewhere."""
    x0 = fwd.base[source]
    s_of: Fun = lambda s: reduce_to(fwd.target(req.target, {source: s}), x0.shape)  # noqa: E731
    diag = _nested(s_of, x0, 2, fwd.move(source))
    return Reference(_dense(diag, x0.shape, x0.shape), "finite_difference", 0.0)


def _hvp(fwd: Forward, req: RequestSpec, source: str) -> Reference:
    """The batched gradient by `source`, every source of the request moved along its tangent
    (the gradient changes with the others too: the Hessian's cross terms): 4 runs."""
    moved, unit = _along_tangents(fwd, req, req.sources)
    h = coarsest(fwd, req.sources).rel(1) * unit
    x_shape, move = fwd.base[source].shape, fwd.move(source)

    def grad(overrides: Dict[str, np.ndarray]) -> np.ndarray:
        phi: Fun = lambda s: reduce_to(fwd.target(req.target, {**overrides, source: s}), x_shape)  # noqa: E731
        return diagonal(phi, overrides[source], _identity, 0, move).central

    return Reference((grad(moved(h)) - grad(moved(-h))) / (2 * h), "finite_difference", 0.0)


RULES: Dict[str, Callable[[Forward, RequestSpec, str], Reference]] = {
    Kind.gradient.value: _gradient,
    Kind.jacobian.value: _jacobian,
    Kind.batch_jacobian.value: _batch_jacobian,
    Kind.hessian.value: _hessian,
    Kind.hvp.value: _hvp,
}


def _by_position(fwd: Forward, req: RequestSpec, source: str) -> Reference:
    """A batch Jacobian whose target is not elementwise in the source: each position p of a
    batch row moved in every row at once, 2 runs per position (the rows declared independent)."""
    x0, f0 = fwd.base[source], fwd.base[req.target]
    t_shape, s_shape = f0.shape, x0.shape
    if not t_shape or not s_shape or t_shape[0] != s_shape[0]:
        raise Unverifiable(f"batch_jacobian needs a shared batch axis, got {list(t_shape)} and {list(s_shape)}")
    b, positions = s_shape[0], int(np.prod(s_shape[1:], dtype=np.int64))
    if positions > MAX_FD_ELEMENTS:
        raise Unverifiable(
            f"the source has {positions} elements in each batch row; finite differences take at most {MAX_FD_ELEMENTS}"
        )
    move = fwd.move(source)
    flat = x0.reshape(b, positions)
    rows = (b,) + (1,) * (len(t_shape) - 1)
    t_of: Fun = lambda s: fwd.target(req.target, {source: s.reshape(s_shape)})  # noqa: E731
    cols, kink, steps, remeasured = [], None, [], 0
    for p in range(positions):
        mask = np.zeros(flat.shape)
        mask[:, p] = 1.0
        h = _steps(flat, move.rel(0)) * mask
        up, down = move.snap(flat + h), move.snap(flat - h)
        fp, fm = np.asarray(t_of(up), dtype=np.float64), np.asarray(t_of(down), dtype=np.float64)
        hu, hd = (up - flat)[:, p].reshape(rows), (flat - down)[:, p].reshape(rows)
        cols.append((fp - fm) / (hu + hd))
        steps.append(float(h[:, p].min()) if b else 1.0)
        if kink is None and remeasured < 8:  # as `kinks`: at most 8 re-measures, 2 runs each

            def spread(a: np.ndarray, p: int = p) -> np.ndarray:
                return np.broadcast_to(a.reshape(b, positions)[:, p].reshape(rows), t_shape)

            jump = np.abs((fp - f0) / hu - (f0 - fm) / hd)
            remeasured += bool((jump > 1e-3 * np.fmax(1.0, np.abs(cols[-1]))).any())
            found = _kink(t_of, flat, f0, cols[-1], jump, spread, 2 * h, move)
            if found is not None:
                idx, left, right = found
                at = (idx[0],) + tuple(int(i) for i in np.unravel_index(p, s_shape[1:]))
                kink = _describe(source, found, at)
    value = np.stack(cols, axis=-1).reshape(t_shape + s_shape[1:]) if cols else np.zeros(t_shape + s_shape[1:])
    noise = 10 * move.eps * max(1.0, _max_abs(f0)) / min(steps, default=1.0)
    return Reference(value, "finite_difference", noise, kink)


def batched_reference(spec: JobSpec, fwd: Forward, req: RequestSpec, source: str) -> Optional[Reference]:
    """The derivative `req` asks for by `source` from batched differences, or None where
    they do not apply (the target is not elementwise in the source, the kind has no batched
    rule): then the per-element rules of `FD_RULES` run."""
    if req.kind not in RULES:
        return None
    if not_elementwise(spec, req.target, source) is None:
        return RULES[req.kind](fwd, req, source)
    if req.kind == Kind.batch_jacobian.value and not_elementwise(spec, req.target, source, rows=True) is None:
        # each batch row depends on its own row only (as TensorFlow's batch_jacobian assumes,
        # here proven from the steps): one position of every row moved at once; otherwise
        # the per-element differences (up to 4,096 elements) or a projection see the cross terms
        return _by_position(fwd, req, source)
    return None
