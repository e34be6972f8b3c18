"""Evaluation points: turn each input's `point` entry into a NumPy array.

A point is a number, a nested list (a tensor), or a generator mapping:
  {linspace: [start, stop, num]}, {arange: [start, stop, step]},
  {random: {shape: [...], distribution: normal|uniform, seed: N}},
  {file: path.npy | path.csv}  (a relative path is read from the current working folder),
or a grid axis, {grid: <any of the above, 1-D>}: the inputs given as grid axes are meshed
together (NumPy's meshgrid, indexing "ij", in the order of `function.inputs`), so each of
them becomes an array of shape [n1, n2, ...] and one tape call evaluates every grid point.
Everything here is NumPy; TensorFlow sees only the finished arrays.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping

import numpy as np

from runner.config.settings import seed_number
from runner.errors import ConfigError, short

# A point may not ask for more elements than this (about 1 GiB of float64), so a typo such
# as linspace: [0, 1, 1e12] is refused up front instead of exhausting memory.
MAX_ELEMENTS = 2**27

GENERATORS = ("linspace", "arange", "random", "file")
WRAPPERS = ("grid",)  # {grid: <1-D point>}: an axis of a grid over several inputs
FILE_SUFFIXES = (".npy", ".csv")


def evaluate_all(key: str, raw: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    """The arrays of a whole `point` mapping (input -> entry), grid axes meshed together.

    Inputs given as `{grid: ...}` are the axes of one grid, in the mapping's order; each
    becomes an array of shape [n1, n2, ...] (indexing "ij": axis k varies along dimension k).
    """
    out: Dict[str, np.ndarray] = {}
    axes: Dict[str, np.ndarray] = {}
    for name, value in raw.items():
        if isinstance(value, Mapping) and set(value) == {"grid"}:
            axis = evaluate(f"{key}.{name}.grid", value["grid"])
            if axis.ndim != 1:
                raise ConfigError(f"{key}.{name}.grid", f"a grid axis must be 1-D, got shape {list(axis.shape)}")
            axes[name] = axis
        else:
            out[name] = evaluate(f"{key}.{name}", value)
    if axes:
        _check_size(f"{key} (grid of {', '.join(axes)})", np.prod([a.size for a in axes.values()], dtype=np.float64))
        for name, mesh in zip(axes, np.meshgrid(*axes.values(), indexing="ij")):
            out[name] = mesh
    return {name: out[name] for name in raw}


def evaluate(key: str, value: Any) -> np.ndarray:
    """The array a point entry denotes; `key` (``point.x``) names it in errors."""
    if isinstance(value, Mapping):
        if set(value) == {"grid"}:
            raise ConfigError(
                f"{key}.grid", "a grid axis is allowed only as a whole input's point (point.NAME: {grid: ...})"
            )
        return _generate(key, value)
    if isinstance(value, bool) or value is None:
        raise ConfigError(key, f"expected a number, a nested list or a generator, got {value!r}")
    if isinstance(value, (int, float)):
        return _array(key, value)
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError:
            raise ConfigError(key, "nested lists must be rectangular (all rows the same length)") from None
        if arr.dtype == object and arr.ndim:  # ints beyond int64 (or a mix of types): as floats
            arr = _array(key, value)
        if arr.dtype == object or arr.dtype.kind not in "iuf":
            raise ConfigError(key, "a tensor point must hold only numbers, in rectangular nested lists")
        return arr
    raise ConfigError(key, f"expected a number, a nested list or a generator, got {type(value).__name__}")


def _generate(key: str, spec: Mapping) -> np.ndarray:
    if len(spec) != 1 or next(iter(spec)) not in GENERATORS:
        raise ConfigError(
            key, f"a generator is one of {{{', '.join(g + ': ...' for g in GENERATORS)}}}, got keys {sorted(spec)}"
        )
    ((gen, args),) = spec.items()
    if gen == "linspace":
        start, stop, num = _numbers(f"{key}.linspace", args, 3)
        if num != int(num) or num < 1:
            raise ConfigError(f"{key}.linspace", f"num must be a positive whole number, got {num}")
        _check_size(key, num)
        return np.linspace(start, stop, int(num))
    if gen == "arange":
        start, stop, step = _numbers(f"{key}.arange", args, 3)
        if step == 0:
            raise ConfigError(f"{key}.arange", "step must not be 0")
        _check_size(key, np.ceil((stop - start) / step))  # inf when the span overflows
        return np.arange(start, stop, step, dtype=np.float64)
    if gen == "file":
        return _file(f"{key}.file", args)
    return _random(f"{key}.random", args)


def _file(key: str, path: Any) -> np.ndarray:
    """A .npy (read with allow_pickle=False: no code runs) or a .csv of numbers."""
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"expected a path to a .npy or .csv file, got {path!r}")
    p = Path(os.path.expanduser(path))
    if p.suffix.lower() not in FILE_SUFFIXES:
        raise ConfigError(key, f"only {' and '.join(FILE_SUFFIXES)} files are read, got {path!r}")
    if not p.is_absolute():
        p = Path.cwd() / p  # Hydra does not change the working folder (hydra.job.chdir=false)
    if not p.is_file():
        raise ConfigError(key, f"no such file: {p}")
    try:
        if p.suffix.lower() == ".npy":
            # The header alone gives the shape, so an oversized file is refused before reading.
            head = np.load(p, mmap_mode="r", allow_pickle=False)
            _check_size(key, int(head.size))
            arr = np.array(head)
        else:
            if p.stat().st_size > 32 * MAX_ELEMENTS:
                raise ConfigError(key, f"{p.stat().st_size:,} bytes is too large for a .csv point")
            arr = np.loadtxt(p, delimiter=",", dtype=np.float64, ndmin=1)
            if arr.ndim == 2 and 1 in arr.shape:
                arr = arr.ravel()  # one row or one column: a vector
    except ConfigError:
        raise
    except (ValueError, OSError) as err:
        raise ConfigError(key, f"cannot read {p.name}: {err}") from None
    if arr.dtype.kind not in "iuf":
        raise ConfigError(key, f"{p.name} holds {arr.dtype}, not numbers")
    _check_size(key, int(arr.size))
    return arr


def _random(key: str, args: Any) -> np.ndarray:
    if not isinstance(args, Mapping):
        raise ConfigError(key, "expected {shape: [...], distribution: normal|uniform, seed: N}")
    unknown = set(args) - {"shape", "distribution", "seed"}
    if unknown:
        raise ConfigError(key, f"unknown option(s) {sorted(unknown)}; allowed: shape, distribution, seed")
    shape = args.get("shape", [])
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ConfigError(f"{key}.shape", f"expected a list of non-negative whole numbers, got {short(shape)}")
    _check_size(key, math.prod(shape))  # Python ints: exact, where NumPy's product wraps around
    for n in shape:  # one size alone can be too large for NumPy while the product is 0
        if n > MAX_ELEMENTS:
            raise ConfigError(f"{key}.shape", f"a size of {n:,} exceeds the limit of {MAX_ELEMENTS:,}")
    dist = args.get("distribution", "normal")
    seed = seed_number(f"{key}.seed", args.get("seed", 0))
    rng = np.random.default_rng(seed)
    if dist == "normal":
        return rng.standard_normal(shape)
    if dist == "uniform":
        return rng.uniform(0.0, 1.0, shape)
    raise ConfigError(f"{key}.distribution", f"expected normal or uniform, got {short(dist)}")


def _numbers(key: str, args: Any, count: int) -> List[float]:
    """`count` finite numbers (as floats): a generator's arguments."""
    if (
        not isinstance(args, (list, tuple))
        or len(args) != count
        or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    ):
        raise ConfigError(key, f"expected a list of {count} numbers, got {short(args)}")
    try:
        out = [float(a) for a in args]  # an int beyond any float overflows
    except OverflowError:
        out = [math.nan]
    if not all(math.isfinite(a) for a in out):
        raise ConfigError(key, f"expected {count} finite numbers, got {short(list(args))}")
    return out


