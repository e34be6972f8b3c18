"""The kind table is complete: every `Kind` has a row and a rule in each interpreter, and
its row's shape rule is the shape TensorFlow really gives."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest

from runner.config import spec as specs
from runner.config.kinds import KINDS, OPTIONS, KindRow
from runner.config.schema import Kind
from tests.helpers import ROOT, function_config

EVERY_KIND = [pytest.param(k.value, id=k.value) for k in Kind]

# The source x is [batch, 1] and broadcast against c, so the target y is [2, 3]: the target's
# and the source's shapes differ, and each kind's shape rule gives a shape of its own.
STEPS = {"y": "sin(x) * c"}
POINT = {"x": [[0.5], [1.5]], "c": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}
T_SHAPE, S_SHAPE = (2, 3), (2, 1)


def _tables() -> Dict[str, Dict[str, Any]]:
    """Where a kind must appear, by what a contributor would look for."""
    from runner.tape.requests import RULES
    from runner.verify.finite_differences import FD_RULES
    from runner.verify.symbolic_reference import SYMBOLIC_RULES

    return {
        "row in runner/config/kinds.py (KINDS)": KINDS,
        "tape rule in runner/tape/requests.py (RULES)": RULES,
        "finite-difference rule in runner/verify/finite_differences.py (FD_RULES)": FD_RULES,
        "symbolic rule in runner/verify/symbolic_reference.py (SYMBOLIC_RULES)": SYMBOLIC_RULES,
    }


def _row(kind: str) -> KindRow:
    if kind not in KINDS:
        pytest.fail(f"kind {kind!r} has no row in runner/config/kinds.py (KINDS)", pytrace=False)
    return KINDS[kind]


def _request(kind: str, source: str = "x", **options: Any) -> Dict[str, Any]:
    """A request of `kind`, y by `source`, with what its row says it needs."""
    request: Dict[str, Any] = {"target": "y", "sources": source, "kind": kind, **options}
    if "tangents" in _row(kind).options:
        request["tangents"] = 1.0
    return request


def _job(kind: str, verify: str = "auto", steps: Dict[str, str] = STEPS) -> Any:
    return specs.build(function_config(dict(steps), dict(POINT), [_request(kind)], verify=verify))


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_every_kind_has_a_row_and_a_rule_in_each_interpreter(kind):
    missing = [where for where, table in _tables().items() if kind not in table]
    if missing:
        pytest.fail(f"kind {kind!r} has no " + "; no ".join(missing), pytrace=False)


def test_every_table_names_only_kinds_of_the_schema():
    names = {k.value for k in Kind}
    for where, table in _tables().items():
        assert set(table) <= names, f"{where} has kinds the schema does not name: {sorted(set(table) - names)}"


def test_the_table_is_pure_python():
    import subprocess
    import sys

    code = (
        "import sys, runner.config.kinds\n"
        "print(sorted(m for m in ('tensorflow', 'sympy', 'hydra') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_a_row_is_consistent(kind):
    row = _row(kind)
    assert row.options <= set(OPTIONS), f"unknown options {sorted(row.options - set(OPTIONS))}"
    # forward mode needs a direction: exactly the forward-mode kinds take tangents
    assert ("tangents" in row.options) == (row.mode == "forward")
    # a kind of order > 1 nests tapes, so it cannot be answered by the shared tape
    assert row.recomputes or row.order in (None, 1)


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_the_shape_rule_is_the_shape_tensorflow_gives(kind):
    from runner.tape import program

    outcome = program.run(_job(kind))
    assert outcome.error is None, outcome.error
    got = outcome.derivatives[0].value
    want = _row(kind).shape(T_SHAPE, S_SHAPE)
    assert np.shape(got) == want, f"{kind}: TensorFlow gives shape {np.shape(got)}, the row's shape rule {want}"


@pytest.mark.parametrize("method", ["symbolic", "finite_difference"])
@pytest.mark.parametrize("kind", EVERY_KIND)
def test_each_checking_rule_agrees_with_tensorflow(kind, method):
    from runner.tape import program
    from runner.verify import check as verify

    spec = _job(kind, verify=method)
    outcome = program.run(spec)
    fwd = verify.Forward(spec, outcome.values)
    rec = verify.check(spec, spec.requests[0], outcome.derivatives[0].value, fwd, verify.tracked_names(spec))
    assert rec["method"] == method, rec.get("note")
    assert rec["passed"], rec.get("reason")
    assert np.shape(rec["reference"]) == KINDS[kind].shape(T_SHAPE, S_SHAPE)


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_unconnected_zero_is_shaped_by_the_row(kind):
    from runner.tape import program
    from runner.verify import check as verify

    # y does not use u (shaped as x): TensorFlow gives zeros, and so does the check's reference
    request = _request(kind, source="u", unconnected="zero")
    spec = specs.build(function_config(dict(STEPS), {**POINT, "u": [[0.0], [0.0]]}, [request]))
    outcome = program.run(spec)
    assert outcome.error is None, outcome.error
    got = outcome.derivatives[0].value
    fwd = verify.Forward(spec, outcome.values)
    rec = verify.check(spec, spec.requests[0], got, fwd, verify.tracked_names(spec))
    want = KINDS[kind].shape(T_SHAPE, S_SHAPE)
    assert np.shape(got) == want and not np.any(got)
    assert rec["passed"] and np.shape(rec["reference"]) == want, rec


# ---- what a kind costs: the columns the job's bounds add up (runner/language/shapes.py) ----


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_a_row_says_what_it_costs(kind):
    from runner.config.kinds import MAX_FD_ELEMENTS

    row = _row(kind)
    assert isinstance(row.peak, int) and row.peak >= 1
    for n in (1, 7, MAX_FD_ELEMENTS):
        assert row.check_runs(n, row.order or 2) >= 2 and row.check_elements(5, n) >= 1
    # above the cap a projection checks it (runner/verify/projection.py): a few runs of the
    # function per direction whatever the size, and memory that grows with the target and the
    # source, not their product (a jvp never differences element by element)
    from runner.config.kinds import PROJECTION_DIRECTIONS

    big, bigger = MAX_FD_ELEMENTS + 1, 100 * MAX_FD_ELEMENTS
    if row.mode == "reverse" or row.order == 2:
        order = row.order or 1
        runs = row.check_runs(big, order)
        if kind == Kind.batch_jacobian.value:  # rows proven independent: 2 runs per position of a row
            assert runs == 2 * MAX_FD_ELEMENTS + 17
        else:
            assert PROJECTION_DIRECTIONS <= runs <= 2 * PROJECTION_DIRECTIONS * 2**order
        assert row.check_runs(bigger, order) == runs
        assert row.check_elements(5, bigger) < 100 * row.check_elements(5, big)
        # a (batch) Jacobian of an elementwise target is differenced in full and held densely
        # (runner/verify/batched_differences.py), once: TensorFlow's own value has that size
        dense = bigger * bigger if kind in (Kind.jacobian.value, Kind.batch_jacobian.value) else 0
        assert row.check_elements(bigger, bigger) < bigger * bigger + dense


def test_every_kind_has_a_projection_rule_or_says_why_it_needs_none():
    from runner.verify.projection import PROJECTION_RULES

    for kind in (k.value for k in Kind):
        rule = PROJECTION_RULES.get(kind)
        if rule is None:
            pytest.fail(
                f"kind {kind!r} has no projection rule in runner/verify/projection.py (PROJECTION_RULES), "
                "nor a text saying why it needs none",
                pytrace=False,
            )
        assert callable(rule) or rule.startswith("not needed: "), f"{kind}: {rule!r}"
    assert set(PROJECTION_RULES) <= {k.value for k in Kind}


def _counted_check(spec):
    """The check of the job's one request, counting the runs of the function it makes."""
    from runner.tape import program
    from runner.verify import check as verify

    outcome = program.run(spec)
    fwd = verify.Forward(spec, outcome.values)  # its first run, at the point, is the job's
    runs = []
    real_run = fwd.run

    def counting(overrides, names=None):
        runs.append(1)
        return real_run(overrides, names)

    fwd.run = counting  # type: ignore[method-assign]
    rec = verify.check(spec, spec.requests[0], outcome.derivatives[0].value, fwd, verify.tracked_names(spec))
    assert rec["method"] == "finite_difference" and rec["passed"], rec
    return len(runs)


