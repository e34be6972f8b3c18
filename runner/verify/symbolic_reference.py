"""The symbolic reference: a derivative by SymPy, one rule per kind in `SYMBOLIC_RULES` (imports SymPy lazily).

Used for every kind whose target is built from elementwise operations only (any
broadcasting; `order` > 1 for gradients). An elementwise target's element i depends on one
element of each source, so every kind follows from the pointwise derivatives
d(t_i)/d(s), d2(t_i)/d(s)d(s'): a kind's rule says which of them it needs and where
broadcasting puts them (summed back for a gradient, spread out for a Jacobian, on the
diagonal for a Hessian's block (s, s), where the two sources'
elements meet for a mixed block (s, r)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from runner.config.kinds import KINDS
from runner.config.schema import Kind
from runner.config.spec import JobSpec, RequestSpec
from runner.language import expression as ex
from runner.verify import compare
from runner.verify import pointwise as vectorized
from runner.verify.finite_differences import Forward, Reference, Unverifiable, batch_diagonal, tangent, weights

# The most numbers a symbolic reference may hold (its output, by the kind's shape rule): the
# pointwise derivatives are evaluated over the whole grid at once (runner/verify/pointwise.py),
# so the bound is the reference's memory, 128 MiB of float64, not SymPy's time.
MAX_SYMBOLIC_OUTPUT = 2**24
MAX_SYMBOLIC_NODES = 5000
# A formula is differentiated once more only while it has at most this many nodes: each
# order can multiply its size ~12-fold, and SymPy's time with it (a chain s = sin(s)*s of 319
# nodes: 6,657 after one derivative, 82,092 after two, 829,418 after three, 2.9 s for that
# step alone, 40 s for the whole check; 1,534 nodes took 25 s at order 2). Beyond it finite
# differences check the derivative, their cost bounded by limits.*. A formula that shrinks
# (x**3 at order 12) stays symbolic.
MAX_DIFF_NODES = 20_000


def _cone(spec: JobSpec, target: str) -> List[ex.Expr]:
    """The expressions of every step the target depends on (by name, stop_gradient included)."""
    by_name = {s.name: s for s in spec.steps}
    need, seen, out = [target], set(), []
    while need:
        n = need.pop()
        if n in seen or n not in by_name:
            continue
        seen.add(n)
        out.append(by_name[n].expr)
        need.extend(ex.names(by_name[n].expr))
    return out


# Operations defined on part of the real line only: near the edge of their domain float32 and
# float64 may land on different sides (log(x - 1.0000000001) at x = 1: log(0) in float32,
# log of a negative number in float64), and SymPy may fold them away (exp(log(u)) -> u), so
# neither the run's float32 value nor the folded formula says the float64 program is defined.
_PARTIAL = frozenset({"log", "log1p", "sqrt", "asin", "acos", "pow"})


def _defined_wherever_finite(spec: JobSpec, target: str) -> bool:
    """Whether no operation on the way to `target` has a partial domain (`_PARTIAL`, division,
    a power whose exponent is not a whole number >= 0): then a finite float32 run and a finite
    float64 formula mean the float64 program is finite too (overflow shows in float32 first)."""
    for expr in _cone(spec, target):
        for node in ex.walk(expr):
            if isinstance(node, ex.Call) and node.func in _PARTIAL:
                return False
            if isinstance(node, ex.Binary) and (node.op == "/" or (node.op == "**" and not _whole(node.right))):
                return False
    return True


def _whole(exponent: ex.Expr) -> bool:
    """A literal whole number >= 0 (x ** 2 is defined everywhere; x ** 0.5 and x ** -1 are not)."""
    return isinstance(exponent, ex.Num) and float(exponent.value).is_integer() and exponent.value >= 0


def symbolic_applies(spec: JobSpec, req: RequestSpec, fwd: Forward) -> Optional[str]:
    """None when the symbolic check applies to `req`, else why it does not."""
    from runner.language import symbolic

    if spec.callable is not None and _uses_code(spec, req):
        return "the target is computed by the user's code, which SymPy cannot see into"
    if req.kind not in SYMBOLIC_RULES:
        return f"kind {req.kind} has no symbolic check"
    if KINDS[req.kind].order == 1 and req.order != 1:
        return f"kind {req.kind} with order {req.order} is checked by finite differences"
    if not all(symbolic.is_elementwise(e) for e in _cone(spec, req.target)):
        return "the target uses matmul, a reduction or transpose"
    t_shape = fwd.shape(req.target)
    for s in req.sources:
        size = int(np.prod(KINDS[req.kind].shape(t_shape, fwd.shape(s)), dtype=np.int64))
        if size > MAX_SYMBOLIC_OUTPUT:
            return f"its reference would hold {size:,} numbers (limit {MAX_SYMBOLIC_OUTPUT:,})"
    size = _expanded_size(spec, req.target)
    if size > MAX_SYMBOLIC_NODES:
        return f"the target's formula, with every step substituted, has {size} nodes (limit {MAX_SYMBOLIC_NODES})"
    return None


def _uses_code(spec: JobSpec, req: RequestSpec) -> bool:
    """Whether the target depends on the user's code: its outputs or its variables."""
    code_names = set(spec.callable.outputs) if spec.callable else set()
    inputs = {i.name for i in spec.inputs}
    if any(s not in inputs and s not in {st.name for st in spec.steps} for s in req.sources):
        return True  # a variable of the code, by path
    names = {req.target} | {n for e in _cone(spec, req.target) for n in ex.names(e)}
    return bool(names & code_names)


