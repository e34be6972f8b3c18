"""The tape's graph as the checks see it: which names the tape records, and whether it
connects a source to a target (inputs it does not watch, steps under `tape.stop_recording`
and `stop_gradient(...)` arguments are held fixed; the user's code is opaque).

Split from :mod:`runner.verify.check`, which re-exports `tracked_names` and `connected`. A
hessian by several sources has a block per pair of sources: `unconnected_block` says which the
tape leaves unconnected, `merge_blocks` makes one check record of the blocks' records.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from runner.config.spec import JobSpec
from runner.language import expression as ex
from runner.language.functions import TABLE


def _used_outside_stop_gradient(expr: ex.Expr, compared: bool = True) -> Set[str]:
    """The names `expr` uses outside `stop_gradient(...)`; without those only compared
    (`x > 0` in `where(x > 0, a, b)`) when `compared` is False: a comparison has no gradient,
    so the tape records no path through it, though moving x moves the value."""
    found: Set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ex.Name):
            found.add(node.id)
        elif isinstance(node, ex.Unary):
            stack.append(node.operand)
        elif isinstance(node, ex.Compare):
            if compared:
                stack.extend((node.left, node.right))
        elif isinstance(node, ex.Binary):
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
        if step.name not in spec.tape.stop_recording and _used_outside_stop_gradient(step.expr, False) & out:
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
        if step.name in tracked and _used_outside_stop_gradient(step.expr, False) & reach:
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


def not_elementwise(spec: JobSpec, target: str, source: str, rows: bool = False) -> Optional[str]:
    """None when `target` is elementwise in `source`, else why not (for the batched
    differences, runner/verify/batched_differences.py). With `rows`, None when each batch row
    (axis 0) of the target depends on the same row of the source only: elementwise, or a
    matmul whose left operand alone moves with the source (X @ M acts row by row; M @ X and
    reductions, which may act across rows, are refused).

    Elementwise: every operation on the way from the source to the target acts elementwise
    (a function whose shape rule is "elementwise", an operator other than @), with
    broadcasting, and no user code lies between them. Then each element of the target depends
    on exactly one element of the source, the one broadcasting pairs it with. Values the
    float64 pass holds fixed (steps under `tape.stop_recording`, `stop_gradient` arguments)
    do not move with the source, so what computes them does not matter.
    """
    if spec.callable is not None and through_code(spec, target):
        return "the target is computed by the user's code"
    steps = {s.name: s for s in spec.steps}
    if source not in steps and source not in {i.name for i in spec.inputs}:
        return f"{source} is a variable of the user's code"
    held = set(spec.tape.stop_recording)
    need, ancestors = [target], set()  # what the target is computed from, held values aside
    while need:
        name = need.pop()
        if name in ancestors or name == source:
            continue
        ancestors.add(name)
        if name in steps and name not in held:
            need.extend(_used_outside_stop_gradient(steps[name].expr))
    moved = {source}
    for step in spec.steps:
        if step.name in held or step.name == source or step.name not in ancestors:
            continue
        if _used_outside_stop_gradient(step.expr) & moved:
            found = _first_not_elementwise(step.expr, moved, rows)
            if found is not None:
                return f"step {step.name} applies {found} to values computed from {source}"
            moved.add(step.name)
    return None


def _first_not_elementwise(expr: ex.Expr, moved: Set[str], rows: bool = False) -> Optional[str]:
    """The first operation of `expr` that is not elementwise and takes a `moved` value, or
    None; with `rows`, a matmul whose right operand does not move is let through."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if not (_used_outside_stop_gradient(node) & moved):
            continue
        if isinstance(node, ex.Binary) and node.op == "@":
            if rows and not (_used_outside_stop_gradient(node.right) & moved):
                stack.append(node.left)
                continue
            return "matmul (@)"
        if isinstance(node, ex.Call):
            if rows and TABLE[node.func].shape == "matmul" and not (_used_outside_stop_gradient(node.args[1]) & moved):
                stack.append(node.args[0])
                continue
            if TABLE[node.func].shape != "elementwise":
                return node.func
            stack.extend(node.args)
        elif isinstance(node, ex.Unary):
            stack.append(node.operand)
        elif isinstance(node, (ex.Binary, ex.Compare)):
            stack.extend((node.left, node.right))
    return None


def unconnected_block(spec: JobSpec, target: str, s: str, r: str, tracked: Set[str]) -> Optional[str]:
    """Why the tape connects no path to the block (s, r) of a Hessian (d/dr of the gradient by
    s), or None: TensorFlow's gradient by s is None when s is unconnected, and its Jacobian
    by r is when r is."""
    for name in dict.fromkeys((s, r)):
        if name not in tracked:
            return f"the tape does not watch {name}"
        if not connected(spec, target, name, tracked):
            return f"the tape records no path from {name} to {target}"
    return None


def merge_blocks(recs: Dict[Tuple[str, str], Dict[str, Any]]) -> Dict[str, Any]:
    """One check record for every block (s, r) of a hessian: `reference` (and `tolerance`)
    nested source -> source -> block as TensorFlow's value is, the worst errors of all blocks,
    passed when every block passed; `coverage` names the blocks that could not be checked."""
    rows = list(dict.fromkeys(s for s, _ in recs))

    def nested(key: str) -> Dict[str, Dict[str, Any]]:
        return {s: {r: rec.get(key) for (a, r), rec in recs.items() if a == s} for s in rows}

    def worst(key: str) -> Optional[float]:
        found = [rec[key] for rec in recs.values() if rec.get(key) is not None]
        return max(found) if found else None

    out: Dict[str, Any] = {
        "method": "+".join(sorted({rec["method"] for rec in recs.values()})),
        "max_abs_error": worst("max_abs_error"),
        "max_rel_error": worst("max_rel_error"),
        "tolerance": nested("tolerance"),
        "passed": all(rec["passed"] for rec in recs.values()),
        "reference": nested("reference"),
    }
    precisions = sorted({rec["precision"] for rec in recs.values() if rec.get("precision")})
    if precisions:  # differences taken in a narrower dtype than float64 (the code's variables)
        out["precision"] = "+".join(precisions)

    def grouped(key: str, checked: bool = False) -> Dict[str, List[str]]:
        by: Dict[str, List[str]] = {}
        for (s, r), rec in recs.items():
            if rec.get(key) and not (checked and rec.get("unchecked")):
                by.setdefault(rec[key], []).append(f"({s}, {r})")
        return by

    reasons = [f"block {b}: {why}" for why, blocks in grouped("reason", checked=True).items() for b in blocks]
    unchecked = [f"blocks {', '.join(blocks)} not checked: {why}" for why, blocks in grouped("unchecked").items()]
    notes = [f"block{'s' * (len(bs) > 1)} {', '.join(bs)}: {note}" for note, bs in grouped("note").items()]
    if reasons or unchecked:
        out["reason"] = "; ".join(reasons + unchecked)
    if notes:
        out["note"] = "; ".join(notes)
    if unchecked:
        out["coverage"] = "; ".join(unchecked)
    return out
