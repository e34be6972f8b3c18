"""Derivative requests, validated against the kind table (imports no TensorFlow or SymPy).

`build_requests` turns the config's `derivatives` list into `RequestSpec`s or raises a
`ConfigError` naming the key at fault. What a kind allows (options, order, sources) is
read from its row in :mod:`runner.config.kinds`, never from lists of kind names here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Protocol, Tuple

import numpy as np

from runner import errors
from runner.config import points
from runner.config.callables import TRAINABLE_VARIABLES
from runner.config.kinds import KINDS, KindRow, taking
from runner.config.schema import Unconnected
from runner.errors import ConfigError, short, true_or_false, whole_number
from runner.language import expression


class Named(Protocol):
    """What a request needs of an input (`runner.config.spec.InputSpec`): its name.

    Protocols rather than spec.py's classes, which would make an import circle: spec.py
    imports this module.
    """

    @property
    def name(self) -> str: ...


class Step(Named, Protocol):
    """What a request needs of a step (`runner.config.spec.StepSpec`): its name and tree."""

    @property
    def expr(self) -> expression.Expr: ...


MISSING = "???"
_UNCONNECTED = tuple(u.value for u in Unconnected)


@dataclass(frozen=True)
class RequestSpec:
    name: str
    kind: str
    target: str
    sources: Tuple[str, ...]
    several: bool  # sources given as a list of more than one: the value is a mapping
    order: int = 1
    unconnected: str = "none"
    output_gradients: Any = None  # as the config gives them: the spec's text, repr and hash
    tangents: Any = None  # a mapping source -> value (tests may give one value, or a list per source)
    parallel_iterations: Optional[int] = None
    experimental_use_pfor: bool = True
    # the arrays `output_gradients` and `tangents` denote, evaluated once when the spec is built
    # (`output_gradients`, `tangents.SOURCE`), so a generator ({random: ...}, {linspace: ...},
    # {file: ...}) gives the tape and both references the same numbers; rebuilt by every
    # `dataclasses.replace`, and left out of repr, equality and hash, which the text stands for
    arrays: Dict[str, np.ndarray] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        arrays: Dict[str, np.ndarray] = {}
        if self.output_gradients is not None:
            arrays["output_gradients"] = points.evaluate("output_gradients", self.output_gradients)
        for s in self.sources if self.tangents is not None else ():
            raw = _tangent_text(self.tangents, s, self.sources)
            if raw is not None:
                arrays[f"tangents.{s}"] = points.evaluate(f"tangents.{s}", raw)
        object.__setattr__(self, "arrays", arrays)

    @property
    def weights(self) -> Optional[np.ndarray]:
        """`output_gradients` as an array (None when not given)."""
        return self.arrays.get("output_gradients")

    def tangent(self, source: str) -> Optional[np.ndarray]:
        """The tangent of `source` as an array (None when none is given for it)."""
        return self.arrays.get(f"tangents.{source}")

    @property
    def recomputes(self) -> bool:
        """Whether the request runs the function again on its own tapes or accumulator
        (nested reverse mode, forward mode) instead of asking the shared tape."""
        return KINDS[self.kind].recomputes_at(self.order)


def _tangent_text(tangents: Any, source: str, sources: Tuple[str, ...]) -> Any:
    """The config's tangent of one source: from a mapping by source, a list per source, or one value."""
    if isinstance(tangents, Mapping) and not set(tangents) & set(points.GENERATORS + points.WRAPPERS):
        return tangents.get(source)
    if len(sources) > 1 and isinstance(tangents, (list, tuple)) and len(tangents) == len(sources):
        return tangents[sources.index(source)]
    return tangents


def name_list(key: str, raw: Any, allowed: List[str], what: str) -> Tuple[str, ...]:
    """A name or a list of names, each one of `allowed`."""
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)):
        raise ConfigError(key, f"expected a name or a list of names, got {raw!r}")
    for n in items:
        if n not in allowed:
            raise ConfigError(key, f"unknown {what} {n!r}; known: {', '.join(allowed) or 'none'}")
    return tuple(items)