def _expanded_size(spec: JobSpec, target: str) -> int:
    """Nodes of the target's formula with each step written out in full.

    Steps repeat in the substituted formula (z = y*y doubles y), so this can grow
    exponentially with the chain of steps; SymPy's differentiation is kept to formulas
    of bounded size, and finite differences, whose cost does not grow so, take the rest.
    """
    sizes: Dict[str, int] = {}
    for step in spec.steps:
        total, stack = 0, [step.expr]
        while stack:
            node = stack.pop()
            if isinstance(node, ex.Name):
                total += sizes.get(node.id, 1)
            else:
                total += 1
                if isinstance(node, ex.Unary):
                    stack.append(node.operand)
                elif isinstance(node, (ex.Binary, ex.Compare)):
                    stack.extend((node.left, node.right))
                elif isinstance(node, ex.Call):
                    stack.extend(node.args)
        sizes[step.name] = min(total, 10**9)
        if step.name == target:
            break
    return sizes.get(target, 1)


def symbolic_reference(
    spec: JobSpec,
    req: RequestSpec,
    source: str,
    fwd: Forward,
    sources: Optional[Tuple[str, ...]] = None,
    got: Any = None,
) -> Reference:
    """The derivative `req` asks for, by SymPy, evaluated elementwise at the point.

    `sources` (jvp/hvp with one value for all sources) moves them together; else `source`
    alone. The kind's rule names the pointwise derivatives and assembles them. `got`
    (TensorFlow's value), where the reference is the pointwise derivative itself (a gradient
    of the target's shape, no weights), is compared in the same pass (`Reference.stats`).
    """
    import sympy as sp

    from runner.language import symbolic

    rule = SYMBOLIC_RULES.get(req.kind)
    if rule is None:
        raise Unverifiable(f"kind {req.kind!r} has no symbolic check")
    moving = tuple(sources or (source,))
    if req.kind == Kind.hvp.value:  # H v: the gradient by `source` moves with every source (the cross terms)
        moving = (source,) + tuple(s for s in req.sources if s != source)
    values: Dict[Any, np.ndarray] = {}
    env: Dict[str, Any] = {}
    for inp in spec.inputs:
        sym = sp.Symbol(inp.name, real=True)
        env[inp.name] = sym
        # as the run gave it (float32, say): the grid is widened to float64 a chunk at a time
        values[sym] = fwd.raw[inp.name] if fwd.raw[inp.name].dtype.kind == "f" else fwd.base[inp.name]
    lowerer = symbolic.SymbolicLowerer(env)
    in_cone = {id(e) for e in _cone(spec, req.target)}
    sites = []
    for step in spec.steps:
        if id(step.expr) not in in_cone:
            continue
        if step.name in moving or step.name in spec.tape.stop_recording:
            sym = sp.Dummy(step.name, real=True)  # a source, or held: a symbol of its own
            values[sym] = fwd.base[step.name]
            lowerer.env[step.name] = sym
        else:
            lowerer.kinks = []
            lowerer.env[step.name] = lowerer.lower(step.expr)
            sites += [(f"{desc} in step {step.name}", site) for desc, site in lowerer.kinks]
    low = lowerer.result(lowerer.env[req.target])
    syms = {s: lowerer.env.get(s, sp.Dummy(s, real=True)) for s in moving}
    if low.expr.has(sp.zoo, sp.nan, sp.oo, -sp.oo) and not any(syms[s] in low.expr.free_symbols for s in moving):
        # x + log(0): SymPy folds x + zoo to zoo, losing x, and calls its derivative 0 (TF: 1)
        return Reference(
            None, "symbolic", note="the target's formula is not finite here (SymPy folds it to an infinity)"
        )
    case = Case(req, fwd, source, moving, fwd.shape(req.target))
    shape = case.shape

    wanted = rule.wanted(low.expr, syms, case)
    grid = {s: np.broadcast_to(v, shape) for s, v in values.items()}
    sites = [(desc, site) for desc, site in sites if any(syms[s] in site.free_symbols for s in moving)]
    try:
        # the target's own formula in the same pass: finite everywhere (and the run's value
        # too), the check needs no float64 re-run to know the function is defined here
        against = compare.against(req, got, shape, case.source_shape())
        kink, pointwise = vectorized.evaluate(wanted, low.frozen, sites, grid, shape, value=low.expr, against=against)
    except vectorized.NotEnough as err:
        raise Unverifiable(str(err)) from None
    if kink is not None:
        return Reference(None, "symbolic", note=kink)
    if bool(pointwise.pop(vectorized.FINITE)) and _defined_wherever_finite(spec, req.target):
        fwd.formula_finite.add(req.target)
    stats = pointwise.pop(vectorized.STATS, None)
    return Reference(rule.assemble(pointwise, case), "symbolic", stats=stats)


