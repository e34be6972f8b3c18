"""Large dense derivatives checked by projection, as `torch.autograd.gradcheck(fast_mode=True)`
and `jax.test_util.check_grads` do: no element limit but the job's memory bound.

A source of more than MAX_FD_ELEMENTS (runner/config/kinds.py) is too large for element-wise
finite differences. Instead, along K random directions of +-1 elements (Rademacher, seeded by
the job's `seed`, the request's and the sources' positions; the seed and kind are recorded, so
a rerun draws the same ones), TensorFlow's value J is projected, u^T J v in float64, against a
directional difference of the float64 re-run (`Forward`): d/dh sum(u * f(x + h v)), a mixed
second difference for second-order kinds. The difference needs nothing of TensorFlow's
gradient functions; forward mode (`ForwardAccumulator`) is NOT a reference: it reuses the ops'
backward functions, so a wrong custom gradient would agree with itself.

Tolerance: `compare`'s element-wise rule projected. With allowed_ij = atol + rtol |J_ij| (rtol:
the dtype's or the method's, the larger; atol = rtol * max(1, scale), the scale TF's 9th largest
|J_ij|, see SPARED), a direction passes when

    |p_tf - p_ref| <= 6 sqrt(sum_ij (allowed_ij u_i v_j)^2) + the difference's own error,

that error its rounding (as `fd_jacobian` estimates it), or for the user's code measured (as
`measure_error` does: again with steps four times smaller). Why signs: one wrong element's error
e moves p_tf by e u_i v_j, and |u_i v_j| is exactly 1 in every direction, so every element is
caught from the same size on, about the bound, never by chance later as with Gaussian weights
(of 10^6 elements ~40 have all four |z| < 0.1: they need ten times the bound). On the gradient
of reduce_sum(tanh(matmul(W, v) / 32)) by a 1024x1024 float32 W (max |g| 0.117, bound 0.62), one
element off by 0.63 is caught wherever it is (Gaussian: 0.22 to 0.88 over 24 tries, median
0.43). An error spread over many elements (a wrong custom gradient) is caught far sooner. Signs
are cheap too: a bit each, u^T J v and the bound in one pass over J (`_projected`).

One-sided differences where TF computed in float32 or narrower (their ~1e-8 relative error is far
below float32's rtol; the point's run is the float64 pass's, so a direction costs one run);
central ones (two runs) where TF computed in float64 or the moves are rounded (the user's code).
Differences whose error is over NOISY of the projections' size (a large offset in a sum) are
taken again, central, with steps ~170 times larger and their error measured; if still too
coarse the check is unverified: their error never sets the tolerance of what they judge.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from runner.config.kinds import KINDS, MAX_FD_ELEMENTS, PROJECTION_DIRECTIONS, PROJECTION_MAX_ORDER
from runner.config.schema import Kind
from runner.config.spec import JobSpec, RequestSpec
from runner.verify.compare import DTYPE_RTOL, FAILED, METHOD_RTOL, PASSED, UNSTEADY, UNVERIFIED, set_outcome
from runner.verify.directional import difference, scales
from runner.verify.finite_differences import NARROW_RTOL, SECOND_STEPS, coarsest, tangent, weights
from runner.verify.forward_pass import Forward, Unverifiable, empty

METHOD = "projection"
SIGMAS = 6.0  # the bound: this many times the projected element-wise tolerance
CHUNK = 1 << 16  # numbers of TF's value read at once (fewer tiles: less of Python's own time)
DIRECTIONS = "rademacher"  # the directions' kind, recorded: `_signs(numpy.random.default_rng(seed), K, shape)`


@dataclasses.dataclass
class Plan:
    """A kind's projection: TF's value as 2-D blocks J (each with its rows u and columns v),
    and per direction the reference's recipe: the mixed derivative of sum(c * target) along
    `along` (one mapping source -> direction per order of the derivative)."""

    blocks: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]  # (J, U: K x rows, V: K x columns)
    c: List[np.ndarray]  # per direction: the weights of the target the difference sums
    along: List[List[Dict[str, np.ndarray]]]
    v_of: Optional[str] = None  # the blocks' V move this source (first order): rounded moves replace them
    signs: bool = True  # every element of every U and V is +-1 (not so once rounded moves replace V)


Rule = Callable[[Forward, RequestSpec, np.ndarray, Tuple[str, ...], np.random.Generator, int], Plan]


def _signs(rng: np.random.Generator, k: int, shape: Tuple[int, ...]) -> np.ndarray:
    """k Rademacher directions of `shape`, int8 +-1, from one draw of k * n random bits."""
    n = int(np.prod(shape, dtype=np.int64))
    bits = np.unpackbits(_bytes(rng, (k * n + 7) // 8), count=k * n)
    bits += bits  # 0 or 2
    np.subtract(1, bits, out=bits)  # 1 or 255: int8's 1 or -1
    return bits.view(np.int8).reshape((k,) + tuple(shape))


def _bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    """`rng.bytes(n)`, leaving `rng` as it leaves it. NumPy's `bytes` takes 32-bit draws, and
    PCG64's are the halves of its 64-bit outputs, low half first (the high one kept for the
    next draw): where none is kept and n is whole outputs, the outputs' little-endian bytes are
    the same bytes, read in a quarter of the time (`bytes(0)` takes a draw all the same)."""
    gen = rng.bit_generator
    if type(gen) is np.random.PCG64 and n > 0 and n % 8 == 0 and not gen.state["has_uint32"]:
        return gen.random_raw(n // 8).astype("<u8", copy=False).view(np.uint8)
    return np.frombuffer(rng.bytes(n), dtype=np.uint8)


def _gradient(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """g . v against d^n/dh sum(w * f(x + h v + ...)): order n > 1 nests the gradient of the
    sum of the order below, so its value is D^n phi [1, ..., 1, .] (phi = sum(w * f))."""
    (s,) = src
    if req.order > PROJECTION_MAX_ORDER:
        raise Unverifiable(
            f"a projection takes gradients of order at most {PROJECTION_MAX_ORDER} (nested differences of "
            f"order {req.order} lose too many digits)"
        )
    v = _signs(rng, k, got.shape)
    w = weights(req, fwd.base[req.target].shape)
    ones = [{s: np.ones(fwd.base[s].shape)}] if req.order > 1 else []
    along = [[{s: v[i]}] + ones * (req.order - 1) for i in range(k)]
    return Plan([(got.reshape(1, -1), np.ones((k, 1)), v.reshape(k, -1))], [w] * k, along, s)


def _jacobian(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    (s,) = src
    t_shape, s_shape = fwd.base[req.target].shape, fwd.base[s].shape
    u, v = _signs(rng, k, t_shape), _signs(rng, k, s_shape)
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
    u, v = _signs(rng, k, t_shape), _signs(rng, k, s_shape)
    b = t_shape[0]
    j = got.reshape(b, -1, v[0].size // max(b, 1))
    blocks = [(j[i], u[:, i].reshape(k, -1), v[:, i].reshape(k, -1)) for i in range(b)]
    return Plan(blocks, list(u), [[{s: v[i]}] for i in range(k)], s)


def _hessian(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """The block (s, r) (r = s for one source): u^T H_sr v against the mixed difference
    d2/da db sum(f(x + a u_s + b v_r)), four runs a direction."""
    s, r = src[0], src[-1]
    u, v = _signs(rng, k, fwd.base[s].shape), _signs(rng, k, fwd.base[r].shape)
    block = (got.reshape(u[0].size, v[0].size), u.reshape(k, -1), v.reshape(k, -1))
    ones = np.ones(fwd.base[req.target].shape)
    return Plan([block], [ones] * k, [[{s: u[i]}, {r: v[i]}] for i in range(k)])


def _hvp(fwd: Forward, req: RequestSpec, got: np.ndarray, src: Tuple[str, ...], rng: Any, k: int) -> Plan:
    """u . (H t)_s against d2/da db sum(f(x + a u_s + b t)), every source along its tangent."""
    s = src[0]
    u = _signs(rng, k, fwd.base[s].shape)
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
    record = {"directions": k, "kind": DIRECTIONS, "seed": seed}
    rec: Dict[str, Any] = {
        "method": METHOD,
        "coverage": f"a projection u^T J v along {k} random directions of +-1 (seed {seed}), not every element",
        "note": f"{_largest(fwd, sources)}, more than element-wise finite differences take ({MAX_FD_ELEMENTS}): "
        "checked by projection",
    }
    row, base, s0 = KINDS[req.kind], fwd.base, sources[0]
    shape = base[s0].shape + base[sources[-1]].shape if row.pairs else row.shape(base[req.target].shape, base[s0].shape)
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
        why = "TensorFlow gives None, but the tape records a path from the source to the target"
        return set_outcome(rec, FAILED, why)
    move = coarsest(fwd, tuple(sorted({s for d in plan.along[0] for s in d})))
    nested = len(plan.along[0]) > 1
    one_sided = not nested and move.dtype is None and value.dtype != np.float64
    method_rtol = METHOD_RTOL["finite_difference_nested" if nested else "finite_difference"]
    rtol = max(DTYPE_RTOL.get(str(value.dtype), 1e-4), method_rtol)
    if move.dtype is not None:
        rtol = max(rtol, NARROW_RTOL.get(move.name, 0.2) * (10 if nested else 1))
        rec["precision"] = move.name
    if plan.v_of is not None and move.dtype is not None:  # the blocks' V get the rounded moves
        plan.blocks = [(jb, ub, np.array(vb, dtype=np.float64)) for jb, ub, vb in plan.blocks]
        plan.signs = False
    # TF's value is projected before the runs (NumPy's passes run slower just after one of
    # TensorFlow's, whose threads still spin), unless the runs' rounded moves become its V
    sums = _projected(plan.blocks, plan.signs) if plan.signs else None
    refs, noise = _along(fwd, req, plan, one_sided, opaque)
    sums = sums or _projected(plan.blocks, plan.signs)
    if not opaque and _noisy(noise, refs, sums):
        # steps too small for this function's size (a large offset: sum(1e6 + 0.01 * ...)):
        # central differences with steps ~170 times the usual, their error measured (against
        # steps four times smaller, as for the user's code), not estimated
        refs, noise = _along(fwd, req, plan, False, True, LARGER_STEPS)
    atol = rtol * (sums.scale if opaque else max(1.0, sums.scale))
    spread = np.sqrt(atol**2 * sums.count + 2 * atol * rtol * sums.abs + rtol**2 * sums.squares)
    tf_p, typical = sums.p, np.sqrt(sums.squares)
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
    # the sum of squares is finite when every element is (bar overflow, which the count settles)
    bad_tf = 0 if np.all(np.isfinite(sums.squares)) else int(np.count_nonzero(~np.isfinite(value)))
    if bad_tf:
        return set_outcome(rec, FAILED, f"TensorFlow's value has {bad_tf} elements that are not finite")
    if not np.all(np.isfinite(ref_p)):
        return set_outcome(rec, UNVERIFIED, "the directional difference is not finite (the function overflows nearby)")
    if opaque and np.any(np.asarray(noise) / 2 > UNSTEADY * np.maximum(typical, np.abs(ref_p))):
        why = "the directional differences change too much when the steps shrink 4-fold to judge TensorFlow's value"
        return set_outcome(rec, UNVERIFIED, why)
    if not opaque and _noisy(noise, refs, sums):  # never a tolerance wider than what it judges
        why = (
            f"the directional differences' rounding (up to {max(noise):.3g}) is over {NOISY:.0%} of the projections' "
            "size: too coarse to judge TensorFlow's value"
        )
        return set_outcome(rec, UNVERIFIED, why)
    worst = int(np.argmax(err_p - allowed))
    if err_p[worst] > allowed[worst]:
        return set_outcome(
            rec,
            FAILED,
            f"along direction {worst} of {k} (seed {seed}): TF's projection u^T J v is {tf_p[worst]:.9g}, "
            f"the directional difference {ref_p[worst]:.9g}: error {err_p[worst]:.3g} > allowed {allowed[worst]:.3g}",
        )
    return set_outcome(rec, PASSED)


# The differences' own error may be at most this share of the projections' size (the larger of
# sqrt(sum (J_ij u_i v_j)^2) and the differences themselves): beyond, it would set the tolerance.
NOISY = 0.1
# The steps of the second try, relative to the usual central ones (6e-6 * scale): 1e-3 * scale.
LARGER_STEPS = 1e-3 / 6e-6


def _noisy(noise: List[float], refs: List[float], sums: Any) -> bool:
    size = np.maximum(np.sqrt(sums.squares), np.abs(np.asarray(refs)))
    return bool(np.any(np.asarray(noise) > NOISY * size))


def _along(
    fwd: Forward, req: RequestSpec, plan: Plan, one_sided: bool, measured: bool, factor: float = 1.0
) -> Tuple[List[float], List[float]]:
    """The reference along each direction and its error (estimated, or `measured` with steps
    four times smaller); steps scaled by `factor`; the rounded moves become TF's v (`plan.v_of`)."""
    refs, noise, sizes = [], [], scales(fwd, plan.along[0])
    for i in range(len(plan.c)):
        p, error, moved = difference(fwd, req, plan.c[i], plan.along[i], one_sided, factor, sizes)
        if measured:
            again, _, _ = difference(fwd, req, plan.c[i], plan.along[i], one_sided, factor * SECOND_STEPS, sizes)
            error = 2.0 * abs(p - again)
        refs.append(p)
        noise.append(error)
        if plan.v_of is not None and moved is not None:
            rows = moved.reshape(len(plan.blocks), -1)
            for b, (_, _, vb) in enumerate(plan.blocks):
                vb[i] = rows[b]
    return refs, noise


