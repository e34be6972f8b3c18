"""What makes the projection fast (issue 14, V2) leaves its numbers as they were:

- `_projected` reads TensorFlow's value a tile at a time (rows and columns cut at CHUNK); its
  sums are those of the formulas in its docstring, computed here directly in float64 over the
  whole block, for signs and for general (rounded) directions, whatever the tiles;
- the checks' large buffers (of at least POOLED bytes) come from a pool (`empty(pool=True)`)
  reused by the next job: a block still held by anything (an array, a view, a tensor
  TensorFlow shares) is never handed out again, and a finished check's `Forward` gives its
  buffers back at once (no cycle waits for the garbage collector);
- `Forward.moved` builds x0 + sum(h d) a chunk at a time, with the same numbers as NumPy's
  whole-array arithmetic.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
import tensorflow as tf

from runner.config import spec as specs
from runner.tape import program
from runner.verify import forward_pass, projection
from runner.verify.forward_pass import ALIGN, Forward, _as_tensor, empty
from tests.helpers import function_config

K = 4


def _direct(blocks, signs):
    """The sums of `projection.Sums` straight from their definitions, in float64."""
    p, count, absum, squares = np.zeros(K), np.zeros(K), np.zeros(K), np.zeros(K)
    allabs = []
    for j, u, v in blocks:
        j, u, v = (np.asarray(a, dtype=np.float64) for a in (j, u, v))
        allabs.append(np.abs(j).reshape(-1))
        for i in range(K):
            p[i] += u[i] @ j @ v[i]
            count[i] += np.sum(u[i] ** 2) * np.sum(v[i] ** 2)
            absum[i] += (u[i] ** 2) @ np.abs(j) @ (v[i] ** 2)
            squares[i] += (u[i] ** 2) @ (j**2) @ (v[i] ** 2)
    ranked = np.sort(np.concatenate(allabs))[::-1]
    scale = ranked[projection.SPARED] if ranked.size > projection.SPARED else ranked[0]
    return p, count, absum, squares, scale


# id -> (the blocks' shapes (rows, columns), CHUNK): tiles of whole rows, of parts of one row,
# a last tile cut short, several blocks (a batch jacobian)
SHAPES = {
    "one_long_row": ([(1, 5000)], 1024),  # a gradient: one row cut in 5 tiles, the last short
    "many_rows": ([(300, 70)], 1024),  # 14 rows a tile, the last tile 6 rows
    "rows_longer_than_a_tile": ([(7, 3000)], 1000),
    "whole_block_one_tile": ([(40, 50)], 1 << 15),
    "several_blocks": ([(20, 90), (20, 90), (20, 90)], 512),
}


@pytest.mark.parametrize("signs", [True, False], ids=["signs", "rounded"])
@pytest.mark.parametrize("case", list(SHAPES))
def test_the_tiled_pass_gives_the_sums_of_their_formulas(monkeypatch, case, signs):
    shapes, chunk = SHAPES[case]
    monkeypatch.setattr(projection, "CHUNK", chunk)
    rng = np.random.default_rng(7)
    blocks = []
    for rows, cols in shapes:
        j = rng.standard_normal((rows, cols)).astype(np.float32)
        u = projection._signs(rng, K, (rows,)).reshape(K, rows)
        v = projection._signs(rng, K, (cols,)).reshape(K, cols)
        if not signs:  # rounded moves replace V (float64 near +-1)
            v = v * (1 + 1e-3 * rng.standard_normal(v.shape))
        blocks.append((j, u, v))
    got = projection._projected(blocks, signs)
    p, count, absum, squares, scale = _direct(blocks, signs)
    np.testing.assert_allclose(got.p, p, rtol=1e-12, atol=1e-12 * np.sqrt(squares.max()))
    np.testing.assert_allclose(got.count, count, rtol=1e-12)
    np.testing.assert_allclose(got.abs, absum, rtol=1e-12)
    np.testing.assert_allclose(got.squares, squares, rtol=1e-12)
    assert got.scale == scale


def test_the_scale_spares_the_eight_largest_even_when_one_is_not_finite(monkeypatch):
    monkeypatch.setattr(projection, "CHUNK", 256)
    j = np.linspace(-1.0, 1.0, 3000).reshape(1, -1).astype(np.float32)
    j[0, 100:108] = 50.0  # eight large elements spared by the scale
    j[0, 2000] = np.inf
    ones = np.ones((K, 1), dtype=np.int8)
    v = projection._signs(np.random.default_rng(0), K, (3000,)).reshape(K, -1)
    got = projection._projected([(j, ones, v)], True)
    assert got.scale == 1.0  # the ninth largest finite |J|: the inf is left out, the 50s spared
    assert not np.isfinite(got.squares).all()


# |J| in an order that makes each tile's elements the largest so far (rising), many equal to the
# SPARED + 1-th largest (ties), the largest in the first tile only (falling), at random
ORDERS = {
    "rising": np.linspace(0.0, 1.0, 5000),
    "ties": np.repeat([0.5, 1.0, 2.0], [4000, 996, 4]),
    "falling": np.linspace(1.0, 0.0, 5000),
    "random": np.abs(np.random.default_rng(2).standard_normal(5000)),
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_the_scale_is_the_ninth_largest_whatever_the_tiles_order(monkeypatch, order):
    """Past the first tile, only elements over the SPARED + 1-th largest so far are kept."""
    monkeypatch.setattr(projection, "CHUNK", 256)
    magnitudes = ORDERS[order]
    j = (magnitudes * np.where(np.arange(magnitudes.size) % 3, 1.0, -1.0)).reshape(1, -1)
    ones = np.ones((K, 1), dtype=np.int8)
    v = projection._signs(np.random.default_rng(0), K, (j.size,)).reshape(K, -1)
    got = projection._projected([(j, ones, v)], True)
    assert got.scale == np.sort(magnitudes)[::-1][projection.SPARED]


def test_a_pooled_block_is_handed_out_again_only_once_nothing_holds_it():
    n = 1 << 17
    first = empty((n,), pool=True)
    address = first.ctypes.data
    assert address % ALIGN == 0
    view = first[10:20]
    del first
    second = empty((n,), pool=True)  # the view still holds the first block
    assert second.ctypes.data != address
    del view
    third = empty((n,), pool=True)
    assert third.ctypes.data == address  # released: reused
    third[:] = 1.0
    shared = _as_tensor(tf, third)  # TensorFlow reads it without a copy: its tensor holds it
    del third
    fourth = empty((n,), pool=True)
    assert fourth.ctypes.data not in (address, second.ctypes.data)
    assert float(tf.reduce_sum(shared)) == n  # unchanged
    int8 = empty((2, n), np.int8, pool=True)  # any dtype, aligned alike
    assert int8.dtype == np.int8 and int8.ctypes.data % ALIGN == 0
    blocks = len(forward_pass.POOL)
    small = empty((100,), pool=True)  # under POOLED bytes: malloc's own, not the pool's
    assert len(forward_pass.POOL) == blocks and small.ctypes.data % ALIGN == 0


def test_a_finished_checks_buffers_go_back_to_the_pool_without_the_garbage_collector():
    n = 1 << 17
    cfg = function_config(
        {"y": "reduce_sum(sin(x) * x)"}, {"x": np.linspace(-2, 2, n).tolist()}, [{"target": "y", "sources": "x"}]
    )
    spec = specs.build(cfg)
    outcome = program.run(spec)
    d = np.where(np.arange(n) % 3, 1, -1).astype(np.int8)
    gc.disable()
    try:
        fwd = Forward(spec, outcome.values)
        moved = fwd.moved("x", [(1e-3, d)])
        fwd.target("y", {"x": moved})
        address = moved.ctypes.data
        del fwd, moved
        assert empty((n,), pool=True).ctypes.data in {
            r.ctypes.data + (-r.ctypes.data % ALIGN) for r in forward_pass.POOL
        }
        again = Forward(spec, outcome.values)
        assert again.moved("x", [(1e-3, d)]).ctypes.data == address  # the same memory, no new pages
    finally:
        gc.enable()


@pytest.mark.parametrize("shape, chunk", [((1 << 17,), 1 << 15), ((300, 500), 1 << 14), ((3, 5), 4), ((), 4)])
def test_moved_chunk_by_chunk_gives_numpys_numbers(monkeypatch, shape, chunk):
    monkeypatch.setattr(forward_pass, "MOVE_CHUNK", chunk)
    size = int(np.prod(shape))
    x = np.linspace(-3.0, 3.0, size).reshape(shape)
    cfg = function_config({"y": "reduce_sum(x * x)"}, {"x": x.tolist()}, [{"target": "y", "sources": "x"}])
    spec = specs.build(cfg)
    fwd = Forward(spec, program.run(spec).values)
    rng = np.random.default_rng(3)
    d1 = projection._signs(rng, 1, shape)[0]
    d2 = rng.standard_normal(shape)
    x0 = fwd.base["x"]
    np.testing.assert_array_equal(fwd.moved("x", [(1e-3, d1)]), x0 + 1e-3 * d1)
    np.testing.assert_array_equal(fwd.moved("x", [(-1e-3, d1), (2e-4, d2)]), x0 + -1e-3 * d1 + 2e-4 * d2)
    np.testing.assert_array_equal(fwd.moved("x", [(1e-3, np.float64(1.0))]), x0 + 1e-3)  # broadcast
    np.testing.assert_array_equal(fwd.moved("x", []), x0)