def symbolic_blocks(
    spec: JobSpec, req: RequestSpec, fwd: Forward, mode: str, linked: Tuple[str, ...]
) -> Tuple[Optional[Dict[str, Dict[str, np.ndarray]]], Optional[str], str]:
    """Every block of a hessian by several sources at once by SymPy (source -> source ->
    block, over the sources the tape connects), else None and why finite differences decide;
    and the method an unconnected block is said to be checked by."""
    why_not = symbolic_applies(spec, req, fwd) if mode in ("auto", "symbolic") else "finite differences chosen"
    method = "symbolic" if why_not is None else "finite_difference"
    if why_not is not None:
        note = f"symbolic check does not apply ({why_not}): finite differences used" if mode == "symbolic" else None
        return None, note, method
    if not linked:
        return None, None, method
    try:
        ref = symbolic_reference(spec, req, linked[0], fwd, sources=linked)
    except Unverifiable as err:  # too large for SymPy: differences decide
        return None, f"{err}: finite differences used", method
    except Exception as err:  # SymPy refused (e.g. Max of a complex infinity): differences decide
        return None, f"SymPy could not differentiate ({type(err).__name__}): finite differences used", method
    if ref.value is None:
        return None, f"{ref.note}: finite differences decided whether it is a kink", method
    return ref.value, None, method


# ---- one rule per kind ------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What a rule sees: the request, the source checked, the sources that move, the target's shape."""

    req: RequestSpec
    fwd: Forward
    source: str
    moving: Tuple[str, ...]
    shape: Tuple[int, ...]

    def source_shape(self, source: Optional[str] = None) -> Tuple[int, ...]:
        return self.fwd.shape(source or self.source)

    def tangents(self) -> Dict[str, np.ndarray]:
        """Each moving source's tangent, broadcast to the target's shape."""
        return {s: np.broadcast_to(tangent(self.req, s, self.fwd.base[s]), self.shape) for s in self.moving}


# f: the target's SymPy expression; x: source name -> its symbol. The keys of the returned
# mapping name the pointwise derivatives `assemble` receives, each evaluated on the target's grid.
Wanted = Callable[[Any, Dict[str, Any], Case], Dict[Any, Any]]
Assemble = Callable[[Dict[Any, np.ndarray], Case], Any]


@dataclass(frozen=True)
class SymbolicRule:
    wanted: Wanted
    assemble: Assemble


def _first_derivatives(f: Any, x: Dict[str, Any], c: Case) -> Dict[Any, Any]:
    return {("d", s): diff(f, x[s]) for s in c.moving}


def _gradient(p: Dict[Any, np.ndarray], c: Case) -> np.ndarray:
    # without output_gradients the weights are 1: no grid-sized product
    grad = p["d"] if c.req.weights is None else weights(c.req, c.shape) * p["d"]
    return _unbroadcast(grad, c.source_shape())


def _jacobian(p: Dict[Any, np.ndarray], c: Case) -> np.ndarray:
    return _expand_jacobian(p[("d", c.source)], c.source_shape())


def _batch_jacobian(p: Dict[Any, np.ndarray], c: Case) -> np.ndarray:
    return batch_diagonal(_jacobian(p, c), c.shape, c.source_shape())


def _hessian_wanted(f: Any, x: Dict[str, Any], c: Case) -> Dict[Any, Any]:
    """d2 t / da db for each pair of moving sources, a before b (the mixed partials of a
    formula commute: the block (b, a) is placed from the same pointwise values)."""
    moving = c.moving
    return {("d2", a, b): diff(f, x[a], x[b]) for i, a in enumerate(moving) for b in moving[i:]}


