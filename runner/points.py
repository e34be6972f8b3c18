"""Evaluation points: turn each input's `point` entry into a NumPy array.

A point is a number, a nested list (a tensor), or a generator mapping:
  {linspace: [start, stop, num]}, {arange: [start, stop, step]},
  {random: {shape: [...], distribution: normal|uniform, seed: N}}.
Everything here is NumPy; TensorFlow sees only the finished arrays.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from runner.errors import ConfigError

# A point may not ask for more elements than this (about 1 GiB of float64), so a typo such
# as linspace: [0, 1, 1e12] is refused up front instead of exhausting memory.
MAX_ELEMENTS = 2**27

GENERATORS = ("linspace", "arange", "random")


def evaluate(key: str, value: Any) -> np.ndarray:
    """The array a point entry denotes; `key` (``point.x``) names it in errors."""
    if isinstance(value, Mapping):
        return _generate(key, value)
    if isinstance(value, bool) or value is None:
        raise ConfigError(key, f"expected a number, a nested list or a generator, got {value!r}")
    if isinstance(value, (int, float)):
        return np.asarray(value)
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            raise ConfigError(key, "nested lists must be rectangular (all rows the same length)") from None
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            raise ConfigError(key, "a tensor point must hold only numbers, in rectangular nested lists")
        return arr
    raise ConfigError(key, f"expected a number, a nested list or a generator, got {type(value).__name__}")


def _generate(key: str, spec: Mapping) -> np.ndarray:
    if len(spec) != 1 or next(iter(spec)) not in GENERATORS:
        raise ConfigError(key, f"a generator is one of {{{', '.join(g + ': ...' for g in GENERATORS)}}}, got keys {sorted(spec)}")
    (gen, args), = spec.items()
    if gen == "linspace":
        start, stop, num = _numbers(f"{key}.linspace", args, 3)
        if num != int(num) or num < 1:
            raise ConfigError(f"{key}.linspace", f"num must be a positive whole number, got {num}")
        _check_size(key, int(num))
        return np.linspace(start, stop, int(num))
    if gen == "arange":
        start, stop, step = _numbers(f"{key}.arange", args, 3)
        if step == 0:
            raise ConfigError(f"{key}.arange", "step must not be 0")
        _check_size(key, int(np.ceil((stop - start) / step)))
        return np.arange(start, stop, step, dtype=np.float64)
    return _random(f"{key}.random", args)


def _random(key: str, args: Any) -> np.ndarray:
    if not isinstance(args, Mapping):
        raise ConfigError(key, "expected {shape: [...], distribution: normal|uniform, seed: N}")
    unknown = set(args) - {"shape", "distribution", "seed"}
    if unknown:
        raise ConfigError(key, f"unknown option(s) {sorted(unknown)}; allowed: shape, distribution, seed")
    shape = args.get("shape", [])
    if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ConfigError(f"{key}.shape", f"expected a list of non-negative whole numbers, got {shape!r}")
    _check_size(key, int(np.prod(shape)))
    dist = args.get("distribution", "normal")
    seed = args.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{key}.seed", f"expected a whole number, got {seed!r}")
    rng = np.random.default_rng(seed)
    if dist == "normal":
        return rng.standard_normal(shape)
    if dist == "uniform":
        return rng.uniform(0.0, 1.0, shape)
    raise ConfigError(f"{key}.distribution", f"expected normal or uniform, got {dist!r}")


def _numbers(key: str, args: Any, count: int) -> list:
    if not isinstance(args, (list, tuple)) or len(args) != count or not all(
        isinstance(a, (int, float)) and not isinstance(a, bool) for a in args
    ):
        raise ConfigError(key, f"expected a list of {count} numbers, got {args!r}")
    return [float(a) for a in args]


def _check_size(key: str, n: int) -> None:
    if n > MAX_ELEMENTS:
        gib = n * 8 / 2**30
        raise ConfigError(key, f"{n:,} elements (about {gib:,.1f} GiB as float64) exceeds the limit of {MAX_ELEMENTS:,}")