# A reduction on the way keeps the per-element differences (runner/verify/batched_differences.py
# takes a target elementwise in its source in a few runs), whose runs the row counts.
PER_ELEMENT = {"y": "sin(x) * c + 0 * reduce_sum(x)"}


@pytest.mark.parametrize("kind", EVERY_KIND)
def test_the_check_runs_the_function_as_often_as_the_row_says(kind):
    row = _row(kind)
    n = int(np.prod(S_SHAPE))
    want = row.check_runs(n, row.order or 1)
    # the row bounds the batched differences of an elementwise target too
    batched = _counted_check(_job(kind, verify="finite_difference"))
    assert batched <= want, f"{kind}: the batched check ran the function {batched} times, the row says {want}"
    if kind == Kind.batch_jacobian.value:
        return  # a batch Jacobian moves one position of every row at once, reduction or not
    counted = _counted_check(_job(kind, verify="finite_difference", steps=PER_ELEMENT))
    # the row counts every kink re-measurement `kinks` may make (2 for each of 8 suspects);
    # this smooth function has none
    assert want - 16 <= counted <= want, f"{kind}: the check ran the function {counted} times, the row says {want}"


def test_a_nested_gradients_check_runs_as_the_row_says():
    request = {"target": "y", "sources": "x", "order": 3}
    spec = specs.build(
        function_config(
            {"y": "sin(x) * x + 0 * reduce_sum(x)"},
            {"x": [0.5, 1.0]},
            [request],
            verify="finite_difference",
        )
    )
    assert _counted_check(spec) == KINDS["gradient"].check_runs(2, 3) == 5**3
    # elementwise, each level of differences is 2 runs of the level below, whatever the size
    spec = specs.build(function_config({"y": "sin(x) * x"}, {"x": [0.5, 1.0]}, [request], verify="finite_difference"))
    assert _counted_check(spec) == 2**3


