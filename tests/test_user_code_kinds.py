"""A user's own code as the function (issue 13): every derivative kind and tape option, Keras
variables, failing code, and the finite-difference checks of what the code's gradients say.

Expected numbers are TensorFlow's own, computed here by hand with the same ops on a
`tf.GradientTape` / `ForwardAccumulator` (or an analytic formula in NumPy); the code is
`tests/helpers/user_functions.py` and `runner/examples/`, trusted by RUNNER_TRUST.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any, Callable, Dict, Optional

import numpy as np
import pytest
import tensorflow as tf

from runner import job
from runner.examples import control_flow, custom_gradients
from tests.helpers import Ran, cli, composed
from tests.helpers import user_functions as uf

U = "tests.helpers.user_functions."
DENSE = {"_target_": "runner.examples.layers.make_dense", "units": 2, "seed": 3}
MODEL = {"_target_": U + "make_model", "units": 2, "seed": 5}


@pytest.fixture(autouse=True)
def trusted(monkeypatch):
    monkeypatch.setenv("RUNNER_TRUST", "tests.helpers.user_functions,runner.examples")


@functools.lru_cache(maxsize=1)
def _base() -> str:
    return json.dumps(composed(["~experiment"]))


def code_config(
    fn: Any,
    inputs: Any,
    point: Dict[str, Any],
    derivatives: Any,
    steps: Optional[Dict[str, str]] = None,
    output: Any = None,
    **extra: Any,
) -> Dict[str, Any]:
    """A complete config whose function is `fn` (then `steps`)."""
    cfg = json.loads(_base())
    cfg["function"] = {"callable": fn, "inputs": inputs, "steps": steps or {}}
    if output is not None:
        cfg["function"]["output"] = output
    cfg["point"] = point
    cfg["derivatives"] = derivatives
    for key, value in extra.items():
        cfg[key] = {**cfg[key], **value} if isinstance(cfg.get(key), dict) else value
    return cfg


def close(got: Any, want: Any, rtol: float = 1e-5) -> None:
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=rtol, atol=1e-6
    )


def checks(ran: Ran) -> Dict[str, Dict[str, Any]]:
    return {d["name"]: d.get("check") for d in ran.log["derivatives"]}


# ---- 1. every kind, with the code as the target, before a step, and as a source ------------

X = [[0.5, 1.5, -0.7], [2.0, -1.2, 0.3]]
T = [[1.0, -0.5, 2.0], [0.25, 1.0, -1.0]]
KIND_REQUESTS = {
    "gradient": {},
    "order 2": {"order": 2},
    "jacobian": {"kind": "jacobian"},
    "batch_jacobian": {"kind": "batch_jacobian"},
    "hessian": {"kind": "hessian"},
    "jvp": {"kind": "jvp", "tangents": T},
    "hvp": {"kind": "hvp", "tangents": T},
}


def _loss(kind: str) -> str:
    # a batch Jacobian needs a batch dimension: the step keeps the rows
    return "y ** 2" if kind == "batch_jacobian" else "reduce_sum(y ** 2)"


def _squared(kind: str) -> Callable[[Any], Any]:
    return (lambda y: y**2) if kind == "batch_jacobian" else (lambda y: tf.reduce_sum(y**2))


# variant -> (target, source, steps, g(source) by hand, the source's value at the point)
VARIANTS = {
    "code is the target": lambda k: ("y", "x", {}, uf.sin_x2, X),
    "a step after the code": lambda k: ("loss", "x", {"loss": _loss(k)}, lambda s: _squared(k)(uf.sin_x2(s)), X),
    "the code's output as source": lambda k: ("loss", "y", {"loss": _loss(k)}, _squared(k), uf.sin_x2(tf.constant(X))),
}


def by_hand(kind: str, g: Callable[[Any], Any], at: Any) -> Any:
    """TensorFlow's own value of `kind` for g at `at`, with the tapes written out."""
    s = tf.constant(at, dtype=tf.float32)
    if kind in ("jvp", "hvp"):
        with tf.autodiff.ForwardAccumulator(s, tf.constant(T)) as acc:
            if kind == "jvp":
                return acc.jvp(g(s))
            with tf.GradientTape() as tape:
                tape.watch(s)
                out = g(s)
            grad = tape.gradient(out, s)
        return acc.jvp(grad)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(s)
        with tf.GradientTape(persistent=True) as inner:
            inner.watch(s)
            out = g(s)
        first = inner.gradient(out, s)
    answers = {
        "gradient": lambda: first,
        "order 2": lambda: outer.gradient(first, s),
        "jacobian": lambda: inner.jacobian(out, s),
        "batch_jacobian": lambda: inner.batch_jacobian(out, s),
        "hessian": lambda: outer.jacobian(first, s),
    }
    return answers[kind]()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("kind", list(KIND_REQUESTS))