def _largest(fwd: Forward, sources: Tuple[str, ...]) -> str:
    name = max(sources, key=lambda s: fwd.base[s].size)
    return f"{name} has {fwd.base[name].size} elements"


# atol's scale is the SPARED + 1-th largest |J|, not the largest: with no element-wise reference,
# compare's max |ref| would be TF's own max, which one wrong element sets, loosening the bound
# for itself; up to SPARED wrong elements leave this scale alone
SPARED = 8
RUN = 64  # the scale's candidates: elements at least the SPARED + 1-th largest of RUN groups' maxima


@dataclasses.dataclass
class Sums:
    """Per direction, p = sum_b u_b^T J_b v_b and the bound's sums: sum_ij (allowed_ij u_i v_j)^2
    = atol^2 count + 2 atol rtol abs + rtol^2 squares (count = sum_ij u_i^2 v_j^2, abs and squares
    the same weighting |J_ij| and J_ij^2); `scale`: the SPARED + 1-th largest finite |J_ij|."""

    p: np.ndarray
    count: np.ndarray
    abs: np.ndarray
    squares: np.ndarray
    scale: float = 0.0


def _projected(blocks: List[Tuple[np.ndarray, np.ndarray, np.ndarray]], signs: bool) -> Sums:
    """`Sums` in one pass over TF's value, a tile of at most CHUNK numbers at a time widened to
    float64 in a buffer that stays in cache, as do the tile's directions: J v for every direction
    is one product (BLAS's gemv, no threads at this size), u^T (J v) taken once per block. With
    `signs` (every u_i, v_j is +-1) the bound's sums are the same for every direction."""
    k = blocks[0][1].shape[0]
    out = Sums(np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k))
    top, f8 = np.zeros(0), np.float64  # the SPARED + 1 largest |J_ij| so far
    for j, u, v in blocks:
        j = j if j.dtype in (np.float16, np.float32, np.float64) else np.asarray(j, dtype=f8)  # bfloat16: widened
        rows, cols = j.shape
        step_c = max(1, min(cols, CHUNK))
        step_r = max(1, CHUNK // step_c)
        jt, vt, jv = empty((min(rows, step_r), step_c), pool=True), empty((k, step_c), pool=True), np.zeros((rows, k))
        u2: Any = None if signs else np.square(u, dtype=f8)
        for c in range(0, cols, step_c):
            vc = vt[:, : min(step_c, cols - c)]
            np.copyto(vc, v[:, c : c + step_c])
            vc2: Any = None if signs else np.square(vc)
            for r in range(0, rows, step_r):
                jc = jt[: min(step_r, rows - r), : vc.shape[1]]  # contiguous: whole rows, or one row
                np.copyto(jc, j[r : r + step_r, c : c + step_c])
                jv[r : r + step_r] += jc @ vc.T
                flat = jc.reshape(-1)
                squares = float(np.einsum("i,i->", flat, flat))  # (not np.dot: BLAS's threads stall beside TF's)
                if not signs:
                    ur2 = u2[:, r : r + step_r]
                    out.count += np.sum(ur2, axis=1) * np.sum(vc2, axis=1)
                    out.squares += np.einsum("kr,rk->k", ur2, np.square(jc) @ vc2.T)
                jabs = np.abs(jc, out=jc)  # the tile, its signs no longer needed
                if not np.isfinite(squares):  # the scale takes finite elements only
                    jabs[~np.isfinite(jabs)] = 0
                # only elements over the SPARED + 1-th largest so far can be among the largest
                above = flat if top.size <= SPARED else flat[flat > top.min()]
                if above.size:
                    top = _top(np.concatenate([top, _candidates(above)]))
                if signs:
                    out.abs += float(np.sum(jabs))
                    out.squares += squares
                else:
                    out.abs += np.einsum("kr,rk->k", ur2, jabs @ vc2.T)
        out.p += np.einsum("kr,rk->k", u, jv, dtype=f8, casting="unsafe")
        if signs:
            out.count += j.size
    out.scale = (float(np.min(top)) if top.size == SPARED + 1 else float(np.max(top))) if top.size else 0.0
    return out


def _top(a: np.ndarray) -> np.ndarray:
    """The SPARED + 1 largest of `a` (all of it when fewer)."""
    return -np.partition(-a, SPARED)[: SPARED + 1] if a.size > SPARED + 1 else a


def _candidates(a: np.ndarray) -> np.ndarray:
    """The elements of `a` (>= 0) that may be among its SPARED + 1 largest: those at least
    the SPARED + 1-th largest of the maxima of RUN groups (that many elements reach it)."""
    runs = a.size // RUN
    if runs <= SPARED + 1:
        return a.copy()  # (`a` is a view of a buffer the next tile overwrites)
    peaks = a[: runs * RUN].reshape(RUN, runs).max(axis=0)  # (any grouping will do: this one is fast)
    least = np.partition(peaks, runs - SPARED - 1)[runs - SPARED - 1]
    return np.concatenate([a[: runs * RUN][a[: runs * RUN] >= least], a[runs * RUN :]])


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
