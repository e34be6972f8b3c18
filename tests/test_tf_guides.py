"""TensorFlow's own autodiff guides, reproduced from configs alone.

Each row is one example of the guides "Introduction to gradients and automatic
differentiation" (intro/) and "Advanced automatic differentiation" (advanced/), and of
`tf.autodiff.ForwardAccumulator`'s API page (forward/), as a shipped experiment
(`conf/experiment/NAME.yaml`) or as a config mapping. The expected numbers are derived by
hand (in the comments) or by a NumPy formula from the inputs, never from the runner.
Where the guide draws weights at random, a fixed or seeded point stands in for them.
Not reproduced: the guides' Python control flow (`if x > 0.0`), Keras layers as such,
custom gradients and `tape.reset()`, which a declarative config does not express.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers import function_config


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def dsigmoid(x):
    return sigmoid(x) * (1.0 - sigmoid(x))


def _cfg(steps, point, derivatives, inputs=None, **extra):
    return lambda: function_config(steps, point, derivatives, inputs=inputs, **extra)


def _linspace201():
    return np.linspace(-10.0, 10.0, 201)


# values -> expected, for arrays derived by formula from the job's *inputs*
def _jacobian_tensor_source(v):
    x, k = np.asarray(v["x"]), np.asarray(v["kernel"])
    active = (x @ k > 0).astype(np.float64)  # relu'
    # y[i, j] = relu(sum_a x[i, a] k[a, j]): dy[i, j]/dk[a, b] = [j == b] x[i, a] relu'(pre[i, j])
    return np.einsum("ia,jb,ij->ijab", x, np.eye(k.shape[1]), active)


def _hessian_relu_loss(v):
    x, w = np.asarray(v["x"]), np.asarray(v["w"])
    m = (x @ w > 0).astype(np.float64)
    n = m.size  # the mean is over all 3 * 4 entries
    # loss = (1/n) sum relu(x w)^2: H[a, j, b, k] = (2/n) [j == k] sum_i m[i, j] x[i, a] x[i, b]
    return (2.0 / n) * np.einsum("ij,ia,ib,jk->ajbk", m, x, x, np.eye(w.shape[1]))


def _batch_jacobian(v):
    x, w = np.asarray(v["x"]), np.asarray(v["w"])
    y = np.tanh(x @ w)
    return np.einsum("bj,aj->bja", 1.0 - y**2, w)


def _full_jacobian(v):
    x = np.asarray(v["x"])
    return np.einsum("bja,bc->bjca", _batch_jacobian(v), np.eye(x.shape[0]))


GUIDES = [
    # id, config (experiment name, or a factory of a config mapping), expected {name: value or f(values)}
    (
        "intro/variable x**2 at 3 -> 6",
        _cfg({"y": "x ** 2"}, {"x": 3.0}, [{"target": "y", "sources": "x"}], inputs={"x": {"kind": "variable"}}),
        {"dy/dx": 6.0},  # 2x
    ),
    (
        "intro/dense loss w.r.t. w and b",
        "variables",
        # y = x w + b = [1*0.1+2*0.3+3*0.5, 1*0.2+2*0.4+3*0.6] = [2.2, 2.8]; dl/dw = x^T y, dl/db = y
        {"dloss/d(w,b)": {"w": [[2.2, 2.8], [4.4, 5.6], [6.6, 8.4]], "b": [2.2, 2.8]}},
    ),
    (
        "intro/what the tape watches",
        "watch",
        {"dy/d(x0,x1,x2,x3)": {"x0": 6.0, "x1": None, "x2": None, "x3": None}},  # only the trainable x0
    ),
    (
        "intro/tape.watch a constant",
        _cfg({"y": "x ** 2"}, {"x": 3.0}, [{"target": "y", "sources": "x"}], tape={"watch": ["x"]}),
        {"dy/dx": 6.0},
    ),
    (
        "intro/watch_accessed_variables false",
        "watch_accessed_variables",
        {"dys/d(x0,x1)": {"x0": None, "x1": 1.0 / (1.0 + math.exp(-10.0))}},  # softplus' = sigmoid
    ),
    (
        "intro/intermediate result dz/dy",
        "intermediate",
        {"dz/dy": 18.0, "dz/dx": 108.0},  # 2y at y = 9; 4x**3 at 3
    ),
    (
        "intro/persistent tape on [1, 3]",
        _cfg(
            {"y": "x * x", "z": "y * y"},
            {"x": [1.0, 3.0]},
            [{"target": "z", "sources": "x"}, {"target": "y", "sources": "x"}],
            tape={"persistent": True},
        ),
        {"dz/dx": [4.0, 108.0], "dy/dx": [2.0, 6.0]},  # 4x**3, 2x
    ),
    (
        "intro/targets y0 = x**2, y1 = 1/x and their sum",
        _cfg(
            {"y0": "x ** 2", "y1": "1 / x", "ys": "y0 + y1"},
            {"x": 2.0},
            [{"target": "y0", "sources": "x"}, {"target": "y1", "sources": "x"}, {"target": "ys", "sources": "x"}],
            inputs={"x": {"kind": "variable"}},
            tape={"persistent": True},
        ),
        # 2x = 4; -1/x**2 = -0.25; a gradient of several targets is that of their sum: 3.75
        {"dy0/dx": 4.0, "dy1/dx": -0.25, "dys/dx": 3.75},
    ),
    (
        "intro/non-scalar target x * [3, 4] sums",
        _cfg(
            {"y": "x * c"},
            {"x": 2.0, "c": [3.0, 4.0]},
            [{"target": "y", "sources": "x"}],
            inputs={"x": {"kind": "variable"}, "c": {"kind": "constant"}},
            tape={"watch": []},
        ),
        {"dy/dx": 7.0},  # 3 + 4
    ),
    (
        "intro/sigmoid on 201 points",
        _cfg({"y": "sigmoid(x)"}, {"x": {"linspace": [-10.0, 10.0, 201]}}, [{"target": "y", "sources": "x"}]),
        {"dy/dx": dsigmoid(_linspace201())},  # elementwise: each y[i] depends on x[i] only
    ),
    (
        "intro/unconnected source gives None",
        _cfg(
            {"z": "y * y"},
            {"x": 2.0, "y": 3.0},
            [{"target": "z", "sources": "x"}],
            inputs={"x": {"kind": "variable"}, "y": {"kind": "variable"}},
        ),
        {"dz/dx": None},
    ),
    (
        "intro/integer source gives None",
        _cfg({"y": "x * x"}, {"x": 10}, [{"target": "y", "sources": "x"}], inputs={"x": {"dtype": "int32"}}),
        {"dy/dx": None},
    ),
    (
        "intro/zeros instead of None",
        "unconnected",
        {"dz/dx": None, "dz/dx (zero)": [0.0, 0.0]},
    ),
    (
        "advanced/stop_recording",
        "stop_recording",
        {"dz/d(x,y)": {"x": 4.0, "y": None}},  # 2x at 2; y_sq unrecorded
    ),
    (
        "advanced/stop_gradient",
        "stop_gradient",
        {"dz/d(x,y)": {"x": 4.0, "y": None}},
    ),
    (
        "advanced/two tapes, one watching each input",
        _cfg(
            {"y0": "sin(x0)", "y1": "sigmoid(x1)", "y": "y0 + y1", "ys": "reduce_sum(y)"},
            {"x0": 0.0, "x1": 0.0},
            [{"target": "ys", "sources": "x0"}, {"target": "ys", "sources": "x1"}],
            tape={"persistent": True},
        ),
        {"dys/dx0": 1.0, "dys/dx1": 0.25},  # cos(0); sigmoid(0) * (1 - sigmoid(0))
    ),
    (
        "advanced/higher-order gradients of x**3 at 1",
        "higher_order",
        {"dy/dx": 3.0, "d2y/dx2": 6.0, "d3y/dx3": 6.0},  # 3x**2, 6x, 6
    ),
    (
        "advanced/jacobian with a scalar source",
        "jacobian",
        {
            "J": dsigmoid(_linspace201()),
            "J (while_loop)": dsigmoid(_linspace201()),
            "gradient": float(dsigmoid(_linspace201()).sum()),  # gradient sums over the target
        },
    ),
    (
        "advanced/jacobian with a tensor source",
        _cfg(
            {"y": "relu(x @ kernel)"},
            {"x": {"random": {"shape": [7, 5], "seed": 1}}, "kernel": {"random": {"shape": [5, 10], "seed": 2}}},
            [
                {"target": "y", "sources": "kernel", "kind": "jacobian", "name": "j"},
                {"target": "y", "sources": "kernel", "name": "g"},
            ],
            inputs={"x": {"kind": "constant"}, "kernel": {"kind": "variable"}},
            tape={"persistent": True, "watch": []},
        ),
        {"j": _jacobian_tensor_source, "g": lambda v: _jacobian_tensor_source(v).sum(axis=(0, 1))},
    ),
    (
        "advanced/hessian through nested tapes",
        "hessian",
        {
            "hessian(loss; w)": _hessian_relu_loss,
            "hessian(f; u, v)": {"u": {"u": 6.0, "v": 4.0}, "v": {"u": 4.0, "v": 0.0}},
        },
    ),
    (
        "advanced/batch jacobian",
        "batch_jacobian",
        {"jacobian(y; x)": _full_jacobian, "batch_jacobian(y; x)": _batch_jacobian},
    ),
    (
        "forward/jvp of a linear regression loss",
        "jvp",
        # residuals r = [-1.5, -0.5]: jvp = 2 (r . x[:, 0]) = -7; gradient 2 x^T r; pred' = x[:, 0] + 1
        {"jvp(loss; kernel)": -7.0, "dloss/dkernel": [[-7.0], [-13.0]], "dpred": [[3.0], [2.0]]},
    ),
    (
        "forward/hessian-vector product of sum(v**3)",
        "hvp",
        {"dy/dv": [3.0, 12.0], "hvp(y; v)": [6.0, 0.0]},  # 3v**2; diag(6v) @ [1, 0]
    ),
]


def _compare(name, got, want, values):
    if callable(want):
        want = want(values)
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{name}: {got!r}"
        for k in want:
            _compare(f"{name}[{k}]", got[k], want[k], values)
    elif want is None:
        assert got is None, f"{name}: expected None, got {got!r}"
    else:
        assert got is not None, f"{name}: expected {want!r}, got None"
        np.testing.assert_allclose(
            np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64), rtol=1e-5, atol=1e-6, err_msg=name
        )


@pytest.mark.parametrize("config, expected", [g[1:] for g in GUIDES], ids=[g[0] for g in GUIDES])
def test_guide_example(run_job, config, expected):
    ran = run_job([f"experiment={config}"] if isinstance(config, str) else config())
    assert ran.log["status"] == "ok", ran.log["error"]
    assert ran.code == 0
    assert list(ran.derivatives) == list(expected)
    for name, want in expected.items():
        _compare(name, ran.derivatives[name], want, ran.values)


def test_guide_watched_variables(run_job):
    # the guide prints [var.name for var in tape.watched_variables()] -> ['x0:0']
    ran = run_job(["experiment=watch"])
    assert ran.log["tape"]["watched_variables"] == ["x0"]


def test_guide_integer_warning_is_in_the_run_log(run_job):
    # "WARNING:tensorflow:The dtype of the watched tensor must be floating (e.g. tf.float32), got tf.int32"
    cfg = function_config(
        {"y": "x * x"}, {"x": 10}, [{"target": "y", "sources": "x"}], inputs={"x": {"dtype": "int32"}}
    )
    for _ in range(6):  # every job of the process, though TF itself logs it only the first 5 times
        ran = run_job(cfg)
        assert any(
            "The dtype of the watched tensor must be floating" in w and "int32" in w for w in ran.log["warnings"]
        )
