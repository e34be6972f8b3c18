"""Static shape inference of every step, before TensorFlow runs; imports no TensorFlow, SymPy or NumPy.

A step whose operands cannot meet (``x * y`` with shapes [3] and [4], ``a @ b`` with inner
sizes 3 and 5, ``reduce_sum(x, 2)`` of a vector) would fail deep inside TensorFlow after
its multi-second import; here it is refused at once, naming the step, the operation and
its column. The rules are TensorFlow's, written out in plain Python, one per shape tag of
the function table (:mod:`runner.language.functions`), in `RULES`:

- ``elementwise``, and the operators ``+ - * / **`` and comparisons: NumPy broadcasting,
  aligned from the right, sizes equal or 1 (one argument keeps its shape);
- ``matmul``, and ``@``: both operands of rank >= 2, inner sizes equal
  (``a[..., k] @ b[..., k, n]``), leading (batch) dimensions broadcast;
- ``reduction``: no axis gives a scalar; an integer axis in ``[-rank, rank)`` drops that axis;
- ``transpose``: reverses the dimensions.

The inferred shapes also bound the job's work before it starts (`check_job`, against the
`limits` of `runner.config.settings`): its memory (every value, every derivative's output at
its kind's measured peak, the check's differences) and the finite-difference check's work
(`check_work`), each from the kind's row in :mod:`runner.config.kinds`. Pure Python: no
NumPy arrays are built, no TensorFlow imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Mapping, Sequence, Tuple

from runner.config.kinds import KINDS
from runner.language import expression as ex
from runner.language.functions import TABLE, ShapeRule

if TYPE_CHECKING:
    from runner.config.requests import RequestSpec
    from runner.config.settings import Limits

Shape = Tuple[int, ...]

# Largest tensor any step may produce (the same bound as a point's, runner.config.points).
MAX_STEP_ELEMENTS = 2**27
# What one run of a step costs TensorFlow whatever its size, in elements: ~40 us a step
# against ~20 ns an element (measured with `Forward.values`, runner/verify/finite_differences.py).
STEP_COST_ELEMENTS = 2000


class ShapeError(ex.ExpressionError):
    """Operands whose shapes TensorFlow would refuse; `column` points at the operation."""


def show(shape: Shape) -> str:
    """A shape as users write it: [] for a scalar, [3, 4]."""
    return "[" + ", ".join(str(n) for n in shape) + "]"


def broadcast(shapes: Iterable[Shape]) -> Shape | None:
    """The broadcast of `shapes` by NumPy's rules, or None when they do not broadcast."""
    shapes = list(shapes)
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for i in range(1, rank + 1):
        sizes = {s[-i] for s in shapes if len(s) >= i}
        sizes.discard(1)
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))


def infer(expr: ex.Expr, known: Mapping[str, Shape], text: str = "") -> Shape:
    """The shape of `expr`, given the shapes of the names it uses; or raise `ShapeError`."""
    return _Inference(known, text).shape(expr)


def infer_work(expr: ex.Expr, known: Mapping[str, Shape], text: str = "") -> Tuple[Shape, int]:
    """The shape of `expr` and the elements computing it takes: every tensor it builds (an
    operation's, a call's, intermediates included), a matrix product by its multiply-adds
    (its output times the inner size); names and numbers cost nothing."""
    inference = _Inference(known, text)
    return inference.shape(expr), inference.work


