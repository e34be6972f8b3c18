"""The derivative kinds, one row each: options, order, mode, shape rule, cost (imports no TensorFlow, SymPy or Hydra).

As JAX keeps a primitive's rules together, a kind's facts live in one row here, and each
interpreter keeps one rule per kind in a table keyed like `KINDS`: the tape
(:mod:`runner.tape.requests`), finite differences (:mod:`runner.verify.finite_differences`)
and SymPy (:mod:`runner.verify.symbolic_reference`). Request validation
(:mod:`runner.config.requests`) reads only the rows. `tests/test_kinds_table.py` fails for
a `Kind` that lacks a row or a rule, or whose shape rule is not what TensorFlow gives.

A row also says what a request of its kind costs, for the bounds checked before TensorFlow
starts (`runner.language.shapes.check_job`; `limits` in docs/configs.md): its output's memory
at TensorFlow's peak (`peak`) and the work of its finite-difference check (`check_runs`,
`check_elements`). They have no defaults, so a new kind cannot be added without them.

The names themselves come from `runner.config.schema.Kind`, the one place enums live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Literal, Optional, Tuple

from runner.config.schema import Kind

Shape = Tuple[int, ...]

# The optional request keys a row may take (see `schema.DerivativeConfig`).
OPTIONS = ("output_gradients", "tangents", "parallel_iterations", "experimental_use_pfor")
_JACOBIAN_OPTIONS = frozenset({"parallel_iterations", "experimental_use_pfor"})

# The finite-difference check takes a source of at most this many elements element by element
# (runner/verify/finite_differences.py): each element costs two runs of the function. A larger
# source is checked by projection (runner/verify/projection.py) along this many random
# directions, at a cost that does not grow with its size.
MAX_FD_ELEMENTS = 4096
PROJECTION_DIRECTIONS = 4
# Nested differences of a higher order lose too many digits: such a gradient stays unverified.
PROJECTION_MAX_ORDER = 4
# `kinks` re-measures at most 8 suspect elements, 2 runs each, after one run at the point.
_KINK_RUNS = 1 + 2 * 8


def _differences(n: int) -> int:
    """Runs of the function by `fd_jacobian` over n elements: the point, then 2 per element."""
    return 1 + 2 * n


def _projected(order: int) -> int:
    """Runs of the function by a projection of a derivative of `order`: per direction 2^order
    (central; one-sided first-order differences of float32 values take 1), twice over for the
    user's code, whose error is measured by a second set of steps (`check_runs` counts that)."""
    return 2 * PROJECTION_DIRECTIONS * 2**order if order <= PROJECTION_MAX_ORDER else 0


def _or_projected(n: int, cost: int, order: int) -> int:
    """`cost` element by element, or a projection's runs for a source of more than MAX_FD_ELEMENTS."""
    return _projected(order) if n > MAX_FD_ELEMENTS else cost


def _or_held(t: int, n: int, held: int) -> int:
    """`held` element by element, or what a projection holds for a source of more than MAX_FD_ELEMENTS."""
    return _projection_holds(t, n) if n > MAX_FD_ELEMENTS else held


def _projection_holds(t: int, n: int) -> int:
    """float64 numbers a projection holds: K directions over the source and the target (u, v
    and their squares), a moved source, a target, and one chunk of TF's value widened."""
    return 2 * PROJECTION_DIRECTIONS * (t + n) + 2 * n + t + 3 * 2**20


def _dense(t: int, n: int) -> int:
    """Above MAX_FD_ELEMENTS an elementwise target's Jacobian is still differenced in full
    (runner/verify/batched_differences.py) and embedded densely: t * n float64 numbers."""
    return t * n if n > MAX_FD_ELEMENTS else 0


def _batch_jacobian_runs(n: int) -> int:
    """Up to 2 runs per element; above MAX_FD_ELEMENTS either a projection or, where each
    batch row depends on its own row only, 2 runs per position of a row (at most
    MAX_FD_ELEMENTS positions, runner/verify/batched_differences.py): the larger bounds both."""
    if n <= MAX_FD_ELEMENTS:
        return _differences(n) + _KINK_RUNS
    return max(_projected(1), 2 * MAX_FD_ELEMENTS + _KINK_RUNS)


def _hessian_block(t: int, ns: int, nr: int) -> Tuple[int, int]:
    """One block (s, r) of a hessian: differences by r of the differences by s, each level
    two runs per element (`hessian_block`); projected when either source is too large."""
    if max(ns, nr) > MAX_FD_ELEMENTS:
        return _projected(2), _projection_holds(t, ns + nr)
    return _differences(ns) * _differences(nr), 3 * ns * nr


