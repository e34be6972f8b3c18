"""A table of configs and the numbers they must give (first-order gradients on one tape)."""

import math

import pytest

from tests.helpers import function_config

X = {"x": {"kind": "constant"}}

CASES = [
    # id, config pieces, expected derivatives (name -> value), expected values (subset)
    (
        "cubic",
        dict(steps={"y": "x ** 3"}, point={"x": 5.0}, derivatives=[{"target": "y", "sources": "x"}]),
        {"dy/dx": 75.0},
        {"y": 125.0},
    ),
    (
        "yaml int is cast to float32",
        dict(steps={"y": "x ** 3"}, point={"x": 2}, derivatives=[{"target": "y", "sources": "x"}]),
        {"dy/dx": 12.0},
        {"x": 2.0},
    ),
    (
        "float64 input",
        dict(
            inputs={"x": {"dtype": "float64"}},
            steps={"y": "x ** 3"},
            point={"x": 0.1},
            derivatives=[{"target": "y", "sources": "x"}],
        ),
        {"dy/dx": 3 * 0.1**2},
        {},
    ),
    (
        "int input gives null",
        dict(
            inputs={"x": {"dtype": "int32"}},
            steps={"y": "x * x"},
            point={"x": 3},
            derivatives=[{"target": "y", "sources": "x"}],
        ),
        {"dy/dx": None},
        {"y": 9},
    ),
    (
        "tensor point, elementwise",
        dict(steps={"y": "x * x"}, point={"x": [1.0, 2.0, 3.0]}, derivatives=[{"target": "y", "sources": "x"}]),
        {"dy/dx": [2.0, 4.0, 6.0]},
        {"y": [1.0, 4.0, 9.0]},
    ),
    (
        "reduce_sum of a matrix",
        dict(
            steps={"y": "reduce_sum(x * x)"},
            point={"x": [[1.0, 2.0], [3.0, 4.0]]},
            derivatives=[{"target": "y", "sources": "x"}],
        ),
        {"dy/dx": [[2.0, 4.0], [6.0, 8.0]]},
        {"y": 30.0},
    ),
    (
        "intermediate source dz/dy",
        dict(steps={"y": "x * x", "z": "y * y"}, point={"x": 3.0}, derivatives=[{"target": "z", "sources": "y"}]),
        {"dz/dy": 18.0},
        {},
    ),
    (
        "several sources give a mapping",
        dict(
            inputs=["x", "w"],
            steps={"y": "w * x ** 2"},
            point={"x": 3.0, "w": 2.0},
            derivatives=[{"target": "y", "sources": ["x", "w"]}],
        ),
        {"dy/d(x,w)": {"x": 12.0, "w": 9.0}},
        {},
    ),
    (
        "one-name list gives a plain value",
        dict(steps={"y": "x * x"}, point={"x": 3.0}, derivatives=[{"target": "y", "sources": ["x"]}]),
        {"dy/dx": 6.0},
        {},
    ),
    (
        "trainable variable is watched",
        dict(
            inputs={"w": {"kind": "variable"}},
            steps={"y": "w * w"},
            point={"w": 4.0},
            derivatives=[{"target": "y", "sources": "w"}],
        ),
        {"dy/dw": 8.0},
        {"w": 4.0},
    ),
    (
        "non-trainable variable gives null",
        dict(
            inputs={"w": {"kind": "variable", "trainable": False}},
            steps={"y": "w * w"},
            point={"w": 4.0},
            derivatives=[{"target": "y", "sources": "w"}],
        ),
        {"dy/dw": None},
        {},
    ),
    (
        "watch list leaves the rest unwatched",
        dict(
            inputs=["x", "w"],
            steps={"y": "w * x"},
            point={"x": 3.0, "w": 2.0},
            derivatives=[{"target": "y", "sources": ["x", "w"]}],
            tape={"watch": ["x"]},
        ),
        {"dy/d(x,w)": {"x": 2.0, "w": None}},
        {},
    ),
    (
        "unconnected: zero",
        dict(
            inputs=["x", "w"],
            steps={"y": "x * x"},
            point={"x": 3.0, "w": 2.0},
            derivatives=[{"target": "y", "sources": "w", "unconnected": "zero"}],
        ),
        {"dy/dw": 0.0},
        {},
    ),
    (
        "unconnected: none",
        dict(
            inputs=["x", "w"],
            steps={"y": "x * x"},
            point={"x": 3.0, "w": 2.0},
            derivatives=[{"target": "y", "sources": "w"}],
        ),
        {"dy/dw": None},
        {},
    ),
    (
        "output_gradients weight the target",
        dict(
            steps={"y": "x * x"},
            point={"x": [1.0, 2.0]},
            derivatives=[{"target": "y", "sources": "x", "output_gradients": [10.0, 100.0]}],
        ),
        {"dy/dx": [20.0, 400.0]},
        {},
    ),
    (
        "stop_gradient blocks a path",
        dict(steps={"y": "x * stop_gradient(x)"}, point={"x": 3.0}, derivatives=[{"target": "y", "sources": "x"}]),
        {"dy/dx": 3.0},
        {},
    ),
    (
        "stop_recording pauses the tape",
        dict(
            steps={"y": "x * x", "z": "x * y"},
            point={"x": 3.0},
            derivatives=[{"target": "z", "sources": "x"}],
            tape={"stop_recording": ["y"]},
        ),
        {"dz/dx": 9.0},
        {"z": 27.0},
    ),
    (
        "constants pi and e",
        dict(steps={"y": "pi * x ** 2 + e"}, point={"x": 1.0}, derivatives=[{"target": "y", "sources": "x"}]),
        {"dy/dx": pytest.approx(2 * math.pi)},
        {},
    ),
    (
        "literals alone are TF's job",
        dict(steps={"y": "x + 10 ** 10 ** 10 ** 10"}, point={"x": 1.0}, derivatives=[{"target": "y", "sources": "x"}]),
        {"dy/dx": 1.0},
        {"y": "Infinity"},
    ),
    (
        "custom name",
        dict(steps={"y": "x * x"}, point={"x": 3.0}, derivatives=[{"target": "y", "sources": "x", "name": "slope"}]),
        {"slope": 6.0},
        {},
    ),
    (
        "where with a comparison",
        dict(
            steps={"y": "where(x > 0, x * x, -x)"},
            point={"x": [-2.0, 3.0]},
            derivatives=[{"target": "y", "sources": "x"}],
        ),
        {"dy/dx": [-1.0, 6.0]},
        {},
    ),
]


