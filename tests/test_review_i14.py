"""Review of issue 14's verification: confirmed bugs, each a strict xfail that passes once fixed.

Real TensorFlow throughout: whole jobs (`runner.job.run`) or the program run and its real
derivative checked (`check.check`), as tests/test_projection.py does.
"""

from __future__ import annotations

from typing import List

import numpy as np
import pytest

from runner.config import spec as specs
from runner.language.shapes import check_work
from tests.helpers import function_config, run_steps


def test_a_batch_jacobian_whose_rows_are_not_independent_does_not_pass(tmp_path):
    # TF's batch_jacobian of x - mean over the batch is 0; the diagonal blocks are (1 - 1/3) I
    _, res = run_steps(
        tmp_path,
        {"y": "x - reduce_mean(x, 0)"},
        {"x": [[0.1, 0.2], [0.3, 0.5], [-0.4, 0.6]]},
        [{"target": "y", "sources": "x", "kind": "batch_jacobian"}],
    )
    rec = res["derivatives"][0]
    assert np.allclose(rec["value"], 0.0)
    assert rec["check"]["outcome"] != "passed", rec["check"]


@pytest.mark.parametrize(
    "offset, factor, outcome",
    [(1e4, 1.0, "passed"), (1e4, -1.0, "failed"), (1e6, 1.0, "passed"), (1e6, 10.0, "failed")],
    ids=["right", "sign_flipped", "right_1e6", "ten_times_1e6"],
)
def test_a_projected_gradient_under_a_large_offset_is_judged_by_differences_that_can_tell(offset, factor, outcome):
    # reduce_sum(OFFSET + 0.01 * ...): the one-sided differences' rounding (10 eps |f| / h) was
    # larger than the projections and went into the tolerance, so a flipped sign passed; now
    # such differences are taken again, central, with larger steps
    from runner.tape import program
    from runner.verify import check as verify

    point = {"W": {"random": {"shape": [80, 80], "seed": 0}}, "v": {"random": {"shape": [80, 1], "seed": 1}}}
    steps = {"y": f"reduce_sum({offset} + 0.01 * tanh(matmul(W, v) / 10))"}
    spec = specs.build(function_config(steps, point, [{"target": "y", "sources": "W"}]))
    result = program.run(spec)
    assert result.error is None
    got = factor * np.array(result.derivatives[0].value)
    fwd = verify.Forward(spec, result.values)
    rec = verify.check(spec, spec.requests[0], got, fwd, verify.tracked_names(spec))
    assert (rec["method"], rec["outcome"]) == ("projection", outcome), rec


def test_a_source_only_in_where_s_condition_is_unconnected(tmp_path):
    _, res = run_steps(
        tmp_path,
        {"y": "where(x > 0, w, 2 * w)"},
        {"x": [1.0, -2.0, 3.0], "w": [1.0, 2.0, 3.0]},
        [{"target": "y", "sources": "x"}],
    )
    rec = res["derivatives"][0]
    assert rec["value"] is None  # TensorFlow's own answer
    assert rec["check"]["outcome"] == "passed", rec["check"]


def test_the_lazy_forward_does_not_hide_a_target_undefined_in_float64(tmp_path):
    outcomes: List[str] = []
    for verify in ("auto", "finite_difference"):
        folder = tmp_path / verify
        folder.mkdir()
        _, res = run_steps(
            folder,
            {"y": "z * exp(log(x - 1.0000000001))"},  # float32: x - c = 0, exp(log 0) = 0; float64: log(-1e-10)
            {"x": 1.0, "z": 2.0},
            [{"target": "y", "sources": "z"}],
            verify=verify,
            dtype="float32",
        )
        outcomes.append(res["derivatives"][0]["check"]["outcome"])
    assert outcomes[0] == outcomes[1] == "failed", outcomes


def test_the_check_s_runs_of_a_batch_jacobian_are_what_the_admission_counted(tmp_path, monkeypatch):
    from runner.verify import forward_pass

    runs = {"n": 0}
    target = forward_pass.Forward.target

    def counting(self, *args, **kwargs):
        runs["n"] += 1
        return target(self, *args, **kwargs)

    monkeypatch.setattr(forward_pass.Forward, "target", counting)
    point = {"X": {"random": {"shape": [2, 2049], "seed": 0}}, "M": {"random": {"shape": [2049, 1], "seed": 1}}}
    request = {"target": "y", "sources": "X", "kind": "batch_jacobian"}
    steps = {"y": "tanh(matmul(X, M) / 64)"}
    spec = specs.build(function_config(steps, point, [request]))
    counted, _, _ = check_work(spec.requests[0], {"X": [2, 2049], "M": [2049, 1], "y": [2, 1]}, 1)
    code, res = run_steps(tmp_path, steps, point, [request], dtype="float32")
    assert code == 0 and res["derivatives"][0]["check"]["outcome"] == "passed"
    # [1, 4096] is refused at 8,210 counted runs; [2, 2049] is counted as 16 and runs ~4,100 times
    assert runs["n"] <= counted, (runs["n"], counted)