def default_name(kind: str, target: str, sources: Tuple[str, ...], order: int) -> str:
    """`dy/dx`, `d2y/dx2`, `dz/d(x,w)`; other kinds as `hessian(y; x)`."""
    src = sources[0] if len(sources) == 1 else f"({','.join(sources)})"
    if kind == "gradient":
        if order == 1:
            return f"d{target}/d{src}"
        return f"d{order}{target}/d{src}{order}"
    return f"{kind}({target}; {', '.join(sources)})"


def label(raw: Any, fields: Tuple[str, ...]) -> Optional[str]:
    """The name a request of `derivatives` goes by, for a message about one that is refused:
    its `name`, else its default name (`dz/dx`), each key it has not among `fields` read as the
    field it is closest to (`sourcse: x` as `sources: x`); None when target or sources are missing."""
    import difflib

    if not isinstance(raw, Mapping):
        return None
    req: Dict[str, Any] = {}
    for key, value in raw.items():
        close = difflib.get_close_matches(str(key), fields, n=1) if key not in fields else [key]
        if close and close[0] not in req:
            req[close[0]] = value
    if isinstance(req.get("name"), str):
        return req["name"]
    target, sources = req.get("target"), req.get("sources")
    sources = [sources] if isinstance(sources, str) else sources
    if not isinstance(target, str) or target == MISSING or not isinstance(sources, (list, tuple)) or not sources:
        return None
    order = req.get("order", 1)
    order = order if isinstance(order, int) and not isinstance(order, bool) else 1
    kind = str(getattr(req.get("kind"), "value", req.get("kind") or "gradient"))
    return default_name(kind, target, tuple(str(s) for s in sources), order)


errors.name_requests_with(label)  # a Hydra error about a request names it (runner/errors.py)


def build_requests(
    raw: Any,
    inputs: Tuple[Named, ...],
    steps: Tuple[Step, ...],
    point: Mapping[str, np.ndarray],
    max_order: int,
    outputs: Tuple[str, ...] = (),
) -> Tuple[RequestSpec, ...]:
    """The requests of `derivatives`, each of order at most `max_order` (`limits.order`).

    `outputs`: the names a callable gives (runner/config/callables.py); with one, a request
    may also take `sources: trainable_variables`, every variable the code owns.
    """
    if not isinstance(raw, (list, tuple)):
        raise ConfigError("derivatives", f"expected a list of requests, got {raw!r}")
    names = [i.name for i in inputs] + list(outputs) + [s.name for s in steps]
    depends = _dependencies(steps)
    # the code is given every input and reads its own variables
    depends.update({o: {i.name for i in inputs} | {TRAINABLE_VARIABLES} for o in outputs})
    out: List[RequestSpec] = []
    seen: Dict[str, int] = {}
    for i, req in enumerate(raw):
        key = f"derivatives[{i}]"
        if not isinstance(req, Mapping):
            raise ConfigError(key, f"expected a mapping with target and sources, got {req!r}")
        target = req.get("target")
        if target in (None, MISSING):
            raise ConfigError(f"{key}.target", "missing; name the step or input to differentiate")
        if target not in names:
            raise ConfigError(f"{key}.target", f"unknown target {target!r}; known: {', '.join(names)}")
        raw_sources = req.get("sources")
        if raw_sources in (None, MISSING, []):
            raise ConfigError(f"{key}.sources", "missing; name the input(s) or step(s) to differentiate by")
        sources = name_list(f"{key}.sources", raw_sources, names + ([TRAINABLE_VARIABLES] if outputs else []), "source")
        variables = TRAINABLE_VARIABLES in sources
        if len(set(sources)) != len(sources):
            raise ConfigError(f"{key}.sources", f"a source is listed twice: {list(sources)}")
        kind = str(req.get("kind", "gradient"))
        if kind not in KINDS:
            raise ConfigError(f"{key}.kind", f"unknown kind {kind!r}; supported: {', '.join(KINDS)}")
        row = KINDS[kind]
        if variables and (len(sources) > 1 or row.one_source or row.batched):
            raise ConfigError(
                f"{key}.sources",
                f"{TRAINABLE_VARIABLES} (a mapping by variable) must be the only source, of a kind that takes several"
                + ("" if len(sources) > 1 else f"; a {kind} takes exactly one"),
            )
        order = _order(key, kind, row, req.get("order", 1), sources, max_order)
        if variables and order > 1 and row.order is None:
            raise ConfigError(f"{key}.order", f"an order-{order} gradient takes one source; use kind hessian")
        _check_options(key, row, order, req)
        if row.one_source or row.batched:
            _check_batch(key, kind, row, target, sources, point)
        tangents = _tangents(key, kind, req.get("tangents"), sources, point) if "tangents" in row.options else None
        if row.recomputes_at(order):
            _check_independent_sources(key, sources, depends)
        name = req.get("name") or default_name(kind, target, sources, order)
        if not isinstance(name, str):
            raise ConfigError(f"{key}.name", f"expected text, got {short(name)}")
        if name in seen:
            raise ConfigError(
                f"{key}.name", f"{name!r} is already the name of derivatives[{seen[name]}]; give this request a name"
            )
        seen[name] = i
        out.append(
            RequestSpec(
                name=name,
                kind=kind,
                target=target,
                sources=sources,
                several=variables or (not isinstance(raw_sources, str) and len(sources) > 1),
                order=order,
                unconnected=str(req.get("unconnected", "none")),
                output_gradients=req.get("output_gradients"),
                tangents=tangents,
                parallel_iterations=req.get("parallel_iterations"),
                experimental_use_pfor=bool(req.get("experimental_use_pfor", True)),
            )
        )
    return tuple(out)


