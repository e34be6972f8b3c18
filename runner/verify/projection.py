"""Large dense derivatives checked by projection, as `torch.autograd.gradcheck(fast_mode=True)`
and `jax.test_util.check_grads` do: no element limit but the job's memory bound.

A source of more than MAX_FD_ELEMENTS (runner/config/kinds.py) is too large for element-wise
finite differences (two runs of the function per element). Instead, along K random Gaussian
directions (a `numpy` Generator seeded by the job's `seed`, the request's position and the
sources' positions, recorded, so a rerun draws the same ones), TensorFlow's value J is
projected, u^T J v in float64, and compared with a directional finite difference of the
float64 re-run (`Forward`): d/dh sum(u * f(x + h v)), a mixed second difference for
second-order kinds. The difference is the reference because it needs nothing of TensorFlow's
gradient functions. TensorFlow's forward mode (`ForwardAccumulator`) is NOT used as a reference:
it reuses the ops' backward functions, so a wrong custom gradient would agree with itself.

Tolerance: the element-wise rule of `compare` projected. With allowed_ij = atol + rtol |J_ij|
(rtol = max of the dtype's and the method's rtol; atol = rtol * max(1, scale) as `compare` sets
it, the scale taken from TF's J since no element-wise reference exists: its 9th largest |J_ij|,
see SPARED), a direction passes when

    |p_tf - p_ref| <= 6 sqrt(sum_ij (allowed_ij u_i v_j)^2) + the difference's own error,

the error being its rounding, estimated as `fd_jacobian` does, or for the user's code
(`opaque`) measured as `measure_error` does: the differences again with steps four times
smaller. What one wrong element must be to be caught: its error e moves p_tf by e u_i v_j, so
it must exceed about 6 sqrt(n) atol / |u_i v_j| in some direction. Measured on the gradient of
reduce_sum(tanh(matmul(W, v) / 32)) by a 1024x1024 float32 W (max |g| 0.117, the bound 0.62,
TF and the difference agreeing to 4e-6): one element off by 0.39 to 0.97 (3 to 8 max |g|) is
caught, depending on the element. It is a check of the whole derivative, not of each element:
an error spread over many elements (a wrong custom gradient) is caught far sooner.

One-sided differences where TensorFlow computed in float32 or narrower (their error, ~1e-8
relative in float64, is far below float32's rtol of 1e-4; the run at the point is the float64
pass's own, so a direction costs one run); central ones where TF computed in float64 or the
moves are rounded to a narrower dtype (the user's code), two runs a direction.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from runner.config.kinds import KINDS, MAX_FD_ELEMENTS, PROJECTION_DIRECTIONS, PROJECTION_MAX_ORDER
from runner.config.schema import Kind
from runner.config.spec import JobSpec, RequestSpec
from runner.verify.compare import DTYPE_RTOL, FAILED, METHOD_RTOL, PASSED, UNSTEADY, UNVERIFIED, set_outcome
from runner.verify.finite_differences import NARROW_RTOL, SECOND_STEPS, coarsest, tangent, weights
from runner.verify.forward_pass import Forward, Unverifiable

METHOD = "projection"
SIGMAS = 6.0  # the bound: this many times the projected element-wise tolerance
ONE_SIDED_STEP = 1.5e-8  # sqrt(float64 eps): the one-sided difference's best relative step
CHUNK = 1 << 20  # numbers of TF's value widened to float64 at once


@dataclasses.dataclass
class Plan:
    """A kind's projection: TF's value as 2-D blocks J (each with its rows u and columns v),
    and per direction the reference's recipe: the mixed derivative of sum(c * target) along
    `along` (one mapping source -> direction per order of the derivative)."""

    blocks: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]  # (J, U: K x rows, V: K x columns)
    c: List[np.ndarray]  # per direction: the weights of the target the difference sums
    along: List[List[Dict[str, np.ndarray]]]
    # the blocks' V are the moves of this source (first order): rounded moves replace them
    v_of: Optional[str] = None


Rule = Callable[[Forward, RequestSpec, np.ndarray, Tuple[str, ...], np.random.Generator, int], Plan]


def _gauss(rng: np.random.Generator, k: int, shape: Tuple[int, ...]) -> np.ndarray:
    """k Gaussian directions of `shape` from one draw of n + k - 1 numbers: direction i is the
    window z[i : i + n], read-only. Each is n independent standard normals, as k draws would
    give, and an element's k coefficients are k distinct numbers; the draw costs 1/k as much."""
    n = int(np.prod(shape, dtype=np.int64))
    z = rng.standard_normal(n + k - 1)
    return np.lib.stride_tricks.sliding_window_view(z, n)[:k].reshape((k,) + tuple(shape))


