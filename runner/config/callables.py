"""`function.callable`: a user's own code as the function, validated by name (imports nothing).

A callable is a dotted path (`mylib.losses.huber`) or a mapping with `_target_` that Hydra's
`instantiate` turns into a callable (a factory returning a Keras layer), its other keys the
arguments. Every `_target_` in the mapping, nested ones included, must lie in a module the
environment trusts (`runner.config.trust`); that is checked here, before anything is
imported. `function.output` names what the callable returns: one name (default `y`) for a
tensor, a list of names for a mapping name -> tensor. `runner.tape.user_code` imports and
calls it once the config is known good.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, List, Mapping, Optional, Tuple

from runner.config import trust
from runner.errors import ConfigError, short

# The keys of Hydra's instantiate a callable mapping may hold (beside its arguments).
INSTANTIATION_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
DEFAULT_OUTPUT = "y"
# The source name meaning every trainable variable the callable created or read.
TRAINABLE_VARIABLES = "trainable_variables"


@dataclass(frozen=True)
class CallableSpec:
    """What to call and what it gives; `target` is the `_target_` mapping as JSON text
    (hashable, printable), `path` the dotted path; exactly one of them is set."""

    path: Optional[str]
    target: Optional[str]
    outputs: Tuple[str, ...]
    mapping: bool  # returns a mapping name -> tensor (function.output is a list)

    @property
    def text(self) -> str:
        """How the run log and messages show it."""
        return self.path or self.target or ""

    def instantiation(self) -> Any:
        """The `_target_` mapping as plain containers, for Hydra's `instantiate`."""
        return json.loads(self.target) if self.target else None


def build(function: Mapping[str, Any], check_name: Any) -> Optional[CallableSpec]:
    """The callable of `function` (None when it has none); refuses untrusted modules.

    `check_name(key, name)` checks an output name as it checks inputs and steps.
    """
    raw = function.get("callable")
    if raw is None:
        if function.get("output") is not None:
            raise ConfigError("function.output", "names a callable's outputs, but function.callable is not set")
        return None
    trusted = trust.prefixes()
    if isinstance(raw, str):
        trust.require("function.callable", trust.dotted("function.callable", raw), trusted)
        path, target = raw, None
    elif isinstance(raw, Mapping):
        if "_target_" not in raw:
            raise ConfigError(
                "function.callable",
                "a mapping needs _target_: the dotted path of a callable (or factory) to instantiate",
            )
        for key, value in targets("function.callable", raw):
            trust.require(key, trust.dotted(key, value), trusted)
        try:
            target = json.dumps(raw, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(
                "function.callable", "its arguments must be plain values (numbers, text, lists, mappings)"
            ) from None
        path = None
    else:
        raise ConfigError("function.callable", f"expected a dotted path or a mapping with _target_, got {short(raw)}")
    outputs, mapping = _outputs(function.get("output"), check_name)
    return CallableSpec(path, target, outputs, mapping)


def targets(key: str, node: Any) -> Iterator[Tuple[str, Any]]:
    """Every `_target_` in a mapping, nested ones included, with its key; refuses keys of
    instantiate's form it does not know (`_foo_`) and interpolations."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "_target_":
                yield f"{key}._target_", v
            elif isinstance(k, str) and k.startswith("_") and k.endswith("_") and k not in INSTANTIATION_KEYS:
                raise ConfigError(f"{key}.{k}", f"not a key of Hydra's instantiate ({', '.join(INSTANTIATION_KEYS)})")
            else:
                yield from targets(f"{key}.{k}", v)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from targets(f"{key}[{i}]", v)
    elif isinstance(node, str) and "${" in node:
        # Hydra composed and resolved the config already; what is left (an escaped `\${...}`)
        # instantiate would resolve again, after this check: `oc.decode` can make a mapping of it
        raise ConfigError(key, "an interpolation (${...}) in a callable's arguments; give plain values")


def _outputs(raw: Any, check_name: Any) -> Tuple[Tuple[str, ...], bool]:
    if raw is None:
        return (DEFAULT_OUTPUT,), False
    if isinstance(raw, str):
        return (check_name("function.output", raw),), False
    if isinstance(raw, (list, tuple)) and raw:
        names: List[str] = [check_name(f"function.output[{i}]", n) for i, n in enumerate(raw)]
        if len(set(names)) != len(names):
            raise ConfigError("function.output", f"a name is listed twice: {names}")
        return tuple(names), True
    raise ConfigError(
        "function.output",
        f"expected a name (the callable returns a tensor) or a list of names (it returns a mapping), got {short(raw)}",
    )


def check_names(spec: CallableSpec, inputs: Tuple[str, ...]) -> None:
    """An output may not share an input's name, nor be `trainable_variables`."""
    for i, name in enumerate(spec.outputs):
        key = "function.output" if not spec.mapping else f"function.output[{i}]"
        if name in inputs:
            raise ConfigError(
                key,
                f"the callable's output {name!r} has an input's name; rename the input or the output "
                "(function.output: another_name)",
            )
        if name == TRAINABLE_VARIABLES:
            raise ConfigError(key, f"{TRAINABLE_VARIABLES!r} names the callable's variables; choose another name")


def without_code(steps: Tuple[Any, ...], requests: Tuple[Any, ...], outputs: Tuple[str, ...]) -> Tuple[list, list]:
    """The steps and requests whose shapes are known before anything runs: those that do
    not use the callable's outputs (or its variables), directly or through other steps."""
    if not outputs:
        return list(steps), list(requests)
    from runner.language import expression

    opaque = set(outputs) | {TRAINABLE_VARIABLES}
    known = []
    for step in steps:
        if set(expression.names(step.expr)) & opaque:
            opaque.add(step.name)
        else:
            known.append(step)
    return known, [r for r in requests if not ({r.target, *r.sources} & opaque)]