def _order(key: str, kind: str, row: KindRow, order: Any, sources: Tuple[str, ...], max_order: int) -> int:
    whole_number(f"{key}.order", order, 1)
    fixed = row.order or order
    if max(order, fixed) > max_order:
        # each order nests one more tape; for a product of two functions, each costs ~2.3 x
        # the order below it (docs/configs.md, "Limits")
        raise ConfigError(
            f"{key}.order",
            f"order {max(order, fixed)} would nest {max(order, fixed)} tapes; the limit is {max_order} "
            "(raise it with limits.order)",
        )
    if row.order == 2:
        if order not in (1, 2):
            raise ConfigError(f"{key}.order", f"a {kind} is second order; leave order out (or 2), got {order}")
        return 2
    if row.order is not None and order != 1:
        raise ConfigError(
            f"{key}.order",
            f"order > 1 is for kind gradient (nested tapes); use kind hessian for a {kind} of a gradient",
        )
    if order > 1 and len(sources) > 1:
        raise ConfigError(
            f"{key}.sources",
            f"an order-{order} gradient takes one source; use kind hessian for mixed second derivatives",
        )
    return order  # a kind of fixed order 2 returned above; of fixed order 1, order is 1 here


def _check_options(key: str, row: KindRow, order: int, req: Mapping) -> None:
    """Refuse options the chosen kind does not take, naming the option."""
    unconnected = str(req.get("unconnected", "none"))
    if unconnected not in _UNCONNECTED:
        raise ConfigError(f"{key}.unconnected", f"expected {' or '.join(_UNCONNECTED)}, got {unconnected!r}")
    if req.get("output_gradients") is not None:
        # output_gradients weigh the target of one tape.gradient call: nested tapes have none
        if "output_gradients" not in row.options or order != 1:
            raise ConfigError(f"{key}.output_gradients", "only a first-order gradient takes output_gradients")
        points.finite(f"{key}.output_gradients", req["output_gradients"])
    if req.get("tangents") is not None and "tangents" not in row.options:
        raise ConfigError(
            f"{key}.tangents", f"only kinds {' and '.join(taking('tangents'))} take tangents (forward mode)"
        )
    pi = req.get("parallel_iterations")
    if pi is not None:
        if "parallel_iterations" not in row.options:
            raise ConfigError(
                f"{key}.parallel_iterations",
                f"only kinds {', '.join(taking('parallel_iterations'))} take parallel_iterations",
            )
        whole_number(f"{key}.parallel_iterations", pi, 1)
    pfor = true_or_false(f"{key}.experimental_use_pfor", req.get("experimental_use_pfor", True))
    if pfor is False and "experimental_use_pfor" not in row.options:
        raise ConfigError(
            f"{key}.experimental_use_pfor",
            f"only kinds {', '.join(taking('experimental_use_pfor'))} take experimental_use_pfor",
        )