def _gradient(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """g . v against d^n/dh sum(w * f(x + h v + ...)): order n > 1 nests the gradient of the
    sum of the order below, so its value is D^n phi [1, ..., 1, .] (phi = sum(w * f))."""
    (s,) = src
    if req.order > PROJECTION_MAX_ORDER:
        raise Unverifiable(
            f"a projection takes gradients of order at most {PROJECTION_MAX_ORDER} (nested differences of "
            f"order {req.order} lose too many digits)"
        )
    v = _gauss(rng, k, got.shape)
    w = weights(req, fwd.base[req.target].shape)
    ones = {s: np.ones(fwd.base[s].shape)}
    along = [[{s: v[i]}] + [ones] * (req.order - 1) for i in range(k)]
    return Plan([(got.reshape(1, -1), np.ones((k, 1)), v.reshape(k, -1))], [w] * k, along, s)


def _jacobian(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    (s,) = src
    t_shape, s_shape = fwd.base[req.target].shape, fwd.base[s].shape
    u, v = _gauss(rng, k, t_shape), _gauss(rng, k, s_shape)
    block = (got.reshape(u[0].size, v[0].size), u.reshape(k, -1), v.reshape(k, -1))
    return Plan([block], list(u), [[{s: v[i]}] for i in range(k)], s)


def _batch_jacobian(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """The blocks' projection sum_b u_b^T J_b v_b. The difference moves every batch row at
    once, so it also sees the cross-batch terms d f_b / d x_b' (b != b') that TensorFlow's
    blocks leave out: a function that mixes the batch fails, as it does element by element."""
    (s,) = src
    t_shape, s_shape = fwd.base[req.target].shape, fwd.base[s].shape
    if not t_shape or not s_shape or t_shape[0] != s_shape[0]:
        raise Unverifiable(f"batch_jacobian needs a shared batch axis, got {list(t_shape)} and {list(s_shape)}")
    u, v = _gauss(rng, k, t_shape), _gauss(rng, k, s_shape)
    b = t_shape[0]
    j = got.reshape(b, -1, v[0].size // max(b, 1))
    blocks = [(j[i], u[:, i].reshape(k, -1), v[:, i].reshape(k, -1)) for i in range(b)]
    return Plan(blocks, list(u), [[{s: v[i]}] for i in range(k)], s)


def _hessian(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """The block (s, r) (r = s for one source): u^T H_sr v against the mixed difference
    d2/da db sum(f(x + a u_s + b v_r)), four runs a direction."""
    s, r = src[0], src[-1]
    u, v = _gauss(rng, k, fwd.base[s].shape), _gauss(rng, k, fwd.base[r].shape)
    block = (got.reshape(u[0].size, v[0].size), u.reshape(k, -1), v.reshape(k, -1))
    ones = np.ones(fwd.base[req.target].shape)
    return Plan([block], [ones] * k, [[{s: u[i]}, {r: v[i]}] for i in range(k)])


def _hvp(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """u . (H t)_s against d2/da db sum(f(x + a u_s + b t)), every source along its tangent."""
    s = src[0]
    u = _gauss(rng, k, fwd.base[s].shape)
    t = {r: tangent(req, r, fwd.base[r]) for r in req.sources}
    ones = np.ones(fwd.base[req.target].shape)
    block = (got.reshape(-1, 1), u.reshape(k, -1), np.ones((k, 1)))
    return Plan([block], [ones] * k, [[{s: u[i]}, t] for i in range(k)])


# One rule per kind, keyed like KINDS; a string says why a kind never needs one.
PROJECTION_RULES: Dict[str, Union[Rule, str]] = {
    Kind.gradient.value: _gradient,
    Kind.jacobian.value: _jacobian,
    Kind.batch_jacobian.value: _batch_jacobian,
    Kind.hessian.value: _hessian,
    Kind.jvp.value: "not needed: a jvp is one central difference along its tangents (2 runs) at any size",
    Kind.hvp.value: _hvp,
}


def takes(fwd: Forward, req: RequestSpec, sources: Tuple[str, ...]) -> bool:
    """Whether a projection checks `req` by `sources`: one is too large for element-wise
    differences and the kind has a rule."""
    big = any(fwd.base[s].size > MAX_FD_ELEMENTS for s in sources)
    return big and callable(PROJECTION_RULES.get(req.kind))


def seed_of(spec: JobSpec, req: RequestSpec, sources: Tuple[str, ...]) -> List[int]:
    """The directions' seed: `numpy.random.default_rng(seed)` draws them again."""
    at = next((i for i, r in enumerate(spec.requests) if r is req), None)
    if at is None:  # an equal request (a copy): the first of them
        at = spec.requests.index(req) if req in spec.requests else len(spec.requests)
    return [spec.settings.seed, at] + [req.sources.index(s) for s in sources]


def check(
    spec: JobSpec, req: RequestSpec, got: Any, fwd: Forward, sources: Tuple[str, ...], opaque: bool, why: str
) -> Dict[str, Any]:
    """The check record of TensorFlow's `got` for `sources` ((s,), or (s, r) for a hessian's
    block) by projection; `opaque`: the target is the user's code; `why`: why not element-wise."""
    rule = PROJECTION_RULES[req.kind]
    assert callable(rule)
    k, seed = PROJECTION_DIRECTIONS, seed_of(spec, req, sources)
    record = {"directions": k, "seed": seed}
    rec: Dict[str, Any] = {
        "method": METHOD,
        "coverage": f"a projection u^T J v along {k} random directions (seed {seed}), not every element",
        "note": f"{_largest(fwd, sources)}: checked by projection",
    }
    row, base = KINDS[req.kind], fwd.base
    shape = (
        base[sources[0]].shape + base[sources[-1]].shape
        if row.pairs
        else row.shape(base[req.target].shape, base[sources[0]].shape)
    )
    # TF's None is 0 for the user's code, whose use of a source is known only by running it
    value = np.zeros(shape) if got is None else np.asarray(got)
    if value.shape != shape:
        rec.update(max_abs_error=None, max_rel_error=None, tolerance=None)
        return set_outcome(rec, FAILED, f"shape {list(value.shape)} differs from the derivative's {list(shape)}")
    try:
        plan = rule(fwd, req, value, sources, np.random.default_rng(seed), k)
    except Unverifiable as err:
        raise Unverifiable(f"{why}; {err}") from None
    if got is None and not opaque:
        rec.update(max_abs_error=None, max_rel_error=None, tolerance=None)
        return set_outcome(
            rec, FAILED, "TensorFlow gives None, but the tape records a path from the source to the target"
        )
    move = coarsest(fwd, tuple(sorted({s for d in plan.along[0] for s in d})))
    nested = len(plan.along[0]) > 1
    one_sided = not nested and move.dtype is None and value.dtype != np.float64
    rtol = max(
        DTYPE_RTOL.get(str(value.dtype), 1e-4),
        METHOD_RTOL["finite_difference_nested" if nested else "finite_difference"],
    )
    if move.dtype is not None:
        rtol = max(rtol, NARROW_RTOL.get(move.name, 0.2) * (10 if nested else 1))
        rec["precision"] = move.name
    if plan.v_of is not None and move.dtype is not None:  # the blocks' V get the rounded moves
        plan.blocks = [(jb, ub, np.array(vb)) for jb, ub, vb in plan.blocks]
    refs, noise, scales = [], [], _scales(fwd, plan.along[0])
    for i in range(k):
        p, error, moved = _difference(fwd, req, plan.c[i], plan.along[i], one_sided, 1.0, scales)
        if opaque:  # measured: the differences again with steps four times smaller
            again, _, _ = _difference(fwd, req, plan.c[i], plan.along[i], one_sided, SECOND_STEPS, scales)
            error = 2.0 * abs(p - again)
        refs.append(p)
        noise.append(error)
        if plan.v_of is not None and moved is not None:  # the moves as rounded: TF's v
            (arr,) = moved.values()
            rows = arr.reshape(len(plan.blocks), -1)
            for b, (_, _, vb) in enumerate(plan.blocks):
                vb[i] = rows[b]
    scale = _scale(value)
    atol = rtol * (scale if opaque else max(1.0, scale))
    tf_p, spread, typical = _projected(plan.blocks, rtol, atol)
    allowed = SIGMAS * spread + np.asarray(noise)
    ref_p = np.asarray(refs)
    err_p = np.abs(tf_p - ref_p)
    record["values"] = [[float(a), float(b)] for a, b in zip(tf_p, ref_p)]
    rec.update(
        projection=record,
        max_abs_error=float(np.max(err_p)),
        max_rel_error=float(np.max(err_p / np.maximum(np.abs(ref_p), np.finfo(np.float64).tiny))),
        tolerance={"rtol": rtol, "atol": atol, "sigmas": SIGMAS, "allowed": [float(a) for a in allowed]},
    )
    bad_tf = int(np.count_nonzero(~np.isfinite(value)))
    if bad_tf:
        return set_outcome(rec, FAILED, f"TensorFlow's value has {bad_tf} elements that are not finite")
    if not np.all(np.isfinite(ref_p)):
        return set_outcome(rec, UNVERIFIED, "the directional difference is not finite (the function overflows nearby)")
    if opaque and np.any(np.asarray(noise) / 2 > UNSTEADY * np.maximum(typical, np.abs(ref_p))):
        return set_outcome(
            rec,
            UNVERIFIED,
            "the directional differences change too much when the steps shrink 4-fold to judge TensorFlow's value",
        )
    worst = int(np.argmax(err_p - allowed))
    if err_p[worst] > allowed[worst]:
        return set_outcome(
            rec,
            FAILED,
            f"along direction {worst} of {k} (seed {seed}): TF's projection u^T J v is {tf_p[worst]:.9g}, "
            f"the directional difference {ref_p[worst]:.9g}: error {err_p[worst]:.3g} > allowed {allowed[worst]:.3g}",
        )
    return set_outcome(rec, PASSED)


def _largest(fwd: Forward, sources: Tuple[str, ...]) -> str:
    name = max(sources, key=lambda s: fwd.base[s].size)
    return (
        f"{name} has {fwd.base[name].size} elements, more than element-wise finite differences take ({MAX_FD_ELEMENTS})"
    )


# atol's scale is the SPARED + 1-th largest |J|, not the largest: with no element-wise reference,
# compare's max |ref| would be TF's own max, which one wrong element sets, loosening the bound
# for itself; up to SPARED wrong elements leave this scale alone
SPARED = 8


def _scale(a: np.ndarray) -> float:
    """The SPARED + 1-th largest finite |a| (its largest when it has fewer elements), by chunks."""
    flat, top = a.reshape(-1), np.zeros(0)
    for i in range(0, flat.size, CHUNK):
        part = np.abs(np.asarray(flat[i : i + CHUNK], dtype=np.float64))
        part = np.concatenate([top, part[np.isfinite(part)]])
        top = -np.partition(-part, SPARED)[: SPARED + 1] if part.size > SPARED + 1 else part
    if not top.size:
        return 0.0
    return float(np.min(top)) if top.size == SPARED + 1 else float(np.max(top))


def _projected(
    blocks: List[Tuple[np.ndarray, np.ndarray, np.ndarray]], rtol: float, atol: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per direction: sum_b u_b^T J_b v_b, sqrt(sum_ij (allowed_ij u_i v_j)^2) and the
    projection's typical size sqrt(sum_ij (J_ij u_i v_j)^2), widening J to float64 in chunks."""
    k = blocks[0][1].shape[0]
    p, sum_abs, sum_sq, spread2 = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)
    for j, u, v in blocks:
        rows = max(1, CHUNK // max(1, j.shape[1]))
        v2 = [np.square(v[i]) for i in range(k)]
        spread2 += atol**2 * np.einsum("kr,kr->k", u, u) * np.array([np.einsum("c->", a) for a in v2])
        for a in range(0, j.shape[0], rows):
            jc = np.asarray(j[a : a + rows], dtype=np.float64)  # TF's value widened, a chunk at a time
            jabs = np.abs(jc)
            jsq = jc * jc
            for i in range(k):
                ui = u[i, a : a + rows]
                ui2 = ui * ui
                # einsum, not BLAS: steady on a busy machine, where BLAS's threads wait on each other
                p[i] += float(np.einsum("r,r->", ui, np.einsum("rc,c->r", jc, v[i])))
                sum_abs[i] += float(np.einsum("r,r->", ui2, np.einsum("rc,c->r", jabs, v2[i])))
                sum_sq[i] += float(np.einsum("r,r->", ui2, np.einsum("rc,c->r", jsq, v2[i])))
    spread2 += 2 * atol * rtol * sum_abs + rtol**2 * sum_sq
    return p, np.sqrt(spread2), np.sqrt(sum_sq)


def _scales(fwd: Forward, along: List[Dict[str, np.ndarray]]) -> Dict[str, float]:
    """max(1, max |x|) of each source moved: the steps are relative to it."""
    names = {s for d in along for s in d}
    return {s: max(1.0, float(np.max(np.abs(fwd.base[s])))) if fwd.base[s].size else 1.0 for s in names}


def _difference(
    fwd: Forward,
    req: RequestSpec,
    c: np.ndarray,
    along: List[Dict[str, np.ndarray]],
    one_sided: bool,
    factor: float,
    scales: Dict[str, float],
) -> Tuple[float, float, Optional[Dict[str, np.ndarray]]]:
    """The mixed derivative of sum(c * target) along each of `along` in turn, by nested central
    (or, of first order, one-sided) differences; its rounding error, estimated as `fd_jacobian`
    estimates it; and for a first-order difference the direction as the moves really went."""
    base = fwd.base
    order = len(along)
    names = sorted({s for d in along for s in d})
    steps = []
    for d in along:
        scale = max(scales[s] for s in d)
        top = max((float(np.max(np.abs(a))) if a.size else 0.0) for a in d.values()) or 1.0
        rel = ONE_SIDED_STEP * factor if one_sided else coarsest(fwd, tuple(d)).rel(order - 1) * factor
        steps.append(rel * scale / top)

    def at(signs: Tuple[int, ...]) -> Tuple[float, Dict[str, np.ndarray]]:
        moved = {}
        for s in names:
            x = base[s]
            for sign, h, d in zip(signs, steps, along):
                if s in d:
                    x = x + (sign * h) * d[s]
            moved[s] = fwd.move(s).snap(x)
        return float(np.sum(c * fwd.target(req.target, moved))), moved

    f0 = base[req.target]
    rounding = 10 * coarsest(fwd, tuple(names)).eps * max(1.0, float(np.sum(np.abs(c * f0))))
    exact = all(fwd.move(s).dtype is None for s in names)
    if one_sided:  # only where the moves are exact (float64)
        up, _ = at((1,))
        return (up - float(np.sum(c * f0))) / steps[0], 2 * rounding / steps[0], None
    total, ends = 0.0, {}
    for signs in itertools.product((1, -1), repeat=order):
        value, moved = at(signs)
        total += float(np.prod(signs)) * value
        ends[signs] = moved
    prod = float(np.prod(steps))
    p = total / (2**order * prod)
    if order == 1 and len(names) == 1 and not exact:  # the direction the rounded moves took
        (s,) = names
        return p, rounding / prod, {s: (ends[(1,)][s] - ends[(-1,)][s]) / (2 * steps[0])}
    return p, rounding / prod, None


def carry(out: Dict[str, Any], recs: Mapping[Any, Dict[str, Any]]) -> Dict[str, Any]:
    """A merged record (several sources, a hessian's blocks) keeps each projection and says
    which parts were checked by one."""
    name = lambda key: key if isinstance(key, str) else f"({', '.join(key)})"  # noqa: E731
    projected = {name(key): rec["projection"] for key, rec in recs.items() if rec.get("projection")}
    if projected:
        out["projection"] = projected
        said = "; ".join(f"{name(key)}: {rec['coverage']}" for key, rec in recs.items() if rec.get("projection"))
        if said not in (out.get("coverage") or ""):
            out["coverage"] = "; ".join(filter(None, [out.get("coverage"), said]))
    return out
