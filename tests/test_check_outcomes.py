"""Three outcomes of a check, never blurred: `passed`, `failed` (a real disagreement, with how
many elements disagree) and `unverified` (no reference could judge, with the reason); how the
console, `expect.checks: pass` and the sweep summary show them; generator tangents and
output_gradients checked with the very numbers the tape used; no NumPy warning on the console."""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from runner.config import spec as specs
from runner.record import console
from runner.sweep import summary as sweep
from runner.verify import check
from runner.verify.finite_differences import Reference
from tests.helpers.cli import cli


def config(steps, point, derivatives, verify="auto", expect=None):
    """A complete config mapping, as Hydra would compose it from an experiment file."""
    return {
        "function": {"inputs": list(point), "steps": steps},
        "point": point,
        "tape": {"persistent": True},
        "derivatives": derivatives,
        "verify": verify,
        "expect": expect,
    }


def the_check(ran, name="dy/dx"):
    return next(d["check"] for d in ran.log["derivatives"] if d["name"] == name)


BIG = {"x": {"random": {"shape": [5000], "seed": 0}}}
TOO_MANY = "the source has 5000 elements; finite differences take at most 4096"
# a source too large for element-wise differences is checked by projection (tests/test_projection.py),
# up to a gradient of order 4: one of order 5 stays unverified
TOO_HIGH = {"target": "y", "sources": "x", "order": 5, "name": "dy/dx"}
BEYOND = f"{TOO_MANY}; a projection takes gradients of order at most 4"

# id, steps, point, request, outcome, the reason's start ("" when none)
OUTCOMES = [
    ("smooth", {"y": "x ** 3"}, {"x": 5.0}, {}, "passed", ""),
    ("kink", {"y": "abs(x)"}, {"x": 0.0}, {}, "failed", "non-differentiable point at x"),
    ("nan_gradient", {"y": "sqrt(x * x)"}, {"x": 0.0}, {}, "failed", "TF gradient is NaN"),
    ("too_many_elements_projected", {"y": "reduce_sum(x * x)"}, BIG, {}, "passed", ""),
    ("too_many_elements_of_too_high_an_order", {"y": "reduce_sum(x * x)"}, BIG, {"order": 5}, "unverified", BEYOND),
    (
        "too_many_elements_of_one_source",  # x by projection, w element-wise: the merge passes
        {"y": "reduce_sum(x * x) * w"},
        {**BIG, "w": 2.0},
        {"sources": ["x", "w"]},
        "passed",
        "",
    ),
]


@pytest.mark.parametrize(
    "steps, point, request_, outcome, reason", [o[1:] for o in OUTCOMES], ids=[o[0] for o in OUTCOMES]
)
def test_each_check_has_one_of_three_outcomes(run_job, steps, point, request_, outcome, reason):
    req = {"target": "y", "sources": "x", "name": "dy/dx", **request_}
    ran = run_job(config(steps, point, [req]))
    rec = the_check(ran)
    assert ran.code == 0
    assert rec["outcome"] == outcome, rec
    assert rec["passed"] is (outcome == "passed")  # the boolean old readers use
    assert ("reason" in rec) is (outcome != "passed")
    assert rec.get("reason", "").startswith(reason), rec
    if point is BIG and outcome == "passed":  # checked by projection, and the record says so
        projected = rec["projection"].get("x", rec["projection"])
        assert projected["directions"] == 4 and "projection" in rec["method"] and "random directions" in rec["coverage"]
    word = {"passed": "ok", "failed": "FAILED", "unverified": "unverified"}[outcome]
    assert f"[{rec['method']}: {word}" in console.table(ran.log, "folder")


def test_a_float64_pass_that_cannot_run_leaves_the_check_unverified():
    spec = specs.build(config({"y": "x @ transpose(x)"}, {"x": [[1.0, 2.0]]}, [{"target": "y", "sources": "x"}]))
    # values of a rank the steps cannot take: the float64 pass fails in its matmul
    (rec,) = check.check_all(spec, {"x": np.array([1.0, 2.0])}, [(spec.requests[0], np.zeros((1, 1)))])
    assert (rec["outcome"], rec["passed"]) == ("unverified", False)
    assert rec["reason"].startswith("the float64 forward pass failed: InvalidArgumentError: ")
    assert console.check_summary(rec) == "[auto: unverified]"