def test_every_kind_with_a_callable(run_job, kind, variant):
    target, source, steps, g, at = VARIANTS[variant](kind)
    request = {"target": target, "sources": source, "name": "d", **KIND_REQUESTS[kind]}
    ran = run_job(code_config(U + "sin_x2", ["x"], {"x": X}, [request], steps=steps))
    assert ran.code == 0 and ran.log["status"] == "ok", ran.log["error"]
    close(ran.derivatives["d"], by_hand(kind, g, at))
    check = checks(ran)["d"]
    assert check["passed"], check
    assert check["method"] == "finite_difference"
    assert "precision" not in check  # the code takes float64: the differences are taken in float64
    assert ran.log["code"]["outputs"] == ["y"]


# ---- 2. tape options --------------------------------------------------------------------------


def test_non_persistent_tape_refuses_the_second_request_as_for_expressions(run_job):
    requests = [{"target": "y", "sources": "x"}, {"target": "y", "sources": "x", "kind": "jacobian"}]
    code = run_job(code_config(U + "sin_x2", ["x"], {"x": [0.5, 1.5]}, requests))
    expression = code_config(None, ["x"], {"x": [0.5, 1.5]}, requests, steps={"y": "sin(x) * x ** 2"})
    del expression["function"]["callable"]
    plain = run_job(expression)
    assert code.code == plain.code == 1
    assert code.log["error"] == plain.log["error"]
    assert code.log["error"]["type"] == "RuntimeError" and code.log["error"]["derivative"] == "jacobian(y; x)"
    close(code.derivatives["dy/dx"], plain.derivatives["dy/dx"])


def test_persistent_tape_answers_every_request(run_job):
    requests = [{"target": "y", "sources": "x"}, {"target": "y", "sources": "x", "kind": "jacobian"}]
    ran = run_job(code_config(U + "sin_x2", ["x"], {"x": [0.5, 1.5]}, requests, tape={"persistent": True}))
    assert ran.code == 0
    close(ran.derivatives["dy/dx"], by_hand("gradient", uf.sin_x2, [0.5, 1.5]))
    close(ran.derivatives["jacobian(y; x)"], by_hand("jacobian", uf.sin_x2, [0.5, 1.5]))
    assert all(c["passed"] for c in checks(ran).values())


def test_watch_names_what_the_tape_watches(run_job):
    ran = run_job(
        code_config(
            U + "scaled",
            ["x", "w"],
            {"x": [0.5, 1.5], "w": 2.0},
            [{"target": "y", "sources": ["x", "w"]}],
            tape={"watch": ["w"]},
        )
    )
    assert ran.code == 0, ran.log["error"]
    assert ran.log["code"]["called_with"] == "positional (x, w)"
    got = ran.derivatives["dy/d(x,w)"]
    assert got["x"] is None
    close(got["w"], np.sum(np.sin([0.5, 1.5]) * np.float32([0.5, 1.5]) ** 2))
    assert checks(ran)["dy/d(x,w)"]["passed"]