class _Inference:
    def __init__(self, known: Mapping[str, Shape], text: str):
        self.known = known
        self.text = text
        self.work = 0  # elements computed so far (see infer_work)

    def fail(self, message: str, node: ex.Expr) -> ShapeError:
        return ShapeError(message, self.text, node.column)

    def shape(self, node: ex.Expr) -> Shape:
        out = self._shape(node)
        if not isinstance(node, (ex.Num, ex.Name)):
            self.work += elements(out)
        if elements(out) > MAX_STEP_ELEMENTS:  # intermediates too: reduce_sum(x * y) builds x * y
            raise self.fail(
                f"builds a tensor of shape {show(out)}: {elements(out):,} elements, more than the limit of {MAX_STEP_ELEMENTS:,}",
                node,
            )
        return out

    def _shape(self, node: ex.Expr) -> Shape:
        if isinstance(node, ex.Num):
            return ()
        if isinstance(node, ex.Name):
            return () if node.id in ex.CONSTANTS else tuple(self.known[node.id])
        if isinstance(node, ex.Unary):
            return self.shape(node.operand)
        if isinstance(node, (ex.Binary, ex.Compare)):
            left, right = self.shape(node.left), self.shape(node.right)
            if isinstance(node, ex.Binary) and node.op == "@":
                return self.matmul(node, left, right)
            return self.elementwise(node, node.op, [left, right])
        if isinstance(node, ex.Call):
            return self.call(node)
        raise TypeError(f"not an expression node: {node!r}")  # unreachable for parsed trees

    def elementwise(self, node: ex.Expr, what: str, shapes: list) -> Shape:
        out = broadcast(shapes)
        if out is None:
            listed = " and ".join(show(s) for s in shapes)
            raise self.fail(
                f"shapes {listed} do not broadcast in {what!r} (sizes must be equal or 1, aligned from the right)", node
            )
        return out

    def matmul(self, node: ex.Expr, a: Shape, b: Shape) -> Shape:
        if len(a) < 2 or len(b) < 2:
            raise self.fail(
                f"matrix product of shapes {show(a)} and {show(b)}: both operands need rank 2 or more "
                "(a vector is a [n, 1] or [1, n] point)",
                node,
            )
        if a[-1] != b[-2]:
            raise self.fail(
                f"matrix product of shapes {show(a)} and {show(b)}: inner sizes {a[-1]} and {b[-2]} differ", node
            )
        batch = broadcast([a[:-2], b[:-2]])
        if batch is None:
            raise self.fail(
                f"matrix product of shapes {show(a)} and {show(b)}: batch dimensions do not broadcast", node
            )
        out = batch + (a[-2], b[-1])
        self.work += elements(out) * max(a[-1] - 1, 0)  # a multiply-add per inner element (`shape` adds one)
        return out

    def call(self, node: ex.Call) -> Shape:
        args = [self.shape(a) for a in node.args]
        rule = RULES.get(TABLE[node.func].shape)
        if rule is None:
            raise TypeError(f"no shape rule for {node.func}")  # a new shape tag needs its rule in RULES
        return rule(self, node, args)

    def reduction(self, node: ex.Call, shape: Shape) -> Shape:
        if node.axis is None:
            return ()
        if not -len(shape) <= node.axis < len(shape):
            raise self.fail(
                f"{node.func}: axis {node.axis} is out of range for shape {show(shape)} (rank {len(shape)})", node
            )
        axis = node.axis % len(shape)
        return shape[:axis] + shape[axis + 1 :]


# One rule per shape tag of the table: (inference, the call, its arguments' shapes) -> its shape.
RULES: Dict[ShapeRule, Callable[[_Inference, ex.Call, List[Shape]], Shape]] = {
    "elementwise": lambda inf, node, args: inf.elementwise(node, node.func, args),
    "reduction": lambda inf, node, args: inf.reduction(node, args[0]),
    "matmul": lambda inf, node, args: inf.matmul(node, args[0], args[1]),
    "transpose": lambda inf, node, args: tuple(reversed(args[0])),
}


def elements(shape: Shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def estimate_bytes(shapes: Mapping[str, Shape], itemsize: int) -> int:
    """Memory every value of a job takes: each held twice (as a tensor, and as the NumPy copy
    that goes into the log). `check_job` adds each derivative's own memory, by its kind."""
    return 2 * sum(elements(s) for s in shapes.values()) * itemsize


def outputs(req: RequestSpec, shapes: Mapping[str, Shape]) -> Tuple[Shape, ...]:
    """The shape of each tensor a request gives (one per source; a hessian of several
    sources gives every pair's block, as large together as one source of them all)."""
    row = KINDS[req.kind]
    target = shapes[req.target]
    if row.pairs and len(req.sources) > 1:
        return (row.shape(target, (sum(elements(shapes[s]) for s in req.sources),)),)
    return tuple(row.shape(target, shapes[s]) for s in req.sources)


def check_work(req: RequestSpec, shapes: Mapping[str, Shape], run_elements: int) -> Tuple[int, int, int]:
    """The finite-difference check of `req`: (runs of the function, element evaluations,
    float64 numbers held), by its kind's row; `run_elements` is the cost of one run."""
    row = KINDS[req.kind]
    t = elements(shapes[req.target])
    if row.block_cost is not None and len(req.sources) > 1:  # every block (s, r) is checked
        blocks = [row.block_cost(t, elements(shapes[s]), elements(shapes[r])) for s in req.sources for r in req.sources]
        runs, held = sum(b[0] for b in blocks), sum(b[1] for b in blocks)
    else:
        runs = sum(row.check_runs(elements(shapes[s]), req.order) for s in req.sources)
        held = sum(row.check_elements(t, elements(shapes[s])) for s in req.sources)
    return runs, runs * run_elements, held


def describe_bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n} bytes"


