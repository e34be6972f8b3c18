"""The shipped examples of a user's own code give TensorFlow's own numbers, and run only when trusted.

Each experiment (conf/experiment/NAME.yaml) calls a function of `runner.examples`, as a user's
config calls their own package (docs/your-code.md). Every expected number is computed here by
calling the same example function directly under `tf.GradientTape`, and where one exists by
the formula too, never taken from the runner. Without `RUNNER_TRUST` each experiment is
refused with exit 2 before anything is imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, probe_script

TRUST = "runner.examples"
EXAMPLES = {  # experiment -> the callable its config names
    "log1pexp": "runner.examples.custom_gradients.log1pexp",
    "wrong_gradient": "runner.examples.custom_gradients.wrong_square",
    "keras_dense": "runner.examples.layers.make_dense",
    "control_flow": "runner.examples.control_flow.huber",
}


@pytest.fixture
def trusted(monkeypatch):
    monkeypatch.setenv("RUNNER_TRUST", TRUST)


def tape_gradient(f, x, compiled: bool = False):
    """df/dx by TensorFlow alone: f called on a watched constant under a GradientTape."""
    import tensorflow as tf

    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        return tape.gradient(y, x)

    return np.asarray((tf.function(grad) if compiled else grad)(tf.constant(x, dtype=tf.float32)))


def only(ran):
    (record,) = ran.log["derivatives"]
    return record


# ---- log1pexp: a custom gradient that stays finite where autodiff gives NaN --------------


def test_log1pexp_gives_the_custom_gradient_at_100(trusted, run_job):
    from runner.examples.custom_gradients import log1pexp

    ran = run_job(["experiment=log1pexp"], name="log1pexp")
    want = tape_gradient(log1pexp, 100.0)
    assert want == 1.0  # d/dx log(1 + e^x) = 1 - 1/(1 + e^x), 1.0 in float32 at x = 100
    assert ran.code == 0
    assert ran.derivatives["dy/dx"] == want
    assert only(ran)["check"]["method"] == "finite_difference" and only(ran)["check"]["passed"]
    assert "precision" not in only(ran)["check"]  # the code takes float64: differences in float64
    assert ran.log["code"] == {
        "callable": EXAMPLES["log1pexp"],
        "trusted": [TRUST],
        "outputs": ["y"],
        "called_with": "positional (x)",
        "variables": {},
        "sources": ran.log["code"]["sources"],
    }
    # the code that could have run, fingerprinted: every trusted module the run imported
    import hashlib

    import runner.examples.custom_gradients as module

    sources = ran.log["code"]["sources"]
    assert set(sources) >= {"runner.examples", "runner.examples.custom_gradients"}
    assert sources["runner.examples.custom_gradients"] == hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()


def test_the_same_expression_by_plain_autodiff_gives_nan(monkeypatch, run_job):
    # the docs' contrast: the expression form needs no trust, and TF's gradient overflows
    import tensorflow as tf

    monkeypatch.delenv("RUNNER_TRUST", raising=False)
    ran = run_job(["experiment=log1pexp", "function.callable=null", '+function.steps.y="log(1 + exp(x))"'])
    assert np.isnan(tape_gradient(lambda x: tf.math.log(1 + tf.exp(x)), 100.0))
    assert ran.derivatives["dy/dx"] == "NaN"  # JSON has no NaN: the log writes it as a string
    assert ran.code == 1  # the file's expect dy/dx: 1.0 is not met
    assert "NaN" in only(ran)["check"]["reason"]
    assert "code" not in ran.log


# ---- wrong_square: a wrong backward pass, caught by the check ------------------------------


def test_wrong_square_fails_its_check_naming_the_worst_element(trusted, run_job):
    from runner.examples.custom_gradients import wrong_square

    ran = run_job(["experiment=wrong_gradient"], name="wrong_gradient")
    x = np.asarray(ran.values["x"])
    got = tape_gradient(wrong_square, x)
    np.testing.assert_array_equal(ran.derivatives["dy/dx"], got)  # TF's own (wrong) numbers
    right = 2 * x  # d(x**2)/dx
    worst = int(np.argmax(np.abs(got - right)))
    check = only(ran)["check"]
    assert check["passed"] is False
    assert f"TF gives {got[worst]:.9g}, the reference {right[worst]:.9g} at [{worst}]" in check["reason"]
    np.testing.assert_allclose(check["reference"], right, rtol=1e-6)
    assert ran.code == 0  # the file declares no expect.checks: the failure is shown, not fatal


def test_wrong_square_with_checks_declared_fails_the_run(trusted, run_job):
    ran = run_job(["experiment=wrong_gradient", "expect.checks=pass"])
    assert ran.code == 1
    assert ran.log["expect"]["met"] is False
    assert ran.log["status"] == "ok"  # the run itself completed; the check failed it


# ---- a Keras Dense layer: gradients by its weights -----------------------------------------


def test_keras_dense_loss_gradient_by_its_weights(trusted, run_job):
    import tensorflow as tf

    from runner.examples.layers import make_dense

    ran = run_job(["experiment=keras_dense"], name="keras_dense")
    assert ran.code == 0
    x = np.asarray(ran.values["x"], dtype=np.float64)
    kernel = np.asarray(ran.values["dense/kernel"], dtype=np.float64)
    bias = np.asarray(ran.values["dense/bias"], dtype=np.float64)
    got = ran.derivatives["dloss/dw"]
    assert set(got) == {"dense/kernel", "dense/bias"}

    # by the formula from the logged weights: loss = mean(y**2), y = x @ kernel + bias
    y = x @ kernel + bias
    dy = 2 * y / y.size
    np.testing.assert_allclose(got["dense/kernel"], x.T @ dy, rtol=1e-5)
    np.testing.assert_allclose(got["dense/bias"], dy.sum(axis=0), rtol=1e-5)

    # by TensorFlow alone: the same factory, the same seed, the same call
    layer = make_dense(units=2, name="dense_here")
    xt = tf.constant(ran.values["x"], dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(layer(xt) ** 2)
    dkernel, dbias = tape.gradient(loss, [layer.kernel, layer.bias])
    np.testing.assert_array_equal(kernel, layer.kernel.numpy())  # seeded: the same draw
    np.testing.assert_allclose(got["dense/kernel"], dkernel.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["dense/bias"], dbias.numpy(), rtol=1e-6)

    assert ran.log["code"]["callable"] == {"_target_": EXAMPLES["keras_dense"], "units": 2}
    assert ran.log["code"]["variables"] == {
        "dense/kernel": {"shape": [3, 2], "dtype": "float32"},
        "dense/bias": {"shape": [2], "dtype": "float32"},
    }
    check = only(ran)["check"]
    assert check["passed"] and "differences taken in float32" in check["note"]


def test_keras_dense_paths_are_the_same_in_every_job_of_a_process(trusted, run_job):
    # Keras numbers unnamed layers per process (dense, dense_1, ...); a sweep's jobs share one
    first = run_job(["experiment=keras_dense"])
    second = run_job(["experiment=keras_dense", "point.x=[[0.0,1.0,0.0]]"])
    assert set(first.derivatives["dloss/dw"]) == set(second.derivatives["dloss/dw"]) == {"dense/kernel", "dense/bias"}


def test_keras_dense_check_says_its_precision(trusted, run_job):
    ran = run_job(["experiment=keras_dense"])
    assert only(ran)["check"]["precision"] == "float32"


# ---- huber: Python control flow under tape.compile: function ------------------------------


@pytest.mark.parametrize("x", [0.5, 3.0, -3.0], ids=["quadratic", "linear+", "linear-"])
def test_control_flow_takes_each_branch_compiled(trusted, run_job, x):
    from runner.examples.control_flow import huber

    ran = run_job(["experiment=control_flow", f"point.x={x}"])
    assert ran.code == 0
    assert ran.log["tape"]["compile"] == "function"
    want = tape_gradient(huber, x, compiled=True)  # autograph: `if` on a tensor becomes tf.cond
    assert want == (x if abs(x) <= 1.0 else np.sign(x))  # delta = 1
    assert ran.derivatives["dy/dx"] == want
    assert only(ran)["check"]["passed"]


# ---- without trust: refused before anything is imported ------------------------------------

# `python -m runner ARGS` in an environment without RUNNER_TRUST; prints the exit code,
# whether TensorFlow was imported, and whether any module of runner.examples was
_PROBE = probe_script(
    "done.code, 'tensorflow' in sys.modules, any(m.startswith('runner.examples') for m in sys.modules)"
)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", list(EXAMPLES))
def test_untrusted_example_is_refused_before_import(experiment, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, f"experiment={experiment}"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["2", "False", "False"]
    module = EXAMPLES[experiment].rsplit(".", 1)[0]
    key = "function.callable._target_" if experiment == "keras_dense" else "function.callable"
    assert result.stderr.splitlines() == [
        f"config error: {key}: module {module!r} is not trusted (RUNNER_TRUST is not set); "
        f"a config cannot grant trust: to run its code, start the command with RUNNER_TRUST={module} in the environment"
    ]
    (log,) = tmp_path.glob("outputs/*/*/results.json")  # the refusal is logged; nothing ran
    refused = json.loads(log.read_text())
    assert (refused["error"]["type"], refused["error"]["key"]) == ("ConfigError", key)
    assert refused["values"] == {} and refused["environment"]["tensorflow"] is None
