"""Derivative kinds, tape options and compiled programs: configs and the numbers they give."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runner.config import spec as specs
from runner.errors import ConfigError
from tests.helpers import composed, function_config

CHAIN = {"y": "x * x", "z": "y * y"}  # at x = 3: y = 9, z = 81, dz/dy = 2y = 18, dz/dx = 4x**3 = 108


def _chain(derivatives, x=3.0, **extra):
    return function_config(dict(CHAIN), {"x": x}, derivatives, **extra)


KINDS = [
    # id, config, expected {name: value}
    (
        "gradient output_gradients weighs the target",
        function_config(
            {"y": "x * x"}, {"x": [1.0, 2.0]}, [{"target": "y", "sources": "x", "output_gradients": [1.0, 10.0]}]
        ),
        {"dy/dx": [2.0, 40.0]},
    ),
    (
        "jacobian of a vector w.r.t. a vector",
        function_config({"y": "x * x"}, {"x": [1.0, 2.0]}, [{"target": "y", "sources": "x", "kind": "jacobian"}]),
        {"jacobian(y; x)": [[2.0, 0.0], [0.0, 4.0]]},
    ),
    (
        "jacobian with several sources is a mapping",
        function_config(
            {"f": "u * v"}, {"u": [1.0, 2.0], "v": 3.0}, [{"target": "f", "sources": ["u", "v"], "kind": "jacobian"}]
        ),
        {"jacobian(f; u, v)": {"u": [[3.0, 0.0], [0.0, 3.0]], "v": [1.0, 2.0]}},
    ),
    (
        "jacobian unconnected zero",
        function_config(
            {"f": "u * 2.0"},
            {"u": [1.0, 2.0], "v": 3.0},
            [{"target": "f", "sources": "v", "kind": "jacobian", "unconnected": "zero"}],
        ),
        {"jacobian(f; v)": [0.0, 0.0]},
    ),
    ("order 2 of a chain", _chain([{"target": "z", "sources": "x", "order": 2}]), {"d2z/dx2": 108.0}),  # 12x**2
    ("order 4 of a chain", _chain([{"target": "z", "sources": "x", "order": 4}]), {"d4z/dx4": 24.0}),
    (
        "order 5 of x**4 is 0, order 2 of a linear step is None",
        function_config(
            {"y": "x ** 4", "l": "3.0 * x"},
            {"x": 2.0},
            [{"target": "y", "sources": "x", "order": 5}, {"target": "l", "sources": "x", "order": 2}],
        ),
        {"d5y/dx5": 0.0, "d2l/dx2": None},
    ),
    (
        "order 2 unconnected zero",
        function_config(
            {"l": "3.0 * x"}, {"x": 2.0}, [{"target": "l", "sources": "x", "order": 2, "unconnected": "zero"}]
        ),
        {"d2l/dx2": 0.0},
    ),
    (
        "order 2 on a grid is elementwise",
        function_config({"y": "sin(x)"}, {"x": [0.0, 1.0, 2.0]}, [{"target": "y", "sources": "x", "order": 2}]),
        {"d2y/dx2": (-np.sin([0.0, 1.0, 2.0])).tolist()},
    ),
    (
        "hessian of a scalar input",
        _chain([{"target": "z", "sources": "x", "kind": "hessian"}]),
        {"hessian(z; x)": 108.0},
    ),
    (
        "hessian of a vector input",
        function_config(
            {"f": "reduce_sum(x ** 3)"}, {"x": [1.0, 2.0]}, [{"target": "f", "sources": "x", "kind": "hessian"}]
        ),
        {"hessian(f; x)": [[6.0, 0.0], [0.0, 12.0]]},
    ),
    (
        "jvp scalar",
        _chain([{"target": "z", "sources": "x", "kind": "jvp", "tangents": 2.0}]),
        {"jvp(z; x)": 216.0},
    ),  # 108 * 2
    (
        "jvp tangent broadcast over points",
        function_config(
            {"y": "x * x"}, {"x": [1.0, 2.0, 3.0]}, [{"target": "y", "sources": "x", "kind": "jvp", "tangents": 1.0}]
        ),
        {"jvp(y; x)": [2.0, 4.0, 6.0]},
    ),
    (
        "jvp several sources sums",
        function_config(
            {"f": "u * v"},
            {"u": 2.0, "v": 3.0},
            [{"target": "f", "sources": ["u", "v"], "kind": "jvp", "tangents": {"u": 1.0, "v": 10.0}}],
        ),
        {"jvp(f; u, v)": 23.0},
    ),  # v*1 + u*10
    (
        "jvp unconnected zero",
        function_config(
            {"f": "u * 2.0"},
            {"u": 2.0, "v": 3.0},
            [{"target": "f", "sources": "v", "kind": "jvp", "tangents": 1.0, "unconnected": "zero"}],
        ),
        {"jvp(f; v)": 0.0},
    ),
    (
        "hvp several sources",
        function_config(
            {"f": "u ** 2 * v"},
            {"u": 2.0, "v": 3.0},
            [{"target": "f", "sources": ["u", "v"], "kind": "hvp", "tangents": {"u": 1.0, "v": 0.0}}],
        ),
        {"hvp(f; u, v)": {"u": 6.0, "v": 4.0}},
    ),  # [[2v, 2u], [2u, 0]] @ [1, 0]
    (
        "intermediate source: gradient, jvp, hessian, order 2",
        _chain(
            [
                {"target": "z", "sources": "y"},
                {"target": "z", "sources": "y", "kind": "jvp", "tangents": 1.0},
                {"target": "z", "sources": "y", "kind": "hessian"},
                {"target": "z", "sources": "y", "order": 2},
            ],
            tape={"persistent": True},
        ),
        {"dz/dy": 18.0, "jvp(z; y)": 18.0, "hessian(z; y)": 2.0, "d2z/dy2": 2.0},
    ),
    (
        "stop_recording holds for nested and forward requests",
        function_config(
            {"xs": "x * x", "ys": "y * y", "z": "xs + ys"},
            {"x": 2.0, "y": 3.0},
            [
                {"target": "z", "sources": "y", "kind": "hessian"},
                {"target": "z", "sources": "y", "kind": "jvp", "tangents": 1.0},
                {"target": "z", "sources": "x", "kind": "hessian"},
            ],
            tape={"stop_recording": ["ys"]},
        ),
        {"hessian(z; y)": None, "jvp(z; y)": None, "hessian(z; x)": 2.0},
    ),
    (
        "variables in nested and forward requests",
        function_config(
            {"f": "w ** 3"},
            {"w": 2.0},
            [
                {"target": "f", "sources": "w", "kind": "hessian"},
                {"target": "f", "sources": "w", "kind": "hvp", "tangents": 0.5},
                {"target": "f", "sources": "w", "order": 3},
            ],
            inputs={"w": {"kind": "variable"}},
        ),
        {"hessian(f; w)": 12.0, "hvp(f; w)": 6.0, "d3f/dw3": 6.0},
    ),
    ("custom names", _chain([{"target": "z", "sources": "x", "kind": "hessian", "name": "H"}]), {"H": 108.0}),
]


@pytest.mark.parametrize("config, expected", [k[1:] for k in KINDS], ids=[k[0] for k in KINDS])
def test_kind(run_job, config, expected):
    ran = run_job(config)
    assert ran.log["status"] == "ok", ran.log["error"]
    assert list(ran.derivatives) == list(expected)
    for name, want in expected.items():
        _assert_value(name, ran.derivatives[name], want)


def _assert_value(name, got, want):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{name}: {got!r}"
        for k in want:
            _assert_value(f"{name}[{k}]", got[k], want[k])
    elif want is None:
        assert got is None, f"{name}: {got!r}"
    else:
        np.testing.assert_allclose(
            np.asarray(got, dtype=float), np.asarray(want, dtype=float), rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_records_kind_and_order(run_job):
    ran = run_job(
        _chain(
            [
                {"target": "z", "sources": "x", "order": 3},
                {"target": "z", "sources": "x", "kind": "hessian"},
                {"target": "z", "sources": "x", "kind": "hvp", "tangents": 1.0},
                {"target": "z", "sources": "x", "kind": "jvp", "tangents": 1.0},
            ]
        )
    )
    assert [(d["kind"], d["order"]) for d in ran.log["derivatives"]] == [
        ("gradient", 3),
        ("hessian", 2),
        ("hvp", 2),
        ("jvp", 1),
    ]


# ---- the shared tape: first-order requests share it, recomputing requests do not ----------


def test_first_order_requests_share_the_non_persistent_tape(run_job):
    ran = run_job(_chain([{"target": "y", "sources": "x"}, {"target": "z", "sources": "x", "kind": "jacobian"}]))
    assert ran.derivatives == {"dy/dx": 6.0}
    assert (ran.log["error"]["type"], ran.log["error"]["derivative"]) == ("RuntimeError", "jacobian(z; x)")


def test_batch_jacobian_is_refused_by_a_used_non_persistent_tape(run_job):
    cfg = function_config(
        {"y": "x * x"},
        {"x": [[1.0, 2.0]]},
        [{"target": "y", "sources": "x"}, {"target": "y", "sources": "x", "kind": "batch_jacobian"}],
    )
    ran = run_job(cfg)
    assert ran.log["error"]["derivative"] == "batch_jacobian(y; x)"


def test_recomputing_requests_leave_the_shared_tape_alone(run_job):
    # a hessian, a jvp and an order-2 gradient run on their own tapes: the one gradient the
    # non-persistent tape allows is still there for the last request
    ran = run_job(
        _chain(
            [
                {"target": "z", "sources": "x", "kind": "hessian"},
                {"target": "z", "sources": "x", "kind": "jvp", "tangents": 1.0},
                {"target": "z", "sources": "x", "order": 2},
                {"target": "z", "sources": "x"},
            ]
        )
    )
    assert ran.log["status"] == "ok"
    assert ran.derivatives == {"hessian(z; x)": 108.0, "jvp(z; x)": 108.0, "d2z/dx2": 108.0, "dz/dx": 108.0}


def test_a_runtime_failure_of_a_recomputing_request_is_recorded(run_job):
    # a batch Jacobian's target must have rank >= 2: TF refuses, the run records it
    cfg = function_config(
        {"s": "reduce_sum(x)"},
        {"x": [[1.0, 2.0]]},
        [{"target": "s", "sources": "x", "kind": "hessian"}, {"target": "s", "sources": "x", "kind": "batch_jacobian"}],
    )
    ran = run_job(cfg)
    assert ran.derivatives == {"hessian(s; x)": None}  # the gradient, ones, does not depend on x
    assert ran.log["error"]["derivative"] == "batch_jacobian(s; x)"
    assert ran.code == 1


# ---- refused before TensorFlow runs ---------------------------------------------------------


def _req(**r):
    return {"target": "z", "sources": "x", **r}


REFUSED = [
    # id, derivatives (on CHAIN at x = 3 unless a point is given), the key at fault, words of the message
    ("unknown kind", [_req(kind="hesian")], "derivatives[0].kind", "unknown kind"),
    ("order 0", [_req(order=0)], "derivatives[0].order", ">= 1"),
    ("order not a number", [_req(order="two")], "derivatives[0].order", ">= 1"),
    ("order 2 of a jacobian", [_req(kind="jacobian", order=2)], "derivatives[0].order", "kind gradient"),
    ("order 3 of a hessian", [_req(kind="hessian", order=3)], "derivatives[0].order", "second order"),
    ("order 2 with two sources", [_req(sources=["x", "y"], order=2)], "derivatives[0].sources", "one source"),
    ("jvp without tangents", [_req(kind="jvp")], "derivatives[0].tangents", "missing"),
    ("hvp without tangents", [_req(kind="hvp")], "derivatives[0].tangents", "missing"),
    ("tangents on a gradient", [_req(tangents=1.0)], "derivatives[0].tangents", "only kinds jvp and hvp"),
    (
        "tangents of the wrong shape",
        [_req(kind="jvp", tangents=[1.0, 2.0])],
        "derivatives[0].tangents.x",
        "does not match",
    ),
    ("tangents not a number", [_req(kind="jvp", tangents="up")], "derivatives[0].tangents.x", "expected a number"),
    (
        "tangents missing a source",
        [_req(sources=["x", "y"], kind="jvp", tangents={"x": 1.0})],
        "derivatives[0].tangents",
        "no tangent for source(s) y",
    ),
    (
        "output_gradients on a jacobian",
        [_req(kind="jacobian", output_gradients=1.0)],
        "derivatives[0].output_gradients",
        "first-order gradient",
    ),
    (
        "output_gradients on order 2",
        [_req(order=2, output_gradients=1.0)],
        "derivatives[0].output_gradients",
        "first-order gradient",
    ),
    (
        "parallel_iterations on a gradient",
        [_req(parallel_iterations=4)],
        "derivatives[0].parallel_iterations",
        "only kinds",
    ),
    (
        "parallel_iterations 0",
        [_req(kind="jacobian", parallel_iterations=0)],
        "derivatives[0].parallel_iterations",
        ">= 1",
    ),
    (
        "experimental_use_pfor off for a jvp",
        [_req(kind="jvp", tangents=1.0, experimental_use_pfor=False)],
        "derivatives[0].experimental_use_pfor",
        "only kinds",
    ),
    ("unconnected maybe", [_req(unconnected="maybe")], "derivatives[0].unconnected", "none or zero"),
    ("batch_jacobian of a scalar", [_req(kind="batch_jacobian")], "derivatives[0].sources", "rank 2"),
    (
        "batch_jacobian of two sources",
        [_req(kind="batch_jacobian", sources=["x", "y"])],
        "derivatives[0].sources",
        "exactly one source",
    ),
    (
        "hessian by dependent sources",
        [_req(kind="hessian", sources=["x", "y"])],
        "derivatives[0].sources",
        "computed from source 'x'",
    ),
    (
        "jvp by dependent sources",
        [_req(kind="jvp", sources=["y", "x"], tangents={"x": 1.0, "y": 1.0})],
        "derivatives[0].sources",
        "computed from source 'x'",
    ),
    ("a source twice", [_req(sources=["x", "x"])], "derivatives[0].sources", "twice"),
]


@pytest.mark.parametrize("derivatives, key, words", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused(derivatives, key, words):
    with pytest.raises(ConfigError) as err:
        specs.build(_chain(derivatives))
    assert err.value.key == key
    assert words in err.value.message


@pytest.mark.parametrize("mode", ["eagre", "jit"])
def test_unknown_compile_mode_is_refused(mode):
    with pytest.raises(ConfigError) as err:
        specs.build(_chain([_req()], tape={"compile": mode}))
    assert err.value.key == "tape.compile"


def test_hydra_refuses_an_unknown_compile_mode_at_composition():
    with pytest.raises(Exception, match="compile"):
        composed(["experiment=compiled", "tape.compile=jit"])


# ---- compiled programs ----------------------------------------------------------------------

EXPERIMENTS_COMPILED = [
    "hessian",
    "jvp",
    "hvp",
    "batch_jacobian",
    "variables",
    "watch",
    "stop_recording",
    "higher_order",
    "seed_non_persistent",
]


@pytest.mark.parametrize("mode", ["function", "xla"])
@pytest.mark.parametrize("experiment", EXPERIMENTS_COMPILED)
def test_compiled_gives_the_eager_numbers(run_job, experiment, mode):
    eager = run_job([f"experiment={experiment}", "tape.compile=eager"])
    compiled = run_job([f"experiment={experiment}", f"tape.compile={mode}"])
    assert compiled.log["tape"]["compile"] == mode
    assert compiled.code == eager.code
    assert compiled.log["error"] == eager.log["error"]
    assert list(compiled.derivatives) == list(eager.derivatives)
    for name, want in eager.derivatives.items():
        _assert_value(name, compiled.derivatives[name], want)
    for name, want in eager.values.items():
        _assert_value(name, compiled.values[name], want)


def test_compiled_program_is_traced_once_for_new_point_values(run_job):
    from runner.tape import program

    # a structure no other test uses, so the first job traces it
    steps = {"y": "x * x * w", "z": "y * y + 0.125"}
    inputs = {"x": {"kind": "constant"}, "w": {"kind": "variable"}}
    reqs = [{"target": "z", "sources": ["x", "w"]}, {"target": "z", "sources": "x", "kind": "hessian"}]

    def job(x, w):
        return run_job(
            function_config(
                steps, {"x": x, "w": w}, reqs, inputs=inputs, tape={"compile": "function", "persistent": True}
            )
        )

    before = program.TRACES
    runs = [job(x, w) for x, w in [(1.0, 1.0), (2.0, 1.0), (3.0, 0.5), (-1.0, 2.0)]]
    assert program.TRACES - before == 1
    assert [r.log["tape"]["traced"] for r in runs] == [True, False, False, False]
    assert all(r.log["tape"]["traces"] == 1 for r in runs)
    for r, (x, w) in zip(runs, [(1.0, 1.0), (2.0, 1.0), (3.0, 0.5), (-1.0, 2.0)]):
        # z = x**4 w**2 + 1/8: dz/dx = 4 x**3 w**2, dz/dw = 2 x**4 w, d2z/dx2 = 12 x**2 w**2
        _assert_value("grad", r.derivatives["dz/d(x,w)"], {"x": 4 * x**3 * w**2, "w": 2 * x**4 * w})
        _assert_value("hessian", r.derivatives["hessian(z; x)"], 12 * x**2 * w**2)
    # a new shape is a new structure: traced once more
    job([1.0, 2.0], 1.0)
    assert program.TRACES - before == 2


def test_compiled_non_persistent_refusal_is_kept_on_reuse(run_job):
    first = run_job(["experiment=seed_non_persistent", "tape.compile=function", "point.x=4.0"])
    again = run_job(["experiment=seed_non_persistent", "tape.compile=function", "point.x=5.0"])
    for ran, x in ((first, 4.0), (again, 5.0)):
        assert ran.derivatives == {"dy/dx": 2 * x}
        assert ran.log["error"]["derivative"] == "dz/dx"
    assert again.log["tape"]["traced"] is False


# ---- warnings and large tensors -------------------------------------------------------------


def test_warnings_list_is_empty_when_tensorflow_says_nothing(run_job):
    ran = run_job(["experiment=seed_cubic"])
    assert ran.log["warnings"] == []


def test_forward_mode_integer_source_warning_is_captured(run_job):
    cfg = function_config(
        {"y": "x * x"},
        {"x": 3},
        [{"target": "y", "sources": "x", "kind": "jvp", "tangents": 1}],
        inputs={"x": {"dtype": "int32"}},
        tape={"watch": []},
    )
    ran = run_job(cfg)
    assert any("watched primal must be floating" in w for w in ran.log["warnings"]), ran.log["warnings"]


def test_ten_million_points_write_a_small_json(run_job):
    cfg = function_config(
        {"y": "x * x"}, {"x": {"linspace": [0.0, 1.0, 10_000_000]}}, [{"target": "y", "sources": "x"}]
    )
    ran = run_job(cfg)
    assert ran.log["status"] == "ok"
    assert (ran.folder / "results.json").stat().st_size < 10_000
    ref = ran.derivatives["dy/dx"]
    assert ref["array"] == {"file": "arrays.npz", "key": "derivatives/dy/dx", "shape": [10_000_000], "dtype": "float32"}
    assert ref["summary"]["min"] == 0.0 and ref["summary"]["max"] == pytest.approx(2.0)
    with np.load(ran.folder / "arrays.npz") as arrays:
        # every element is checked (symbolically, over the whole grid): its reference is kept too
        assert sorted(arrays.files) == ["checks/dy/dx", "derivatives/dy/dx", "values/x", "values/y"]
        assert arrays["checks/dy/dx"].shape == (10_000_000,)
        dy = arrays["derivatives/dy/dx"]
        assert dy.shape == (10_000_000,)
        np.testing.assert_allclose(
            dy[::999_999], 2 * np.linspace(0.0, 1.0, 10_000_000, dtype=np.float32)[::999_999], rtol=1e-6
        )
    json.loads((ran.folder / "results.json").read_text())  # strict JSON


@pytest.mark.slow
def test_a_compiled_sweep_traces_once(tmp_path):
    # the basic launcher runs every job in one process: only the first traces
    from tests.helpers import cli

    done = cli(["-m", "experiment=compiled", "point.x=1.0,2.0,3.0", f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    logs = [json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text()) for i in range(3)]
    assert [log["tape"]["traced"] for log in logs] == [True, False, False]
    # dz/dx = 4x**3, d2z/dx2 = 12x**2
    assert [[d["value"] for d in log["derivatives"]] for log in logs] == [
        [2.0, 4.0, 12.0],
        [4.0, 32.0, 48.0],
        [6.0, 108.0, 108.0],
    ]
