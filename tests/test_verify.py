"""Every derivative carries an independent check: tables of functions, kinds, and the
points where TensorFlow and the maths disagree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from runner.config import spec as specs
from runner.errors import ConfigError
from runner.record import console
from runner.sweep import summary as sweep
from tests.helpers import ROOT, composed


def config(steps, point, derivatives, inputs=None, tape=None, verify="auto", expect=None):
    """A complete config mapping, as Hydra would compose it from an experiment file."""
    return {
        "function": {"inputs": inputs if inputs is not None else list(point), "steps": steps},
        "point": point,
        "tape": {"persistent": True, **(tape or {})},
        "derivatives": derivatives,
        "verify": verify,
        "expect": expect,
    }


def checks(ran):
    return {d["name"]: d.get("check") for d in ran.log["derivatives"]}


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


# step, point x, d/dx by hand (a function of x), the method auto picks
FUNCTIONS = [
    ("polynomial", "3 * x**4 - 2 * x + 1", 1.5, lambda x: 12 * x**3 - 2, "symbolic"),
    ("sin_cos", "sin(x) * cos(x)", 0.7, lambda x: math.cos(2 * x), "symbolic"),
    ("tan", "tan(x)", 0.4, lambda x: 1 / math.cos(x) ** 2, "symbolic"),
    ("exp_log", "exp(x) * log(x)", 2.0, lambda x: math.exp(x) * (math.log(x) + 1 / x), "symbolic"),
    ("sigmoid", "sigmoid(x)", 0.3, lambda x: sigmoid(x) * (1 - sigmoid(x)), "symbolic"),
    ("softplus", "softplus(x)", -1.2, sigmoid, "symbolic"),
    ("tanh", "tanh(2 * x)", 0.25, lambda x: 2 * (1 - math.tanh(2 * x) ** 2), "symbolic"),
    ("pow_sqrt", "pow(x, 3) / sqrt(x)", 4.0, lambda x: 2.5 * x**1.5, "symbolic"),
    ("where", "where(x > 0, x * x, -x)", 1.5, lambda x: 2 * x, "symbolic"),
    ("constants", "e ** x + pi * x", 1.0, lambda x: math.e**x + math.pi, "symbolic"),
]


@pytest.mark.parametrize("steps_y, x, derivative, method", [f[1:] for f in FUNCTIONS], ids=[f[0] for f in FUNCTIONS])
def test_elementwise_functions_pass_a_symbolic_check(run_job, steps_y, x, derivative, method):
    ran = run_job(config({"y": steps_y}, {"x": x}, [{"target": "y", "sources": "x"}]))
    check = checks(ran)["dy/dx"]
    assert ran.code == 0
    assert check["method"] == method
    assert check["passed"] is True, check
    # the reference is taken at the point TensorFlow saw: x rounded to float32
    assert check["reference"] == pytest.approx(derivative(float(np.float32(x))), rel=1e-12)
    assert check["max_rel_error"] < 1e-4  # float32 TensorFlow against the float64 reference
    assert check["seconds"] >= 0


# Matmul and reductions have no elementwise SymPy meaning: finite differences check them.
A = [[1.0, 2.0], [3.0, 4.0]]
B = [[0.5], [1.5]]
TENSOR_FUNCTIONS = [
    # id, steps, point, sources, expected gradient of the last step per source
    (
        "matmul_sum_of_squares",
        {"y": "reduce_sum(matmul(a, b) ** 2)"},
        {"a": A, "b": B},
        ["a", "b"],
        {"a": [[3.5, 10.5], [7.5, 22.5]], "b": [[52.0], [74.0]]},
    ),
    (
        "matmul_operator_mean",
        {"p": "a @ b", "y": "reduce_mean(p)"},
        {"a": A, "b": B},
        ["a"],
        {"a": [[0.25, 0.75], [0.25, 0.75]]},
    ),
    ("reduce_max", {"y": "reduce_max(x * x)"}, {"x": [1.0, -3.0, 2.0]}, ["x"], {"x": [0.0, -6.0, 0.0]}),
    (
        "reduce_prod_axis",
        {"y": "reduce_sum(reduce_prod(x, 1))"},
        {"x": [[1.0, 2.0], [3.0, 4.0]]},
        ["x"],
        {"x": [[2.0, 1.0], [4.0, 3.0]]},
    ),
    ("transpose", {"y": "reduce_sum(transpose(a) * a)"}, {"a": A}, ["a"], {"a": [[2.0, 6.0], [4.0, 8.0]]}),
]


@pytest.mark.parametrize(
    "steps, point, sources, want", [t[1:] for t in TENSOR_FUNCTIONS], ids=[t[0] for t in TENSOR_FUNCTIONS]
)
def test_matmul_and_reductions_pass_a_finite_difference_check(run_job, steps, point, sources, want):
    target = list(steps)[-1]
    ran = run_job(config(steps, point, [{"target": target, "sources": sources, "name": "g"}]))
    check = checks(ran)["g"]
    assert check["method"] == "finite_difference"
    assert check["passed"] is True, check
    ref = check["reference"] if len(sources) > 1 else {sources[0]: check["reference"]}
    for s in sources:
        np.testing.assert_allclose(ref[s], want[s], rtol=1e-6, atol=1e-6)


# The requests of the core: several sources, intermediate sources, output_gradients,
# unconnected sources, unwatched inputs, held steps. reference: what the check computes.
REQUESTS = [
    (
        "several_sources",
        {"z": "x * x * w"},
        {"x": 3.0, "w": 2.0},
        {},
        {"target": "z", "sources": ["x", "w"]},
        {"x": 12.0, "w": 9.0},
        "symbolic",
    ),
    (
        "intermediate_source",
        {"y": "x * x", "z": "y * y"},
        {"x": 3.0},
        {},
        {"target": "z", "sources": "y"},
        18.0,
        "symbolic",
    ),
    (
        "input_and_step",
        {"y": "x * x", "z": "y * x"},
        {"x": 2.0},
        {},
        {"target": "z", "sources": ["x", "y"]},
        {"x": 12.0, "y": 2.0},
        "symbolic",
    ),
    (
        "output_gradients",
        {"y": "x * x"},
        {"x": [1.0, 2.0]},
        {},
        {"target": "y", "sources": "x", "output_gradients": [3.0, 0.5]},
        [6.0, 2.0],
        "symbolic",
    ),
    (
        "broadcast_scalar_source",
        {"y": "w * x"},
        {"x": [1.0, 2.0, 3.0], "w": 2.0},
        {},
        {"target": "y", "sources": "w"},
        6.0,
        "symbolic",
    ),
    ("unconnected_none", {"y": "x * x"}, {"x": 1.0, "w": 2.0}, {}, {"target": "y", "sources": "w"}, None, "symbolic"),
    (
        "unconnected_zero",
        {"y": "x * x"},
        {"x": 1.0, "w": 2.0},
        {},
        {"target": "y", "sources": "w", "unconnected": "zero"},
        0.0,
        "symbolic",
    ),
    (
        "unwatched_input",
        {"y": "x * w"},
        {"x": 1.0, "w": 2.0},
        {"watch": ["x"]},
        {"target": "y", "sources": ["x", "w"]},
        {"x": 2.0, "w": None},
        "symbolic",
    ),
    (
        "stop_recording_step",
        {"s": "x * 3", "y": "s * x"},
        {"x": 2.0},
        {"stop_recording": ["s"]},
        {"target": "y", "sources": "x"},
        6.0,
        "symbolic",
    ),
    (
        "stop_gradient",
        {"y": "x * stop_gradient(x * x)"},
        {"x": 2.0},
        {},
        {"target": "y", "sources": "x"},
        4.0,
        "symbolic",
    ),
    (
        "matmul_intermediate",
        {"p": "a @ b", "y": "reduce_sum(p * p)"},
        {"a": A, "b": B},
        {},
        {"target": "y", "sources": "p"},
        [[7.0], [15.0]],
        "finite_difference",
    ),
]


@pytest.mark.parametrize(
    "steps, point, tape, request_, reference, method", [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
@pytest.mark.parametrize("verify", ["auto", "finite_difference"])
def test_every_request_form_passes_its_check(run_job, steps, point, tape, request_, reference, method, verify):
    ran = run_job(config(steps, point, [{**request_, "name": "d"}], tape=tape, verify=verify))
    check = checks(ran)["d"]
    assert check["passed"] is True, check
    assert set(check["method"].split("+")) == {method if verify == "auto" else "finite_difference"}
    got = check["reference"]
    if isinstance(reference, dict):
        for k, v in reference.items():
            assert (got[k] is None) if v is None else got[k] == pytest.approx(v, rel=1e-6)
    elif reference is None:
        assert got is None and ran.derivatives["d"] is None
    else:
        np.testing.assert_allclose(got, reference, rtol=1e-6)


def test_variables_follow_trainable_and_watch_accessed_variables(run_job):
    inputs = {"v": {"kind": "variable"}, "u": {"kind": "variable", "trainable": False}}
    ran = run_job(config({"y": "v * u"}, {"v": 2.0, "u": 5.0}, [{"target": "y", "sources": ["v", "u"]}], inputs=inputs))
    check = checks(ran)["dy/d(v,u)"]
    assert check["passed"] is True and check["reference"] == {"v": 5.0, "u": None}


def test_float64_runs_get_a_tight_tolerance(run_job):
    inputs = {"x": {"dtype": "float64"}}
    ran = run_job(config({"y": "sin(x) * exp(x)"}, {"x": 0.3}, [{"target": "y", "sources": "x"}], inputs=inputs))
    check = checks(ran)["dy/dx"]
    assert check["tolerance"]["rtol"] == 1e-8
    assert check["passed"] is True and check["max_rel_error"] < 1e-12


# Where TensorFlow and the maths disagree: failed checks with a reason, never a crash, and
# never a failed run unless the config declared `expect.checks: pass`.
DISAGREEMENTS = [
    ("relu_at_0", {"y": "relu(x)"}, {"x": 0.0}, "x", 0.0, "non-differentiable point"),
    ("abs_at_0", {"y": "abs(x)"}, {"x": 0.0}, "x", 0.0, "non-differentiable point"),
    ("maximum_at_0", {"y": "maximum(x, 0.0)"}, {"x": 0.0}, "x", 1.0, "non-differentiable point"),
    ("norm_at_0", {"y": "sqrt(x * x + w * w)"}, {"x": 0.0, "w": 0.0}, "x", "NaN", "TF gradient is NaN"),
    (
        "softplus_overflow",
        {"y": "log(1 + exp(x))"},
        {"x": 100.0},
        "x",
        "NaN",
        "TF gradient is NaN where the reference is 1",
    ),
]


@pytest.mark.parametrize(
    "steps, point, source, tf_value, reason", [d[1:] for d in DISAGREEMENTS], ids=[d[0] for d in DISAGREEMENTS]
)
@pytest.mark.parametrize("verify", ["auto", "finite_difference"])
def test_disagreements_fail_their_check_with_a_reason(run_job, steps, point, source, tf_value, reason, verify):
    ran = run_job(config(steps, point, [{"target": "y", "sources": source, "name": "d"}], verify=verify))
    assert ran.code == 0 and ran.log["expect"]["met"] is True  # nothing declared: checks judge nothing
    assert ran.derivatives["d"] == tf_value
    check = checks(ran)["d"]
    assert check["passed"] is False
    assert reason in check["reason"]


def test_kink_that_is_smooth_passes(run_job):
    # abs switches at 0, but abs(x)**2 is differentiable there: the one-sided slopes agree
    ran = run_job(config({"y": "abs(x) ** 2"}, {"x": 0.0}, [{"target": "y", "sources": "x"}]))
    check = checks(ran)["dy/dx"]
    assert check["passed"] is True and check["method"] == "finite_difference"
    assert "abs (column 1) in step y switches at this point" in check["note"]


def test_declared_checks_fail_the_run_on_a_disagreement(run_job):
    ran = run_job(config({"y": "abs(x)"}, {"x": 0.0}, [{"target": "y", "sources": "x"}], expect={"checks": "pass"}))
    assert ran.code == 1
    assert ran.log["expect"]["declared"] == {"checks": "pass"}
    assert ran.log["expect"]["met"] is False
    (mismatch,) = ran.log["expect"]["mismatches"]
    assert mismatch.startswith("dy/dx: check failed (finite_difference): non-differentiable point at x")


def test_declared_checks_pass_on_a_smooth_function(run_job):
    ran = run_job(
        config(
            {"y": "x ** 3"},
            {"x": 5.0},
            [{"target": "y", "sources": "x"}],
            expect={"checks": "pass", "derivatives": {"dy/dx": 75.0}},
        )
    )
    assert ran.code == 0 and ran.log["expect"]["met"] is True


def test_a_check_that_cannot_run_is_unverified_without_crashing_the_run(run_job):
    # too many elements for element-wise differences, and an order too high for a projection
    point = {"x": {"random": {"shape": [5000], "seed": 0}}}
    ran = run_job(config({"y": "reduce_sum(x * x)"}, point, [{"target": "y", "sources": "x", "order": 5}]))
    check = checks(ran)["d5y/dx5"]
    assert ran.code == 0
    assert (check["outcome"], check["passed"]) == ("unverified", False)
    assert check["reason"].startswith(
        "the source has 5000 elements; finite differences take at most 4096; a projection takes gradients of order at most 4"
    )


def test_a_failing_float64_pass_names_tensorflows_own_error():
    from runner.verify import check

    spec = specs.build(config({"y": "x @ transpose(x)"}, {"x": [[1.0, 2.0]]}, [{"target": "y", "sources": "x"}]))
    # values of a rank the steps cannot take: the float64 pass fails in its matmul
    (rec,) = check.check_all(spec, {"x": np.array([1.0, 2.0])}, [(spec.requests[0], np.zeros((1, 1)))])
    assert (rec["outcome"], rec["passed"]) == ("unverified", False)
    assert rec["reason"].startswith("the float64 forward pass failed: InvalidArgumentError: ")


def test_verify_off_attaches_no_check(run_job):
    ran = run_job(config({"y": "x ** 3"}, {"x": 5.0}, [{"target": "y", "sources": "x"}], verify="off"))
    assert checks(ran) == {"dy/dx": None}
    assert "verify_s" in ran.log["timing"]


def test_verify_symbolic_falls_back_where_it_does_not_apply(run_job):
    ran = run_job(
        config({"y": "reduce_sum(x * x)"}, {"x": [1.0, 2.0]}, [{"target": "y", "sources": "x"}], verify="symbolic")
    )
    check = checks(ran)["dy/dx"]
    assert check["method"] == "finite_difference" and check["passed"] is True
    assert (
        check["note"]
        == "symbolic check does not apply (the target uses matmul, a reduction or transpose): finite differences used"
    )


@pytest.mark.parametrize(
    "chain, order, method",
    [(8, 1, "symbolic"), (8, 2, "finite_difference"), (6, 2, "symbolic"), (6, 3, "finite_difference")],
)
def test_a_formula_too_large_to_differentiate_again_falls_back(run_job, chain, order, method):
    """s = sin(s)*s chains grow ~12-fold per order: before this bound, SymPy took 25 s on the
    8-chain at order 2 and 40 s on the 6-chain at order 3; now differences check them."""
    steps = {"s0": "sin(x) * x", **{f"s{i}": f"sin(s{i - 1}) * s{i - 1}" for i in range(1, chain + 1)}}
    request = {"target": f"s{chain}", "sources": "x", "order": order}
    ran = run_job(config(steps, {"x": 0.7}, [request], verify="symbolic"))
    (check,) = checks(ran).values()
    assert check["method"] == method and check["passed"] is True
    if method == "finite_difference":
        assert "the formula has over 20,000 nodes, too large for SymPy: finite differences used" in check["note"]


def test_a_formula_that_shrinks_stays_symbolic_at_high_order(run_job):
    ran = run_job(
        config({"y": "x ** 3"}, {"x": 5.0}, [{"target": "y", "sources": "x", "order": 12}]) | {"limits": {"order": 12}}
    )
    (check,) = checks(ran).values()
    assert check["method"] == "symbolic" and check["passed"] is True


CONFIG_ERRORS = [
    ("unknown_mode", {"verify": "exact"}, "verify"),
    ("checks_not_pass", {"expect": {"checks": "maybe"}}, "expect.checks"),
    ("checks_without_checking", {"verify": "off", "expect": {"checks": "pass"}}, "expect.checks"),
]


@pytest.mark.parametrize("extra, key", [c[1:] for c in CONFIG_ERRORS], ids=[c[0] for c in CONFIG_ERRORS])
def test_verify_config_errors_name_the_key(extra, key):
    cfg = {**config({"y": "x"}, {"x": 1.0}, [{"target": "y", "sources": "x"}]), **extra}
    with pytest.raises(ConfigError) as err:
        specs.build(cfg)
    assert err.value.key == key


def test_verify_is_in_the_schema():
    assert composed([])["verify"] == "auto"
    assert composed(["verify=finite_difference"])["verify"] == "finite_difference"


SEEDS = ["seed_cubic", "seed_chain_rule", "seed_non_persistent", "seed_persistent"]


@pytest.mark.parametrize("experiment", SEEDS)
def test_seed_examples_pass_their_checks(run_job, experiment):
    ran = run_job([f"experiment={experiment}"])
    assert ran.log["derivatives"]
    for d in ran.log["derivatives"]:
        assert d["check"]["passed"] is True and d["check"]["method"] == "symbolic", d


# Example configs whose checks fail on purpose; every other example's checks must pass.
FAILING_ON_PURPOSE = {
    "checks_kinks": "TensorFlow and the maths disagree at kinks and NaN gradients",
}


def test_every_example_config_checks_every_derivative(run_job):
    experiments = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    for experiment in experiments:
        ran = run_job([f"experiment={experiment}"])
        for d in ran.log["derivatives"]:
            assert "check" in d and isinstance(d["check"]["passed"], bool), (experiment, d)
            if experiment not in FAILING_ON_PURPOSE:
                assert d["check"]["passed"], (experiment, d["name"], d["check"].get("reason"))


def test_console_and_sweep_summary_show_the_check(run_job):
    ran = run_job(
        config(
            {"y": "abs(x)", "z": "x * x"},
            {"x": 0.0},
            [{"target": "y", "sources": "x"}, {"target": "z", "sources": "x"}],
        )
    )
    text = console.table(ran.log, "folder")
    assert "dy/dx = 0.0  [finite_difference: FAILED]" in text
    assert "check: non-differentiable point at x: left slope -1, right slope 1" in text
    assert "dz/dx = 0.0  [symbolic: ok, error 0]" in text
    (Path(ran.folder) / ".hydra").mkdir()
    (row,) = sweep.collect(Path(ran.folder).parent)
    assert row["checks"] == {"dy/dx": "failed", "dz/dx": "passed"}


# The other kinds (jacobian, batch_jacobian, hessian, jvp, hvp, order > 1): each request is
# checked against TensorFlow's own answer, computed here with the TF API the tape's rule
# (runner/tape/requests.py) uses.
def _kind_case(steps, point, request, tf_value, mode="auto"):
    import dataclasses

    from runner.verify import check as verify

    base = config(steps, point, [{"target": request["target"], "sources": request["sources"]}], verify=mode)
    spec = specs.build(base)
    req = dataclasses.replace(spec.requests[0], **{k: v for k, v in request.items() if k not in ("target", "sources")})
    fwd = verify.Forward(spec, {k: np.asarray(v, dtype=np.float32) for k, v in spec.point.items()})
    return verify.check(spec, req, tf_value, fwd, verify.tracked_names(spec))


def _tf():
    import tensorflow as tf

    return tf


def test_jacobian_check():
    tf = _tf()
    x, w = tf.constant([1.0, 2.0, 3.0]), tf.constant(2.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        y = x**2 * w
    for source, tensor, want in (("x", x, np.diag([4.0, 8.0, 12.0])), ("w", w, [1.0, 4.0, 9.0])):
        check = _kind_case(
            {"y": "x ** 2 * w"},
            {"x": [1.0, 2.0, 3.0], "w": 2.0},
            {"target": "y", "sources": source, "kind": "jacobian"},
            tape.jacobian(y, tensor).numpy(),
        )
        assert check["passed"] is True, check
        np.testing.assert_allclose(check["reference"], want, rtol=1e-6, atol=1e-9)


def test_batch_jacobian_check():
    tf = _tf()
    xs, ms = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]]
    x, m = tf.constant(xs), tf.constant(ms)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.linalg.matmul(x, m) ** 2
    got = tape.batch_jacobian(y, x).numpy()
    check = _kind_case(
        {"y": "matmul(x, m) ** 2"}, {"x": xs, "m": ms}, {"target": "y", "sources": "x", "kind": "batch_jacobian"}, got
    )
    assert check["passed"] is True, check
    assert np.shape(check["reference"]) == (2, 2, 3)


def test_hessian_check():
    tf = _tf()
    x = tf.constant([1.0, -2.0])
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(x**3)
        g = inner.gradient(y, x)
    got = outer.jacobian(g, x).numpy()
    check = _kind_case(
        {"y": "reduce_sum(x ** 3)"}, {"x": [1.0, -2.0]}, {"target": "y", "sources": "x", "kind": "hessian"}, got
    )
    assert check["passed"] is True, check
    np.testing.assert_allclose(check["reference"], np.diag([6.0, -12.0]), atol=1e-4)


def test_jvp_checks_one_and_several_sources():
    tf = _tf()
    x, w = tf.constant([0.5, 1.0]), tf.constant(3.0)
    with tf.autodiff.ForwardAccumulator(x, tf.constant([1.0, 2.0])) as acc:
        y = tf.sin(x) * w
    check = _kind_case(
        {"y": "sin(x) * w"},
        {"x": [0.5, 1.0], "w": 3.0},
        {"target": "y", "sources": "x", "kind": "jvp", "tangents": [1.0, 2.0]},
        acc.jvp(y).numpy(),
    )
    assert check["passed"] is True, check
    with tf.autodiff.ForwardAccumulator([x, w], [tf.constant([1.0, 0.0]), tf.constant(1.0)]) as acc:
        y = tf.sin(x) * w
    check = _kind_case(
        {"y": "sin(x) * w"},
        {"x": [0.5, 1.0], "w": 3.0},
        {"target": "y", "sources": ["x", "w"], "kind": "jvp", "tangents": [[1.0, 0.0], 1.0]},
        acc.jvp(y).numpy(),
    )
    assert check["passed"] is True and check["method"] == "symbolic", check
    np.testing.assert_allclose(check["reference"], [3 * math.cos(0.5) + math.sin(0.5), math.sin(1.0)], rtol=1e-6)


def test_hvp_check():
    tf = _tf()
    x, v = tf.constant([1.0, 2.0]), tf.constant([1.0, -1.0])
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = tf.reduce_sum(x**3) + x[0] * x[1]
        g = inner.gradient(y, x)
        gv = tf.reduce_sum(g * v)
    got = outer.gradient(gv, x).numpy()
    check = _kind_case(
        {"y": "reduce_sum(x ** 3) + reduce_prod(x)"},
        {"x": [1.0, 2.0]},
        {"target": "y", "sources": "x", "kind": "hvp", "tangents": [1.0, -1.0]},
        got,
    )
    assert check["passed"] is True, check
    np.testing.assert_allclose(check["reference"], [6 * 1.0 - 1.0, 1.0 - 12.0], rtol=1e-5)


@pytest.mark.parametrize("order, want", [(2, 12.0), (3, 6.0)])
@pytest.mark.parametrize("mode", ["auto", "finite_difference"])
def test_higher_order_gradient_check(order, want, mode):
    from runner.verify import check as verify

    got = np.float32(want)
    base = {**config({"y": "x ** 3"}, {"x": 2.0}, [{"target": "y", "sources": "x"}]), "verify": mode}
    spec = specs.build(base)
    import dataclasses

    req = dataclasses.replace(spec.requests[0], order=order)
    fwd = verify.Forward(spec, {"x": np.float32(2.0)})
    check = verify.check(spec, req, got, fwd, verify.tracked_names(spec))
    assert check["passed"] is True, check
    assert check["method"] == ("symbolic" if mode == "auto" else "finite_difference")
    assert check["reference"] == pytest.approx(want, rel=1e-3)


def test_wrong_shape_fails_the_check_with_a_reason():
    check = _kind_case(
        {"y": "x * x"}, {"x": [1.0, 2.0]}, {"target": "y", "sources": "x", "kind": "jacobian"}, np.zeros(2, np.float32)
    )
    assert check["passed"] is False
    assert check["reason"] == "shape [2] differs from the reference's [2, 2]"


NONE_REASONS = [
    (
        "unwatched_constant",
        {"y": "x * w"},
        {"x": 1.0, "w": 2.0},
        {"watch": ["x"]},
        "w",
        "TensorFlow gives None: the tape does not watch w",
    ),
    (
        "no_path",
        {"y": "x * x"},
        {"x": 1.0, "w": 2.0},
        {},
        "w",
        "TensorFlow gives None: the tape records no path from w to y",
    ),
    (
        "held_step",
        {"s": "x * 3", "y": "s * x"},
        {"x": 2.0},
        {"stop_recording": ["s"]},
        "s",
        "TensorFlow gives None: the tape does not watch s",
    ),
]


@pytest.mark.parametrize(
    "steps, point, tape, source, note", [n[1:] for n in NONE_REASONS], ids=[n[0] for n in NONE_REASONS]
)
def test_none_gradients_are_explained(run_job, steps, point, tape, source, note):
    ran = run_job(config(steps, point, [{"target": "y", "sources": source, "name": "d"}], tape=tape))
    check = checks(ran)["d"]
    assert ran.derivatives["d"] is None
    assert check["passed"] is True and check["note"] == note


def _tf_jacobian(fn, x, batch=False):
    tf = _tf()
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    return (tape.batch_jacobian(y, x) if batch else tape.jacobian(y, x)).numpy()


def _tf_hessian(fn, x):
    tf = _tf()
    x = tf.constant(x)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = fn(x)
        g = inner.gradient(y, x)
    return outer.jacobian(g, x).numpy()


def _tf_hvp(fn, x, v):
    tf = _tf()
    x, v = tf.constant(x), tf.constant(v)
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = fn(x)
        gv = tf.reduce_sum(inner.gradient(y, x) * v)
    return outer.gradient(gv, x).numpy()


def _elementwise_kinds():
    tf = _tf()
    X = [[0.5, 1.0, 1.5], [-0.5, 2.0, 0.25]]
    return [
        ("jacobian", "sin(x) * 2.0", {"kind": "jacobian"}, _tf_jacobian(lambda x: tf.sin(x) * 2.0, X)),
        ("batch_jacobian", "x ** 2", {"kind": "batch_jacobian"}, _tf_jacobian(lambda x: x**2, X, batch=True)),
        ("hessian", "x ** 3", {"kind": "hessian"}, _tf_hessian(lambda x: x**3, X)),
        (
            "hvp",
            "sin(x)",
            {"kind": "hvp", "tangents": [[1.0, -1.0, 2.0], [0.5, 0.0, 1.0]]},
            _tf_hvp(tf.sin, X, [[1.0, -1.0, 2.0], [0.5, 0.0, 1.0]]),
        ),
    ]


@pytest.mark.parametrize("mode", ["auto", "finite_difference"])
@pytest.mark.parametrize("case", range(4), ids=["jacobian", "batch_jacobian", "hessian", "hvp"])
def test_elementwise_kinds_are_checked_symbolically(case, mode):
    kind, step, request, got = _elementwise_kinds()[case]
    X = [[0.5, 1.0, 1.5], [-0.5, 2.0, 0.25]]
    check = _kind_case({"y": step}, {"x": X}, {"target": "y", "sources": "x", **request}, got, mode=mode)
    assert check["passed"] is True, check
    assert check["method"] == ("symbolic" if mode == "auto" else "finite_difference")
    np.testing.assert_allclose(check["reference"], got, rtol=1e-4, atol=1e-4)


def test_formulas_too_large_for_sympy_go_to_finite_differences(run_job):
    # each step doubles the written-out formula: 2**14 copies of x in s14
    steps = {"s0": "sin(x)"}
    steps.update({f"s{i}": f"s{i - 1} * s{i - 1} + 0.5" for i in range(1, 15)})
    ran = run_job(
        config(steps, {"x": 0.1}, [{"target": "s14", "sources": "x", "name": "d"}], inputs={"x": {"dtype": "float64"}})
    )
    check = checks(ran)["d"]
    assert check["method"] == "finite_difference" and check["passed"] is True, check
    assert ran.log["timing"]["verify_s"] < 5


UNDEFINED = [
    (
        "log_of_negative",
        {"y": "log(x)"},
        {"x": -1.0},
        -1.0,
        "the function is undefined here: y is NaN at this point (in float64)",
    ),
    (
        "pole",
        {"y": "1 / x"},
        {"x": 0.0},
        "-Infinity",
        "the function is undefined here: y is infinite at this point (in float64)",
    ),
]


@pytest.mark.parametrize("steps, point, tf_value, reason", [u[1:] for u in UNDEFINED], ids=[u[0] for u in UNDEFINED])
def test_derivative_of_an_undefined_value_fails_its_check(run_job, steps, point, tf_value, reason):
    ran = run_job(config(steps, point, [{"target": "y", "sources": "x", "name": "d"}]))
    assert ran.code == 0 and ran.derivatives["d"] == tf_value
    check = checks(ran)["d"]
    assert check["passed"] is False and check["reason"].startswith(reason)


def test_config_errors_import_neither_tensorflow_nor_sympy(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from runner import job\n"
        "cfg = {'function': {'inputs': ['x'], 'steps': {'y': 'x'}}, 'point': {'x': 1.0},"
        " 'derivatives': [{'target': 'y', 'sources': 'x'}], 'verify': 'exact'}\n"
        f"assert job.run(cfg, Path({str(tmp_path)!r}), echo=False) == 2\n"
        "print(sorted(m for m in ('tensorflow', 'sympy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_an_hvp_by_several_sources_moves_them_all_in_its_check(tmp_path):
    """H v by [x, y]: the block for x is d2f/dx2 vx + d2f/dxdy vy; finite differences must
    move both sources along their tangents (they once moved only the block's own source)."""
    from runner import job

    cfg = {
        "function": {
            "inputs": {"x": {"dtype": "float64"}, "y": {"dtype": "float64"}},
            "steps": {"z": "reduce_sum(x * y ** 2)"},
        },
        "point": {"x": [1.0, 2.0], "y": [3.0, -1.0]},
        "derivatives": [{"target": "z", "sources": ["x", "y"], "kind": "hvp", "tangents": {"x": 1.0, "y": 0.5}}],
        "verify": "finite_difference",
    }
    assert job.run(cfg, tmp_path, echo=False) == 0
    (rec,) = json.loads((tmp_path / "results.json").read_text())["derivatives"]
    x, y, vx, vy = np.array([1.0, 2.0]), np.array([3.0, -1.0]), 1.0, 0.5
    # f = sum(x y^2): f_xx = 0, f_xy = 2y, f_yy = 2x
    assert rec["value"]["x"] == pytest.approx((2 * y * vy).tolist())
    assert rec["value"]["y"] == pytest.approx((2 * y * vx + 2 * x * vy).tolist())
    assert rec["check"]["passed"] is True, rec["check"]