def test_watch_accessed_variables_false(run_job):
    variable = run_job(
        code_config(
            U + "sin_x2",
            {"x": {"kind": "variable"}},
            {"x": [0.5]},
            [{"target": "y", "sources": "x"}],
            tape={"watch_accessed_variables": False},
        )
    )
    assert variable.derivatives["dy/dx"] is None and checks(variable)["dy/dx"]["passed"]
    keras = run_job(
        code_config(
            DENSE,
            ["x"],
            {"x": [[1.0, 2.0, 3.0]]},
            [{"target": "loss", "sources": "trainable_variables", "name": "d"}],
            steps={"loss": "reduce_mean(y ** 2)"},
            tape={"watch_accessed_variables": False, "watch": []},
        )
    )
    assert keras.code == 0
    assert keras.derivatives["d"] == {"dense/kernel": None, "dense/bias": None}
    assert checks(keras)["d"]["passed"], checks(keras)["d"]


def test_stop_recording_a_step_after_the_code(run_job):
    ran = run_job(
        code_config(
            U + "sin_x2",
            ["x"],
            {"x": [0.5, 1.5]},
            [{"target": "z", "sources": ["x", "y"], "name": "d"}],
            steps={"h": "y * y", "z": "h + y"},
            tape={"stop_recording": ["h"]},
        )
    )
    x = tf.constant([0.5, 1.5])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = uf.sin_x2(x)
        with tape.stop_recording():
            h = y * y
        z = h + y
    want = {"x": tape.gradient(z, x), "y": tape.gradient(z, y)}  # dz/dy = 1: h is a constant to the tape
    close(ran.derivatives["d"]["x"], want["x"])
    close(ran.derivatives["d"]["y"], want["y"])
    assert checks(ran)["d"]["passed"], checks(ran)["d"]


COMPILED = [
    # callable, x, requests (extra keys), TF's value by hand of each (eager, Python control flow)
    (U + "sin_x2", [0.5, 1.5], [{}, {"order": 2}, {"kind": "hessian"}, {"kind": "jvp", "tangents": 1.0}]),
    ("runner.examples.control_flow.huber", 0.5, [{}, {"order": 2}]),
    ("runner.examples.control_flow.huber", -3.0, [{}, {"order": 2}]),
    ("runner.examples.control_flow.cube_by_loop", 2.0, [{}, {"kind": "jvp", "tangents": 1.0}]),
]
FUNCTIONS = {
    U + "sin_x2": uf.sin_x2,
    "runner.examples.control_flow.huber": control_flow.huber,
    "runner.examples.control_flow.cube_by_loop": control_flow.cube_by_loop,
}


def _eager(fn: Any, x: Any, extra: Dict[str, Any]) -> Any:
    kind = extra.get("kind", "order 2" if extra.get("order") == 2 else "gradient")
    if kind == "jvp":
        with tf.autodiff.ForwardAccumulator(s := tf.constant(x), tf.ones_like(tf.constant(x))) as acc:
            return acc.jvp(fn(s))
    return by_hand(kind, fn, x)


@pytest.mark.parametrize(
    "compile_mode, fn, x, extras",
    [
        (mode, *row)
        for mode in ("eager", "function", "xla")
        for row in COMPILED
        if not (mode == "xla" and row[0].endswith("cube_by_loop"))  # XLA cannot: see the next test
    ],
    ids=lambda v: v.rsplit(".", 1)[-1] if isinstance(v, str) else None,
)
def test_compile_modes_give_eager_tensorflow_numbers(run_job, compile_mode, fn, x, extras):
    requests = [{"target": "y", "sources": "x", "name": f"r{i}", **e} for i, e in enumerate(extras)]
    ran = run_job(code_config(fn, ["x"], {"x": x}, requests, tape={"compile": compile_mode, "persistent": True}))
    assert ran.code == 0 and ran.log["status"] == "ok", ran.log["error"]
    assert ran.log["tape"]["compile"] == compile_mode
    for i, e in enumerate(extras):
        close(ran.derivatives[f"r{i}"], _eager(FUNCTIONS[fn], x, e))
        assert checks(ran)[f"r{i}"]["passed"], checks(ran)[f"r{i}"]