def _array(key: str, value: Any) -> np.ndarray:
    """A number or nested list as an array; ints beyond int64 become float64, beyond it refused."""
    arr = np.asarray(value)
    if arr.dtype != object:
        return arr
    flat = arr.reshape(-1)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
        return arr  # not only numbers (None would become NaN): the caller refuses it
    try:
        return arr.astype(np.float64)
    except OverflowError:  # an int float64 cannot hold, even rounded
        digits = str(abs(max(flat, key=abs)))
        raise ConfigError(
            key, f"the number {digits[:12]}... ({len(digits)} digits) is too large for any float type"
        ) from None


def finite(key: str, value: Any) -> np.ndarray:
    """`evaluate`, refusing NaN and infinities: for weights and directions (output_gradients,
    tangents), where a non-finite number makes every result NaN or inf."""
    arr = evaluate(key, value)
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = arr.reshape(-1)[~np.isfinite(arr.reshape(-1))][0]
        raise ConfigError(key, f"expected finite numbers, got {float(bad)}")
    return arr


def _check_size(key: str, n: float) -> None:
    """Refuse more than `MAX_ELEMENTS` elements; `n` may be a float (inf: beyond counting)."""
    if n <= MAX_ELEMENTS:
        return
    if not (isinstance(n, int) or math.isfinite(n)) or n > 10**30:  # NaN too
        raise ConfigError(key, f"more elements than the limit of {MAX_ELEMENTS:,}")
    n = int(n)
    gib = n * 8 / 2**30
    raise ConfigError(key, f"{n:,} elements (about {gib:,.1f} GiB as float64) exceeds the limit of {MAX_ELEMENTS:,}")