def _check_batch(
    key: str, kind: str, row: KindRow, target: str, sources: Tuple[str, ...], point: Mapping[str, np.ndarray]
) -> None:
    if row.one_source and len(sources) != 1:
        raise ConfigError(f"{key}.sources", f"a {kind} takes exactly one source")
    if not row.batched:
        return
    # Inputs' shapes are known before TensorFlow runs; a step's shape is TensorFlow's to check.
    for role, name in (("target", target), ("sources", sources[0])):
        if name in point and np.ndim(point[name]) < 2:
            raise ConfigError(
                f"{key}.{role}",
                f"a {kind} needs a {role.rstrip('s')} of rank 2 or more ([batch, ...]); "
                f"{name!r} has shape {list(np.shape(point[name]))}",
            )


def _tangents(
    key: str, kind: str, raw: Any, sources: Tuple[str, ...], point: Mapping[str, np.ndarray]
) -> Dict[str, Any]:
    """Forward mode's direction: a mapping source -> value (a bare value for one source).

    Values are kept as the config gave them (so the spec stays printable and hashable by
    its text) after checking that each denotes an array of a fitting shape; `RequestSpec`
    keeps the arrays they denote beside them (`RequestSpec.tangent`).
    """
    if raw is None:
        raise ConfigError(
            f"{key}.tangents", f"missing; a {kind} needs a direction: a value per source, e.g. tangents: 1.0"
        )
    if not (
        isinstance(raw, Mapping)
        and set(raw) <= set(sources)
        and raw
        and not set(raw) & set(points.GENERATORS + points.WRAPPERS)
    ):
        if len(sources) > 1:
            raise ConfigError(
                f"{key}.tangents", f"expected a mapping source -> value for the sources {', '.join(sources)}"
            )
        raw = {sources[0]: raw}
    missing = [s for s in sources if s not in raw]
    if missing:
        raise ConfigError(f"{key}.tangents", f"no tangent for source(s) {', '.join(missing)}")
    for s in sources:
        arr = points.finite(f"{key}.tangents.{s}", raw[s])
        if s in point and arr.ndim and arr.shape != np.shape(point[s]):
            raise ConfigError(
                f"{key}.tangents.{s}",
                f"shape {list(arr.shape)} does not match the source's shape {list(np.shape(point[s]))} (a number is broadcast)",
            )
    return {s: raw[s] for s in sources}


def _dependencies(steps: Tuple[Step, ...]) -> Dict[str, set]:
    """For each step, the inputs and steps it uses directly.

    Direct only: the transitive sets of a chain of n steps hold n^2 / 2 names in all
    (30,000 steps: 92 s and 19 GB before this), so `_upstream` walks them when asked.
    """
    return {step.name: set(expression.names(step.expr)) - set(expression.CONSTANTS) for step in steps}


def _upstream(name: str, direct: Dict[str, set]) -> set:
    """Every input and step `name` is computed from (transitively), in time linear in the steps."""
    seen: set = set()
    todo = list(direct.get(name, ()))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(direct.get(n, ()))
    return seen


def _check_independent_sources(key: str, sources: Tuple[str, ...], depends: Dict[str, set]) -> None:
    """Requests that recompute the function hold their step sources fixed (see
    runner/tape/requests.py): a step source computed from another source would then lose
    that path, so refuse it."""
    for s in sources:
        upstream = _upstream(s, depends) & set(sources)
        if upstream:
            raise ConfigError(
                f"{key}.sources",
                f"step {s!r} is computed from source {sorted(upstream)[0]!r}; a nested or forward-mode request "
                "needs sources that do not depend on one another",
            )
