"""The symbolic gradient's comparison made in the formulas' own pass (runner/verify/pointwise.py
`Against`/`Stats`, used by runner/verify/compare.py): the same record as compare's own passes,
and a wrong element still caught wherever it is."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from runner.config import spec as specs
from runner.verify import check, compare, symbolic_reference
from runner.verify.chunk_compare import Stats
from runner.verify.forward_pass import Forward

N = 300_000


def _setup():
    cfg = {
        "function": {"inputs": ["x"], "steps": {"y": "sin(x) * x"}},
        "point": {"x": {"linspace": [-10.0, 10.0, N]}},
        "derivatives": [{"target": "y", "sources": "x"}],
    }
    spec = specs.build(cfg)
    x = tf.constant(spec.point["x"], dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.sin(x) * x
    got = np.array(tape.gradient(y, x))  # TensorFlow's own float32 gradient
    return spec, {"x": x.numpy()}, got


def _both(spec, values, got):
    """compare's record with the fused comparison, and without it (compare's own passes)."""
    req = spec.requests[0]
    fwd = Forward(spec, values)
    ref = symbolic_reference.symbolic_reference(spec, req, "x", fwd, got=got)
    plain = dataclasses.replace(ref, stats=None)
    return ref, compare.compare(got, ref, req), compare.compare(got, plain, req)


def _same(a, b):
    keys = ("outcome", "max_abs_error", "max_rel_error", "tolerance", "mismatched", "elements")
    assert {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}


def test_the_fused_comparison_gives_compare_s_own_record():
    spec, values, got = _setup()
    ref, fused, plain = _both(spec, values, got)
    assert isinstance(ref.stats, Stats) and ref.stats.got is got
    assert fused["outcome"] == "passed" and fused["elements"] == N and fused["mismatched"] == 0
    _same(fused, plain)


@pytest.mark.parametrize("where", [0, 12_345, N // 2, N - 1])
@pytest.mark.parametrize("factor", [1.01, 0.99])
def test_an_element_at_the_edge_of_its_tolerance_is_judged_as_compare_judges_it(where, factor):
    spec, values, got = _setup()
    _, first, _ = _both(spec, values, got)
    r = np.sin(values["x"].astype(np.float64)) + values["x"] * np.cos(values["x"].astype(np.float64))
    tol = first["tolerance"]
    allowed = tol["atol"] + tol["rtol"] * abs(r[where])
    bad = got.copy()
    bad[where] = np.float32(r[where] + factor * allowed)  # just outside (1.01) or inside (0.99)
    if (abs(float(bad[where]) - r[where]) > allowed) != (factor > 1):
        pytest.skip("float32 rounding moved the element across the edge")
    _, fused, plain = _both(spec, values, bad)
    _same(fused, plain)
    if factor > 1:
        assert fused["outcome"] == "failed" and fused["mismatched"] == 1
        assert f"at [{where}]" in fused["reason"], fused["reason"]
    else:
        assert fused["outcome"] == "passed"


def test_a_nan_in_tensorflow_s_value_is_left_to_compare():
    spec, values, got = _setup()
    got[777] = np.nan
    ref, fused, plain = _both(spec, values, got)
    assert ref.stats is None
    assert fused["outcome"] == "failed" and "NaN" in fused["reason"]
    _same(fused, plain)


def test_a_corrupted_element_fails_the_whole_check():
    spec, values, got = _setup()
    got[N // 3] *= 1.5
    (rec,) = check.check_all(spec, values, [(spec.requests[0], got)])
    assert rec["method"] == "symbolic" and rec["outcome"] == "failed" and rec["mismatched"] == 1
    assert f"at [{N // 3}]" in rec["reason"]


@pytest.mark.parametrize("spread", [1e-7, 1e-3, 10.0])
def test_a_chunk_s_excess_is_a_bound_and_exact_where_it_could_matter(spread):
    """`compared` gives the largest error for the excess while that is below rtol times the
    chunk's largest |reference| (no element can then disagree), else the exact excess."""
    from runner.verify import chunk_compare, formula_program

    rng = np.random.default_rng(3)
    r = rng.uniform(-4.0, 4.0, 5000)
    got = (r + spread * rng.standard_normal(5000)).astype(np.float32)
    rtol = 1e-4
    top, max_abs, max_rel, excess = chunk_compare.compared(r, got, rtol, r.size, formula_program.Scratch())
    err = np.abs(got.astype(np.float64) - r)
    exact = float(np.max(err - rtol * np.abs(r)))
    assert (top, max_abs) == (float(np.max(np.abs(r))), float(np.max(err)))
    assert max_rel == float(np.max(err / np.maximum(np.abs(r), np.finfo(np.float64).tiny)))
    assert excess >= exact
    if max_abs < rtol * top:
        assert excess == max_abs < rtol * top  # compare's tolerance is at least rtol * top
    else:
        assert excess == exact
    r[17] = np.nan
    assert chunk_compare.compared(r, got, rtol, r.size, formula_program.Scratch()) is chunk_compare.NOT_FINITE