def _tf_gradient(x0):
    """d/dx of reduce_sum(sin(x) * x) by TensorFlow itself, in float32 as the run computes it."""
    import tensorflow as tf

    x = tf.constant(x0, dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(tf.sin(x) * x)
    return tape.gradient(y, x).numpy()


@pytest.mark.parametrize("corrupt, mismatched, worst", [([7], 1, 7), (list(range(20)), 20, None)])
def test_a_corrupted_gradient_fails_saying_how_many_elements_disagree(corrupt, mismatched, worst):
    x0 = np.linspace(-2.0, 2.0, 20)
    spec = specs.build(config({"y": "reduce_sum(sin(x) * x)"}, {"x": x0.tolist()}, [{"target": "y", "sources": "x"}]))
    good = _tf_gradient(x0)
    bad = good.copy()
    bad[corrupt] += 1.0 + np.arange(len(corrupt), dtype=np.float32)  # the last corrupted is the worst
    values = {"x": x0.astype(np.float32)}
    (ok,) = check.check_all(spec, values, [(spec.requests[0], good)])
    (rec,) = check.check_all(spec, values, [(spec.requests[0], bad)])
    assert (ok["outcome"], ok["mismatched"], ok["elements"]) == ("passed", 0, 20)
    assert (rec["outcome"], rec["mismatched"], rec["elements"]) == ("failed", mismatched, 20)
    share = f"{100 * mismatched / 20:.3g}%"
    assert rec["reason"].startswith(f"mismatched elements: {mismatched} / 20 ({share}); TF gives "), rec["reason"]
    at = worst if worst is not None else corrupt[-1]
    x32 = values["x"].astype(np.float64)  # the point TensorFlow saw
    exact = np.sin(x32) + x32 * np.cos(x32)  # the analytic derivative there
    found = re.search(r"TF gives (\S+), the reference (\S+) at \[(\d+)\]", rec["reason"])
    assert found and int(found[3]) == at, rec["reason"]
    assert float(found[1]) == pytest.approx(float(bad[at]), rel=1e-8)
    assert float(found[2]) == pytest.approx(exact[at], rel=1e-8)


def test_differences_too_unsteady_to_judge_leave_the_check_unverified():
    spec = specs.build(config({"y": "x * x"}, {"x": 1.0}, [{"target": "y", "sources": "x"}]))
    # the user's code: differences whose measured error (noise) is half their size
    ref = Reference(np.array(2.0), "finite_difference", noise=2.0, measured=True)
    rec = check.compare(np.float32(2.0), ref, spec.requests[0])
    assert (rec["outcome"], rec["passed"]) == ("unverified", False)
    assert rec["reason"].startswith("the finite differences change by 50% of their size")


def _rec(spec, got, ref_value, **ref):
    return check.compare(np.float32(got), Reference(np.array(ref_value), "finite_difference", **ref), spec.requests[0])


@pytest.mark.parametrize(
    "outcomes, merged",
    [
        (("passed", "passed"), "passed"),
        (("passed", "unverified"), "unverified"),
        (("unverified", "failed"), "failed"),
        (("failed", "passed"), "failed"),
    ],
)
def test_merging_sources_failed_beats_unverified_beats_passed(outcomes, merged):
    spec = specs.build(config({"y": "x * x"}, {"x": 1.0}, [{"target": "y", "sources": "x"}]))
    made = {
        "passed": lambda: _rec(spec, 2.0, 2.0),
        "failed": lambda: _rec(spec, 3.0, 2.0),
        "unverified": lambda: check.unverified("finite_difference", TOO_MANY),
    }
    recs = {f"s{i}": made[o]() for i, o in enumerate(outcomes)}
    assert [r["outcome"] for r in recs.values()] == list(outcomes)
    out = check._merge(recs)
    assert (out["outcome"], out["passed"]) == (merged, merged == "passed")
    counted = [r for r in recs.values() if "elements" in r]
    assert out.get("elements") == (sum(r["elements"] for r in counted) if counted else None)


def test_console_shows_outcome_reason_and_coverage(run_job):
    ran = run_job(config({"y": "reduce_sum(x * x)"}, BIG, [TOO_HIGH]))
    text = console.table(ran.log, "folder")
    assert "[auto: unverified]" in text and "FAILED]" not in text
    assert f"check: {BEYOND}" in text
    # a check that covered only part of the derivative says which part
    part = {
        "method": "symbolic",
        "outcome": "passed",
        "passed": True,
        "max_abs_error": 1.5e-7,
        "coverage": "the diagonal blocks",
    }
    assert console.check_summary(part) == "[symbolic: ok, error 1.5e-07, part]"
    log = {**ran.log, "derivatives": [{**d, "check": part} for d in ran.log["derivatives"]]}
    assert "checked: the diagonal blocks" in console.table(log, "folder")
    # a log written before outcomes: its `passed` flag decides
    assert console.check_summary({"method": "symbolic", "passed": False}) == "[symbolic: FAILED]"


@pytest.mark.parametrize(
    "steps, point, state",
    [({"y": "reduce_sum(x * x)"}, BIG, "unverified"), ({"y": "abs(x)"}, {"x": 0.0}, "failed")],
    ids=["unverified", "failed"],
)
def test_expect_checks_pass_fails_on_failed_and_unverified_alike(run_job, steps, point, state):
    request = TOO_HIGH if state == "unverified" else {"target": "y", "sources": "x"}
    ran = run_job(config(steps, point, [request], expect={"checks": "pass"}))
    assert ran.code != 0 and ran.log["expect"]["met"] is False
    (mismatch,) = ran.log["expect"]["mismatches"]
    assert mismatch.startswith(f"dy/dx: check {state} ("), mismatch


def test_sweep_summary_shows_the_three_outcomes(run_job, tmp_path):
    cases = [
        ({"y": "x ** 3"}, {"x": 5.0}),
        ({"y": "abs(x)"}, {"x": 0.0}),
        ({"y": "reduce_sum(x * x)"}, BIG),
    ]
    sweep_dir = tmp_path / "sweep"
    for num, (steps, point) in enumerate(cases):
        ran = run_job(config(steps, point, [TOO_HIGH if point is BIG else {"target": "y", "sources": "x"}]))
        job = sweep_dir / str(num)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- case={num}\n")
        (job / "results.json").write_text((Path(ran.folder) / "results.json").read_text())
        if (Path(ran.folder) / "arrays.npz").exists():
            (job / "arrays.npz").write_bytes((Path(ran.folder) / "arrays.npz").read_bytes())
    rows = sweep.collect(sweep_dir)
    assert [r["checks"] for r in rows] == [{"dy/dx": "passed"}, {"dy/dx": "failed"}, {"dy/dx": "unverified"}]
    sweep.write(sweep_dir, rows)
    with open(sweep_dir / sweep.SUMMARY_CSV) as f:
        assert [r["check:dy/dx"] for r in csv.DictReader(f)] == ["passed", "failed", "unverified"]
    text = sweep.table(rows)
    for num, cell in enumerate(("passed", "FAILED", "unverified")):
        assert f"case={num}" in text and cell in text.splitlines()[num + 1], text


# ---------------------------------------------------------------- generator tangents and weights

RANDOM = {"random": {"shape": [3], "seed": 7}}


def _tf_by_kind(kind, x0, w):
    """TensorFlow's own jvp / hvp / weighted gradient of y = sin(x) * x at x0, along / by w."""
    import tensorflow as tf

    x = tf.constant(x0, dtype=tf.float32)
    v = tf.constant(w, dtype=tf.float32)
    if kind == "jvp":
        with tf.autodiff.ForwardAccumulator(x, v) as acc:
            y = tf.sin(x) * x
        return acc.jvp(y).numpy()
    if kind == "hvp":
        with tf.autodiff.ForwardAccumulator(x, v) as acc:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.sin(x) * x
            g = tape.gradient(y, x)
        return acc.jvp(g).numpy()
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.sin(x) * x
    return tape.gradient(y, x, output_gradients=v).numpy()


# kind, option, the generator, the array it denotes (NumPy, as points.py documents it)
GENERATED = [
    ("jvp", "tangents", RANDOM, np.random.default_rng(7).standard_normal([3])),
    ("hvp", "tangents", {"linspace": [-1.0, 2.0, 3]}, np.linspace(-1.0, 2.0, 3)),
    ("gradient", "output_gradients", RANDOM, np.random.default_rng(7).standard_normal([3])),
    ("gradient", "output_gradients", {"linspace": [0.5, 3.0, 3]}, np.linspace(0.5, 3.0, 3)),
]


@pytest.mark.parametrize(
    "kind, option, generator, array", GENERATED, ids=[f"{g[0]}-{next(iter(g[2]))}" for g in GENERATED]
)
@pytest.mark.parametrize("verify", ["auto", "finite_difference"])
def test_generated_tangents_and_output_gradients_are_checked_right(run_job, kind, option, generator, array, verify):
    x0 = [0.3, -1.1, 2.0]
    req = {"target": "y", "sources": "x", "kind": kind, "name": "d", option: generator}
    ran = run_job(config({"y": "sin(x) * x"}, {"x": x0}, [req], verify=verify, expect={"checks": "pass"}))
    (d,) = ran.log["derivatives"]
    assert ran.code == 0, d
    np.testing.assert_allclose(d["value"], _tf_by_kind(kind, np.float32(x0), array), rtol=1e-6)
    assert d["check"]["outcome"] == "passed", d["check"]
    want = "symbolic" if verify == "auto" else "finite_difference"
    assert d["check"]["method"] == want


def test_the_spec_keeps_the_config_text_and_the_evaluated_arrays():
    spec = specs.build(
        config(
            {"y": "sin(x) * x"},
            {"x": [0.3, -1.1, 2.0]},
            [{"target": "y", "sources": "x", "kind": "jvp", "tangents": RANDOM}],
        )
    )
    (req,) = spec.requests
    assert req.tangents == {"x": RANDOM} and "random" in repr(req) and "arrays" not in repr(req)
    np.testing.assert_array_equal(req.tangent("x"), np.random.default_rng(7).standard_normal([3]))
    assert req == dataclasses.replace(req)  # compared by its text, never by arrays
    moved = dataclasses.replace(req, tangents={"x": {"linspace": [0.0, 1.0, 3]}})  # arrays follow the text
    np.testing.assert_array_equal(moved.tangent("x"), np.linspace(0.0, 1.0, 3))


# ---------------------------------------------------------------- no NumPy warning on the console


@pytest.mark.slow
def test_an_overflowing_function_prints_no_numpy_warning(tmp_path):
    proc = cli(["experiment=seed_cubic", "function.steps.y=10 ** 10 ** 10 ** 10 * x"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr and "Warning" not in proc.stdout, proc.stderr
    assert "dy/dx = Infinity  [symbolic: FAILED]" in proc.stdout
    # what the warning hinted at is in the check: both values are infinite
    assert "the reference derivative is inf (TF gives inf)" in proc.stdout