def _hessian(p: Dict[Any, np.ndarray], c: Case) -> Any:
    """One source: the block (s, s). Several (`req.several`): the mapping a -> b -> block
    (a, b) = d/db of the gradient by a, over the moving sources, as TensorFlow gives it."""
    if not c.req.several:
        return hessian_block(p[("d2", c.source, c.source)], c.source_shape(), c.source_shape())
    out: Dict[str, Dict[str, np.ndarray]] = {a: {} for a in c.moving}
    for i, a in enumerate(c.moving):
        for b in c.moving[i:]:
            block = hessian_block(p[("d2", a, b)], c.source_shape(a), c.source_shape(b))
            out[a][b] = block
            if b != a:  # the transpose: source axes of b first
                na, nb = len(c.source_shape(a)), len(c.source_shape(b))
                out[b][a] = np.transpose(block, tuple(range(na, na + nb)) + tuple(range(na)))
    return out


def _jvp(p: Dict[Any, np.ndarray], c: Case) -> Any:
    tangents = c.tangents()
    return sum(p[("d", s)] * tangents[s] for s in c.moving)


def _hvp(p: Dict[Any, np.ndarray], c: Case) -> Any:
    # for the first moving source (the only one unless combined)
    a, tangents = c.moving[0], c.tangents()
    return _unbroadcast(sum(p[("d2", a, b)] * tangents[b] for b in c.moving), c.source_shape(a))


def diff(f: Any, *wrt: Any) -> Any:
    """`f` differentiated by each of `wrt` in turn (a symbol repeated for a higher order),
    one order at a time; `Unverifiable` before an order whose formula is over `MAX_DIFF_NODES`."""
    for order, x in enumerate(wrt):
        nodes = _nodes(f, MAX_DIFF_NODES)
        if nodes > MAX_DIFF_NODES:
            raise Unverifiable(
                f"after {order} derivative(s) the formula has over {MAX_DIFF_NODES:,} nodes, too large for SymPy"
            )
        f = f.diff(x)
    return f


def _nodes(expr: Any, limit: int) -> int:
    """The nodes of a SymPy expression, counted up to `limit + 1` (the count stops there)."""
    import sympy as sp

    n = 0
    for n, _ in enumerate(sp.preorder_traversal(expr), 1):
        if n > limit:
            break
    return n


SYMBOLIC_RULES: Dict[str, SymbolicRule] = {
    Kind.gradient.value: SymbolicRule(lambda f, x, c: {"d": diff(f, *[x[c.source]] * c.req.order)}, _gradient),
    Kind.jacobian.value: SymbolicRule(_first_derivatives, _jacobian),
    Kind.batch_jacobian.value: SymbolicRule(_first_derivatives, _batch_jacobian),
    Kind.hessian.value: SymbolicRule(_hessian_wanted, _hessian),
    Kind.jvp.value: SymbolicRule(_first_derivatives, _jvp),
    Kind.hvp.value: SymbolicRule(
        lambda f, x, c: {("d2", a, b): diff(f, x[a], x[b]) for a in c.moving for b in c.moving}, _hvp
    ),
}


# ---- where broadcasting puts the pointwise derivatives ------------------------------------


def _unbroadcast(grad: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum a gradient over the axes broadcasting added, back to the source's shape."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad.reshape(shape)


def hessian_block(d2: np.ndarray, a_shape: Tuple[int, ...], b_shape: Tuple[int, ...]) -> np.ndarray:
    """The block (a, b) (a.shape + b.shape) of the Hessian of sum(t), t elementwise, from the
    pointwise d2 t_i / da db: element i of the target reads the elements of a and b that
    broadcasting maps to i, so its value adds to that one entry (the diagonal when a is b)."""
    ia = np.broadcast_to(np.arange(int(np.prod(a_shape, dtype=int))).reshape(a_shape), d2.shape).ravel()
    ib = np.broadcast_to(np.arange(int(np.prod(b_shape, dtype=int))).reshape(b_shape), d2.shape).ravel()
    out = np.zeros((int(np.prod(a_shape, dtype=int)), int(np.prod(b_shape, dtype=int))))
    np.add.at(out, (ia, ib), np.asarray(d2, dtype=np.float64).ravel())
    return out.reshape(tuple(a_shape) + tuple(b_shape))


def _expand_jacobian(d: np.ndarray, s_shape: Tuple[int, ...]) -> np.ndarray:
    """The full Jacobian (t.shape + s.shape) of an elementwise target from its pointwise slopes.

    Element i of the target depends on one element of the source: the one broadcasting
    maps to i. Every other entry is 0.
    """
    jac = np.zeros(d.shape + tuple(s_shape))
    lead = d.ndim - len(s_shape)
    for i in np.ndindex(*d.shape):
        j = tuple(0 if n == 1 else i[lead + k] for k, n in enumerate(s_shape))
        jac[i + j] += d[i]
    return jac