def test_a_tensorflow_limit_under_xla_is_the_runs_error(run_job):
    """XLA cannot compile the gradient of the example's `while` loop (its tensor lists need a
    fixed size: "XLA compilation requires a fixed tensor list size"): a run error with
    TensorFlow's own type and message, not a crash (the same config under compile: function
    passes, above)."""
    ran = run_job(
        code_config(
            "runner.examples.control_flow.cube_by_loop",
            ["x"],
            {"x": 2.0},
            [{"target": "y", "sources": "x"}],
            tape={"compile": "xla"},
        )
    )
    assert ran.code == 1 and ran.log["status"] == "error"
    assert ran.log["error"]["type"] == "InvalidArgumentError" and "XLA" in ran.log["error"]["message"]
    assert ran.derivatives == {}


def test_several_inputs_positionally_to_a_custom_gradient(run_job):
    ran = run_job(
        code_config(
            U + "product",
            ["u", "v"],
            {"u": 2.0, "v": 3.0},
            [
                {"target": "y", "sources": ["u", "v"], "name": "g"},
                {"target": "y", "sources": ["u", "v"], "kind": "hessian", "name": "h"},
                {"target": "y", "sources": ["u", "v"], "kind": "jvp", "tangents": {"u": 1.0, "v": -1.0}, "name": "j"},
            ],
            tape={"persistent": True},
        )
    )
    assert ran.code == 0, ran.log["error"]
    assert ran.log["code"]["called_with"] == "positional (u, v)"
    u, v = tf.constant(2.0), tf.constant(3.0)
    with tf.GradientTape(persistent=True) as outer:
        outer.watch([u, v])
        with tf.GradientTape() as inner:
            inner.watch([u, v])
            y = uf.product(u, v)
        du, dv = inner.gradient(y, [u, v])
    close(ran.derivatives["g"]["u"], du)  # v**2 = 9
    close(ran.derivatives["g"]["v"], dv)  # 2uv = 12
    hessian = ran.derivatives["h"]
    assert hessian["u"]["u"] is None and outer.gradient(du, u) is None  # d(v**2)/du: TF says None
    close(hessian["u"]["v"], outer.gradient(du, v))
    close(hessian["v"]["v"], outer.gradient(dv, v))
    close(ran.derivatives["j"], du - dv)
    assert all(c["passed"] for c in checks(ran).values()), checks(ran)


# ---- 3. Keras: variables by path ------------------------------------------------------------


def _dense_gradient(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, activation: Optional[str] = None):
    """d mean(y**2) / d(kernel, bias) for y = act(x @ kernel + bias), in NumPy."""
    z = x @ kernel + bias
    y = np.tanh(z) if activation == "tanh" else z
    dz = 2.0 * y / y.size * ((1 - y**2) if activation == "tanh" else 1.0)
    return x.T @ dz, dz.sum(axis=0)


@pytest.mark.parametrize(
    "factory, prefix, activation",
    [(DENSE, "dense", None), (MODEL, "model/dense", "tanh")],
    ids=["make_dense", "Sequential"],
)
def test_keras_trainable_variables_by_path(run_job, factory, prefix, activation):
    x = [[1.0, 2.0, 3.0], [-0.5, 0.25, 1.0]]
    ran = run_job(
        code_config(
            factory,
            ["x"],
            {"x": x},
            [{"target": "loss", "sources": "trainable_variables", "name": "d"}],
            steps={"loss": "reduce_mean(y ** 2)"},
        )
    )
    assert ran.code == 0, ran.log["error"]
    paths = [f"{prefix}/kernel", f"{prefix}/bias"]
    assert list(ran.derivatives["d"]) == paths
    assert list(ran.log["code"]["variables"]) == paths
    kernel, bias = (np.asarray(ran.values[p], dtype=np.float64) for p in paths)
    dk, db = _dense_gradient(np.asarray(x), kernel, bias, activation)
    close(ran.derivatives["d"][paths[0]], dk, rtol=1e-4)
    close(ran.derivatives["d"][paths[1]], db, rtol=1e-4)
    check = checks(ran)["d"]
    assert check["passed"] and check["precision"] == "float32", check  # the layer's variables are float32