@dataclass(frozen=True)
class KindRow:
    """Everything about one kind that is not how an interpreter computes it."""

    # (target shape, source shape) -> the derivative's shape, per source; also the shape of
    # the zeros `unconnected: zero` gives
    shape: Callable[[Shape, Shape], Shape]
    # TensorFlow's peak memory per element of the output, in numbers of the job's dtype:
    # measured as one job's peak RSS above an empty job's, less its values, for a target of
    # one elementwise operation (each further operation adds about half as much again)
    peak: int
    # (source elements, order) -> the runs of the function the finite-difference check
    # makes for one source (this kind's rule in runner/verify/finite_differences.py)
    check_runs: Callable[[int, int], int]
    # (target elements, source elements) -> the float64 numbers that check holds at once
    # (above MAX_FD_ELEMENTS: the projection's runs and numbers, runner/verify/projection.py)
    check_elements: Callable[[int, int], int]
    # forward mode runs a `ForwardAccumulator` along `tangents` (hvp: forward over reverse)
    mode: Literal["reverse", "forward"] = "reverse"
    # the order a request of this kind has whatever it says (1 or this); None: any order >= 1
    order: Optional[int] = 1
    # runs the function again on its own tapes or accumulator instead of asking the shared
    # tape (so does any request of order > 1, see `recomputes_at`)
    recomputes: bool = False
    options: FrozenSet[str] = frozenset()  # which of OPTIONS a request of this kind may set
    one_source: bool = False  # exactly one source
    batched: bool = False  # target and source share a leading batch axis (rank >= 2)
    # several sources give a mapping source -> source -> block, every block (s, r) checked
    pairs: bool = False
    # pairs kinds: (target elements, elements of s, elements of r) -> (runs, float64 numbers
    # held) of the check of one block (s, r) of a request by several sources
    block_cost: Optional[Callable[[int, int, int], Tuple[int, int]]] = None

    def recomputes_at(self, order: int) -> bool:
        """Whether a request of this kind and order leaves the shared tape alone."""
        return self.recomputes or order > 1


KINDS: Dict[str, KindRow] = {
    Kind.gradient.value: KindRow(
        shape=lambda t, s: s,
        peak=3,  # 2^24 points: 3.5 x the output above the values
        # order > 1: each level differentiates the level below it at every moved point
        check_runs=lambda n, order: _or_projected(
            n, _differences(n) ** order + (_KINK_RUNS if order == 1 else 0), order
        ),
        check_elements=lambda t, n: _or_held(t, n, 3 * n),  # central, forward, backward differences
        order=None,
        options=frozenset({"output_gradients"}),
    ),
    Kind.jacobian.value: KindRow(
        shape=lambda t, s: t + s,
        peak=3,  # 4,096 and 8,192 points: 3.1 x the output with pfor; a while_loop: 3.9 x
        check_runs=lambda n, order: _or_projected(n, _differences(n) + _KINK_RUNS, 1),
        check_elements=lambda t, n: _or_held(t, n, 3 * t * n) + _dense(t, n),
        options=_JACOBIAN_OPTIONS,
    ),
    Kind.batch_jacobian.value: KindRow(
        shape=lambda t, s: t[:1] + t[1:] + s[1:],
        peak=2,  # [64, 1024] points: 2.2 x the output
        check_runs=lambda n, order: _batch_jacobian_runs(n),
        check_elements=lambda t, n: (
            _or_held(t, n, 3 * t * n) + _dense(t, n)
        ),  # the full Jacobian, of which the blocks are kept
        options=_JACOBIAN_OPTIONS,
        one_source=True,
        batched=True,
    ),
    Kind.hessian.value: KindRow(
        shape=lambda t, s: s + s,
        peak=3,  # 4,096 points: 3.1 x the output
        check_runs=lambda n, order: _or_projected(n, _differences(n) ** 2, 2),
        check_elements=lambda t, n: _or_held(t, n, 3 * n * n),
        order=2,
        recomputes=True,
        options=_JACOBIAN_OPTIONS,
        pairs=True,
        block_cost=lambda t, ns, nr: _hessian_block(t, ns, nr),
    ),
    Kind.jvp.value: KindRow(
        shape=lambda t, s: t,
        peak=3,  # 2^24 points: 3.5 x the output above the values
        check_runs=lambda n, order: 2,  # one central difference along the tangents, at any size
        check_elements=lambda t, n: 2 * t,
        mode="forward",
        recomputes=True,
        options=frozenset({"tangents"}),
    ),
    Kind.hvp.value: KindRow(
        shape=lambda t, s: s,
        peak=10,  # 2^24 points: 10.8 x the output above the values (forward over reverse)
        check_runs=lambda n, order: _or_projected(n, 2 * _differences(n), 2),  # a gradient at 2 points
        check_elements=lambda t, n: _or_held(t, n, 6 * n),
        mode="forward",
        order=2,
        recomputes=True,
        options=frozenset({"tangents"}),
    ),
}


def taking(option: str) -> Tuple[str, ...]:
    """The kinds whose requests may set `option`, in the schema's order (for messages)."""
    return tuple(k.value for k in Kind if k.value in KINDS and option in KINDS[k.value].options)
