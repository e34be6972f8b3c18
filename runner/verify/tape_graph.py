"""The tape's graph as the checks see it: which names the tape records, and whether it
connects a source to a target (inputs it does not watch, steps under `tape.stop_recording`
and `stop_gradient(...)` arguments are held fixed; the user's code is opaque).

Split from :mod:`runner.verify.check`, which re-exports `tracked_names` and `connected`.
"""

from __future__ import annotations

from typing import Set

from runner.config.spec import JobSpec
from runner.language import expression as ex


def _used_outside_stop_gradient(expr: ex.Expr) -> Set[str]:
    found: Set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ex.Name):
            found.add(node.id)
        elif isinstance(node, ex.Unary):
            stack.append(node.operand)
        elif isinstance(node, (ex.Binary, ex.Compare)):
            stack.extend((node.left, node.right))
        elif isinstance(node, ex.Call) and node.func != "stop_gradient":
            stack.extend(node.args)
    return found


def tracked_names(spec: JobSpec) -> Set[str]:
    """Names whose tensors the tape records: watched float inputs and steps computed from them.

    The user's code is opaque: its outputs count as recorded (it may read a watched input or
    its own variables), and its variables (sources by path) when the tape watches what is read.
    """
    out: Set[str] = set()
    for inp in spec.inputs:
        if not inp.is_float:
            continue  # TensorFlow never watches integer tensors
        if inp.name in spec.tape.watch:
            out.add(inp.name)
        elif inp.kind == "variable" and inp.trainable and spec.tape.watch_accessed_variables:
            out.add(inp.name)
    if spec.callable is not None:
        out.update(spec.callable.outputs)
        if spec.tape.watch_accessed_variables:
            out.update(code_variables(spec))
    for step in spec.steps:
        if step.name not in spec.tape.stop_recording and _used_outside_stop_gradient(step.expr) & out:
            out.add(step.name)
    return out


def connected(spec: JobSpec, target: str, source: str, tracked: Set[str]) -> bool:
    """Whether the tape has a recorded path from `source` to `target`."""
    if source not in tracked:
        return False
    reach = {source}
    if spec.callable is not None and (source in {i.name for i in spec.inputs} or source in code_variables(spec)):
        reach.update(spec.callable.outputs)  # the code is given every input and reads its variables
    for step in spec.steps:
        if step.name in tracked and _used_outside_stop_gradient(step.expr) & reach:
            reach.add(step.name)
    return target in reach


def code_variables(spec: JobSpec) -> Set[str]:
    """The paths of the code's variables that requests name (`trainable_variables`, bound)."""
    names = (
        {i.name for i in spec.inputs}
        | set(spec.callable.outputs if spec.callable else ())
        | {s.name for s in spec.steps}
    )
    return {s for r in spec.requests for s in r.sources if s not in names}


def through_code(spec: JobSpec, target: str) -> bool:
    """Whether `target` is computed by the user's code (an output, or a step using one)."""
    if spec.callable is None:
        return False
    reach = set(spec.callable.outputs)
    for step in spec.steps:
        if ex.names(step.expr).keys() & reach:
            reach.add(step.name)
    return target in reach