def test_the_same_seed_gives_the_same_kernel_in_two_jobs(run_job):
    cfg = code_config(
        DENSE,
        ["x"],
        {"x": [[1.0, 2.0, 3.0]]},
        [{"target": "loss", "sources": "trainable_variables", "name": "d"}],
        steps={"loss": "reduce_mean(y ** 2)"},
    )
    first, second = run_job(copy.deepcopy(cfg)), run_job(copy.deepcopy(cfg))
    assert first.values["dense/kernel"] == second.values["dense/kernel"]  # and the same paths (no dense_1)
    assert first.derivatives == second.derivatives
    other = copy.deepcopy(cfg)
    other["function"]["callable"]["seed"] = 4
    assert run_job(other).values["dense/kernel"] != first.values["dense/kernel"]


@pytest.mark.slow
def test_keras_hessian_and_jvp_by_trainable_variables(run_job):
    x = np.array([[1.0, 2.0, 3.0]])
    ran = run_job(
        code_config(
            DENSE,
            ["x"],
            {"x": x.tolist()},
            [
                {"target": "loss", "sources": "trainable_variables", "kind": "hessian", "name": "h"},
                {"target": "loss", "sources": "trainable_variables", "kind": "jvp", "tangents": 1.0, "name": "j"},
            ],
            steps={"loss": "reduce_mean(y ** 2)"},
        )
    )
    assert ran.code == 0, ran.log["error"]
    kernel = np.asarray(ran.values["dense/kernel"])
    bias = np.asarray(ran.values["dense/bias"])
    # loss = mean_j (x k_j + b_j)**2 over 2 units: d2/dk_aj dk_bl = x_a x_b [j == l]; d2/db_j db_l = [j == l]
    eye = np.eye(2)
    close(ran.derivatives["h"]["dense/kernel"]["dense/kernel"], np.einsum("a,b,jl->ajbl", x[0], x[0], eye))
    close(ran.derivatives["h"]["dense/bias"]["dense/bias"], eye)
    dk, db = _dense_gradient(x, kernel, bias)
    close(ran.derivatives["j"], dk.sum() + db.sum(), rtol=1e-4)  # every variable moves along 1
    assert all(c["passed"] for c in checks(ran).values()), checks(ran)


# ---- 4. failing code: a run with status error, never a traceback ------------------------------

FAILING = [
    # id, callable, output, error type, words of the message
    ("raises ValueError", U + "raises", None, "ValueError", "not what this code expects"),
    ("returns a list", U + "returns_list", None, "TypeError", "returned a list for 'y', not a tensor"),
    ("returns a str", U + "returns_str", None, "TypeError", "returned a str"),
    ("returns None", U + "returns_none", None, "TypeError", "returned a NoneType"),
    ("returns an int tensor", U + "returns_int", None, "TypeError", "as int32"),
    ("a mapping for one output", U + "returns_mapping", None, "TypeError", "function.output: [y, z]"),
    ("the wrong keys", U + "returns_mapping", ["y", "w"], "TypeError", "declares y, w"),
    ("fails on its second call", {"_target_": U + "fails_after", "calls": 1}, None, "RuntimeError", "call 2 fails"),
]


@pytest.mark.parametrize("name, fn, output, error, words", FAILING, ids=[row[0] for row in FAILING])
def test_failing_code_is_the_runs_error(tmp_path, capfd, name, fn, output, error, words):
    cfg = code_config(fn, ["x"], {"x": 1.0}, [{"target": "y", "sources": "x"}], output=output)
    code = job.run(cfg, tmp_path, echo=True)
    out, err = capfd.readouterr()
    log = json.loads((tmp_path / "results.json").read_text())
    assert code == 1 and log["status"] == "error"
    assert log["error"]["type"] == error and words in log["error"]["message"]
    assert log["error"]["step"] == "function.callable"
    assert "Traceback" not in out + err


