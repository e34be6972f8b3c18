"""The derivative kinds, one row each: options, order, mode, shape rule (imports no TensorFlow, SymPy or Hydra).

As JAX keeps a primitive's rules together, a kind's facts live in one row here, and each
interpreter keeps one rule per kind in a table keyed like `KINDS`: the tape
(:mod:`runner.tape.requests`), finite differences (:mod:`runner.verify.finite_differences`)
and SymPy (:mod:`runner.verify.symbolic_reference`). Request validation
(:mod:`runner.config.requests`) reads only the rows. `tests/test_kinds_table.py` fails for
a `Kind` that lacks a row or a rule, or whose shape rule is not what TensorFlow gives.

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


@dataclass(frozen=True)
class KindRow:
    """Everything about one kind that is not how an interpreter computes it."""

    # (target shape, source shape) -> the derivative's shape, per source; also the shape of
    # the zeros `unconnected: zero` gives
    shape: Callable[[Shape, Shape], Shape]
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
    # several sources give a mapping source -> source -> block (the diagonal blocks are checked)
    pairs: bool = False

    def recomputes_at(self, order: int) -> bool:
        """Whether a request of this kind and order leaves the shared tape alone."""
        return self.recomputes or order > 1


KINDS: Dict[str, KindRow] = {
    Kind.gradient.value: KindRow(
        shape=lambda t, s: s,
        order=None,
        options=frozenset({"output_gradients"}),
    ),
    Kind.jacobian.value: KindRow(
        shape=lambda t, s: t + s,
        options=_JACOBIAN_OPTIONS,
    ),
    Kind.batch_jacobian.value: KindRow(
        shape=lambda t, s: t[:1] + t[1:] + s[1:],
        options=_JACOBIAN_OPTIONS,
        one_source=True,
        batched=True,
    ),
    Kind.hessian.value: KindRow(
        shape=lambda t, s: s + s,
        order=2,
        recomputes=True,
        options=_JACOBIAN_OPTIONS,
        pairs=True,
    ),
    Kind.jvp.value: KindRow(
        shape=lambda t, s: t,
        mode="forward",
        recomputes=True,
        options=frozenset({"tangents"}),
    ),
    Kind.hvp.value: KindRow(
        shape=lambda t, s: s,
        mode="forward",
        order=2,
        recomputes=True,
        options=frozenset({"tangents"}),
    ),
}


def taking(option: str) -> Tuple[str, ...]:
    """The kinds whose requests may set `option`, in the schema's order (for messages)."""
    return tuple(k.value for k in Kind if k.value in KINDS and option in KINDS[k.value].options)