def step_shapes(steps: Iterable[Tuple[str, str, ex.Expr]], inputs: Mapping[str, Shape]) -> Dict[str, Shape]:
    """Every input's and step's shape, in order; raises `ShapeError` tagged with the step.

    `steps` yields (name, text, tree); the error's `step` attribute names the step at fault.
    """
    return step_shapes_and_work(steps, inputs)[0]


def step_shapes_and_work(
    steps: Iterable[Tuple[str, str, ex.Expr]], inputs: Mapping[str, Shape]
) -> Tuple[Dict[str, Shape], Dict[str, int]]:
    """`step_shapes`, and the elements each step computes (`infer_work`)."""
    known: Dict[str, Shape] = dict(inputs)
    work: Dict[str, int] = {}
    for name, text, tree in steps:
        try:
            known[name], work[name] = infer_work(tree, known, text)
        except ShapeError as err:
            err.step = name  # type: ignore[attr-defined]
            raise
    return known, work


_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "int32": 4, "float64": 8, "int64": 8}


def check_job(
    steps: Sequence,
    point_shapes: Mapping[str, Shape],
    dtypes: Iterable[str],
    requests: Sequence[RequestSpec],
    verify: str,
    limits: Limits,
) -> Dict[str, Shape]:
    """Refuse, as a `ConfigError`, a job whose shapes do not fit, whose memory is above
    `limits.memory` or whose check's work is above `limits.check_evaluations`.

    `steps` are `runner.config.spec.StepSpec`s; returns every input's and step's shape.
    """
    from runner.errors import ConfigError

    try:
        shapes, step_work = step_shapes_and_work(((s.name, s.text, s.expr) for s in steps), point_shapes)
    except ShapeError as err:
        raise ConfigError(f"function.steps.{err.step}", str(err), err.pointer()) from None  # type: ignore[attr-defined]
    itemsize = max((_ITEMSIZE.get(d, 8) for d in dtypes), default=4)
    out = {req.name: outputs(req, shapes) for req in requests}
    # one run of the check computes every step again: every tensor each builds, a matrix
    # product by its multiply-adds (`infer_work`), each step at least TensorFlow's fixed cost
    run_elements = max(sum(max(step_work[s.name], STEP_COST_ELEMENTS) for s in steps), STEP_COST_ELEMENTS)
    work = {req.name: check_work(req, shapes, run_elements) for req in requests} if verify != "off" else {}
    evaluations = run_elements + sum(w[1] for w in work.values())  # the check's first run is at the point
    if work and evaluations > limits.check_evaluations:
        name = max(work, key=lambda k: work[k][1])
        raise ConfigError(
            "verify",
            f"the finite-difference check would evaluate {evaluations:,} elements ({name} alone runs the function "
            f"{work[name][0]:,} times, {run_elements:,} elements each); the limit is {limits.check_evaluations:,} "
            "(raise it with limits.check_evaluations, or set verify: off)",
        )
    # TensorFlow's peak while it computes the derivatives, or the outputs kept while the check runs
    computing = sum(KINDS[r.kind].peak * elements(o) for r in requests for o in out[r.name]) * itemsize
    differences = 8 * sum(w[2] for w in work.values())
    checking = sum(elements(o) for os in out.values() for o in os) * itemsize + differences
    need = estimate_bytes(shapes, itemsize) + max(computing, checking)
    if need > limits.memory:
        tensors = {**shapes, **{name: max(os, key=elements) for name, os in out.items() if os}}
        largest = max(tensors, key=lambda k: elements(tensors[k]))
        check = (
            f"; the finite-difference check alone holds {describe_bytes(differences)} (verify: off skips it)"
            if checking > computing
            else ""
        )
        raise ConfigError(
            "point",
            f"the job needs at least {describe_bytes(need)} ({len(shapes)} tensors and {len(requests)} gradient(s) of "
            f"{itemsize}-byte numbers; the largest, {largest}, has shape {show(tensors[largest])}{check}); "
            f"the limit is {describe_bytes(limits.memory)} (raise it with limits.memory)",
        )
    return shapes


def check_steps(count: int, limits: Limits) -> None:
    """Refuse a function of more steps than `limits.steps`, before any is parsed."""
    from runner.errors import ConfigError

    if count > limits.steps:
        raise ConfigError(
            "function.steps", f"{count:,} steps; the limit is {limits.steps:,} (raise it with limits.steps)"
        )