def test_code_failing_when_a_request_recomputes(run_job):
    """Built (call 1) and run under the shared tape (call 2); the Hessian calls it again."""
    ran = run_job(
        code_config(
            {"_target_": U + "fails_after", "calls": 2},
            ["x"],
            {"x": 1.0},
            [{"target": "y", "sources": "x"}, {"target": "y", "sources": "x", "kind": "hessian"}],
        )
    )
    assert ran.code == 1 and ran.log["status"] == "error"
    assert ran.log["error"] == {
        "type": "RuntimeError",
        "message": "call 3 fails (only 2 allowed)",
        "derivative": "hessian(y; x)",
        "step": "function.callable",
    }
    close(ran.derivatives["dy/dx"], by_hand("gradient", uf.sin_x2, 1.0))  # the request before it completed


@pytest.mark.slow
def test_failing_code_on_the_command_line(tmp_path):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "code_raises.yaml").write_text(
        "# @package _global_\n"
        "function:\n"
        f"  callable: {U}raises\n"
        "  inputs: [x]\n"
        "point: {x: 1.0}\n"
        "derivatives:\n"
        "  - {target: y, sources: x}\n"
    )
    args = ["--config-dir", str(tmp_path / "conf"), "experiment=code_raises", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = cli(args, cwd=tmp_path, env={"RUNNER_TRUST": "tests.helpers.user_functions"})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    log = json.loads((tmp_path / "run" / "results.json").read_text())
    assert log["status"] == "error"
    assert log["error"]["type"] == "ValueError" and log["error"]["step"] == "function.callable"


# ---- 5. checks --------------------------------------------------------------------------------


def test_a_wrong_custom_gradient_fails_its_check_naming_the_worst_element(run_job):
    requests = [{"target": "y", "sources": "x", "name": "d"}]
    ran = run_job(
        code_config("runner.examples.custom_gradients.wrong_square", ["x"], {"x": [1.0, 3.0, -2.0]}, requests)
    )
    x = tf.constant([1.0, 3.0, -2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = custom_gradients.wrong_square(x)
    close(ran.derivatives["d"], tape.gradient(y, x))  # x, where 2x is right
    check = checks(ran)["d"]
    assert ran.code == 0 and not check["passed"]
    assert "at [1]" in check["reason"] and "TF gives 3" in check["reason"], check  # |3 - 6| is the largest error
    strict = run_job(
        code_config(
            "runner.examples.custom_gradients.wrong_square",
            ["x"],
            {"x": [1.0, 3.0, -2.0]},
            requests,
            expect={"checks": "pass"},
        )
    )
    assert strict.code == 1 and strict.log["status"] == "ok" and not strict.log["expect"]["met"]


@pytest.mark.parametrize("fn, passed", [("cube32", True), ("wrong_cube32", False)])
def test_float32_only_code_is_checked_in_float32(run_job, fn, passed):
    ran = run_job(code_config(U + fn, ["x"], {"x": [1.0, 2.0]}, [{"target": "y", "sources": "x", "name": "d"}]))
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = getattr(uf, fn)(x)
    close(ran.derivatives["d"], tape.gradient(y, x))
    check = checks(ran)["d"]
    assert check["precision"] == "float32" and "float32" in check["note"], check
    assert check["passed"] is passed, check
    if not passed:
        assert "at [1]" in check["reason"]


def test_log1pexp_at_100_where_the_expression_gives_nan(run_job):
    request = [{"target": "y", "sources": "x", "name": "d"}]
    custom = run_job(code_config("runner.examples.custom_gradients.log1pexp", ["x"], {"x": 100.0}, request))
    plain_cfg = code_config(None, ["x"], {"x": 100.0}, request, steps={"y": "log(1 + exp(x))"})
    del plain_cfg["function"]["callable"]
    plain = run_job(plain_cfg)
    x = tf.constant(100.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        stable, naive = custom_gradients.log1pexp(x), tf.math.log(1 + tf.exp(x))
    assert custom.derivatives["d"] == float(tape.gradient(stable, x)) == 1.0
    assert checks(custom)["d"]["passed"]
    assert np.isnan(float(tape.gradient(naive, x)))
    assert plain.derivatives["d"] in ("NaN", "nan") or np.isnan(float(plain.derivatives["d"]))