@pytest.mark.parametrize("kind", [k for k in KINDS if KINDS[k].pairs])
def test_a_pairs_row_costs_each_block_and_one_source_as_its_row(kind):
    row = KINDS[kind]
    assert row.block_cost is not None, f"{kind}: a kind checked block by block needs block_cost"
    for n in (1, 3):  # one block (s, s) of one source costs what the row says
        assert row.block_cost(6, n, n) == (row.check_runs(n, 2), row.check_elements(6, n))
    # projected (a source too large for element-wise differences): at least as much
    runs, held = row.block_cost(6, 5000, 5000)
    assert runs == row.check_runs(5000, 2) and held >= row.check_elements(6, 5000)


def test_a_hessian_by_two_sources_runs_the_function_as_its_blocks_say():
    from runner.language.shapes import check_work

    steps = {"y": "sin(x) * c + 0 * reduce_sum(x) + 0 * reduce_sum(c)"}  # no batched differences
    request = {"target": "y", "sources": ["x", "c"], "kind": "hessian"}
    spec = specs.build(function_config(steps, dict(POINT), [request], verify="finite_difference"))
    n_x, n_c = int(np.prod(S_SHAPE)), int(np.prod(T_SHAPE))
    want, _, _ = check_work(spec.requests[0], {"y": T_SHAPE, "x": S_SHAPE, "c": T_SHAPE}, 1)
    # every block (s, r): (1 + 2 n_s)(1 + 2 n_r) runs at most, four blocks in all
    assert want == sum((1 + 2 * a) * (1 + 2 * b) for a in (n_x, n_c) for b in (n_x, n_c))
    counted = _counted_check(spec)
    # the blocks' differences take no run at the point (the row's 1 + per level is a bound)
    assert sum(4 * a * b for a in (n_x, n_c) for b in (n_x, n_c)) <= counted <= want
