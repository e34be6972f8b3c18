"""The projection's directions are drawn as before, only faster (issue 14, V2): `_bytes` reads
PCG64's 64-bit outputs where they are `Generator.bytes`'s very bytes, and leaves the generator
as `bytes` leaves it, so a recorded seed draws the same directions, whatever came before."""

from __future__ import annotations

import numpy as np
import pytest

from runner.verify import projection


def _signs_by_definition(rng: np.random.Generator, k: int, shape) -> np.ndarray:
    """The directions as DIRECTIONS records them: k * n bits of `rng.bytes`, bit 1 -> -1."""
    n = int(np.prod(shape, dtype=np.int64))
    bits = np.unpackbits(np.frombuffer(rng.bytes((k * n + 7) // 8), dtype=np.uint8), count=k * n)
    return (1 - 2 * bits.astype(np.int64)).astype(np.int8).reshape((k,) + tuple(shape))


# lengths of successive draws from one generator: whole 64-bit outputs, half of one (NumPy
# keeps the other half for the next draw), bytes that end inside a 32-bit draw, none (which
# takes a 32-bit draw all the same)
DRAWS = [[8, 4096, 16], [4, 8, 8], [12, 24], [7, 8, 1, 16], [0, 8], [0, 0, 8], [1 << 19]]


@pytest.mark.parametrize("seed", [0, 7, [0, 1, 2]])
@pytest.mark.parametrize("lengths", DRAWS, ids=[str(d) for d in DRAWS])
def test_bytes_are_generator_bytes_and_leave_it_alike(seed, lengths):
    ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    for n in lengths:
        got = projection._bytes(ours, n)
        assert got.dtype == np.uint8 and got.tobytes() == numpys.bytes(n)
    assert _state(ours) == _state(numpys)
    # the next draws alike: a 32-bit one (the half kept, if any) and a 64-bit one
    assert ours.integers(0, 1 << 32, dtype=np.uint32) == numpys.integers(0, 1 << 32, dtype=np.uint32)
    assert ours.random() == numpys.random()


def _state(rng: np.random.Generator):
    """The generator's state but a spent half it no longer uses (has_uint32 0: 'uinteger' is stale)."""
    state = dict(rng.bit_generator.state)
    if not state.get("has_uint32", 1):
        state.pop("uinteger")
    return state


def test_other_bit_generators_take_generator_bytes():
    ours, numpys = np.random.Generator(np.random.Philox(3)), np.random.Generator(np.random.Philox(3))
    assert projection._bytes(ours, 64).tobytes() == numpys.bytes(64)
    assert ours.integers(0, 1 << 32, size=3).tolist() == numpys.integers(0, 1 << 32, size=3).tolist()


@pytest.mark.parametrize("k, shapes", [(4, [(1024, 1024)]), (4, [(3, 5), (7,)]), (1, [(13,), (8, 8)]), (3, [()])])
def test_signs_are_the_recorded_directions(k, shapes):
    ours, reference = np.random.default_rng([5, 0, 0]), np.random.default_rng([5, 0, 0])
    for shape in shapes:  # a jacobian draws u, then v, from one generator
        got = projection._signs(ours, k, shape)
        assert got.dtype == np.int8 and got.shape == (k,) + shape
        np.testing.assert_array_equal(got, _signs_by_definition(reference, k, shape))