@pytest.mark.parametrize("case, pieces, derivatives, values", CASES, ids=[c[0] for c in CASES])
def test_config_gives_numbers(run_job, case, pieces, derivatives, values):
    pieces = dict(pieces)
    cfg = function_config(
        pieces.pop("steps"), pieces.pop("point"), pieces.pop("derivatives"), inputs=pieces.pop("inputs", None), **pieces
    )
    ran = run_job(cfg)
    assert ran.code == 0, ran.log["error"]
    assert ran.derivatives == derivatives
    for k, v in values.items():
        assert ran.values[k] == (pytest.approx(v) if isinstance(v, float) else v)


def test_a_failing_step_is_recorded_not_raised(run_job):
    # shapes are checked before TensorFlow runs; dtypes are TensorFlow's to refuse
    cfg = function_config(
        {"y": "x * w"},
        {"x": 2.0, "w": 3},
        [{"target": "y", "sources": "x"}],
        inputs={"x": {"dtype": "float32"}, "w": {"dtype": "int32"}},
    )
    ran = run_job(cfg)
    assert ran.code == 1
    assert ran.log["status"] == "error"
    assert ran.log["error"]["step"] == "y"
    assert ran.log["error"]["type"] == "InvalidArgumentError"
    assert ran.log["derivatives"] == []


def test_expected_values_are_judged_with_tolerance(run_job):
    cfg = function_config(
        {"y": "x * x"},
        {"x": 3.0},
        [{"target": "y", "sources": "x"}],
        expect={"derivatives": {"dy/dx": 6.0000001}, "rtol": 1e-6, "atol": 0.0, "error": None},
    )
    assert run_job(cfg).code == 0
    cfg["expect"]["derivatives"] = {"dy/dx": 6.1}
    ran = run_job(cfg)
    assert ran.code == 1
    assert ran.log["expect"]["mismatches"][0].startswith("dy/dx: expected 6.1, got 6.0")
