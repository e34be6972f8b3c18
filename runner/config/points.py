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

import io
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Tuple

import numpy as np

from runner.config import files
from runner.config.settings import seed_number
from runner.errors import ConfigError, short

# A point may not ask for more elements than this (about 1 GiB of float64), so a typo such
# as linspace: [0, 1, 1e12] is refused up front instead of exhausting memory.
MAX_ELEMENTS = 2**27

GENERATORS = ("linspace", "arange", "random", "file")
WRAPPERS = ("grid",)  # {grid: <1-D point>}: an axis of a grid over several inputs
FILE_SUFFIXES = (".npy", ".csv")
# A .csv point is text for people (10 million numbers at most, about); larger data belongs in
# a .npy, whose header gives its size before it is read.
CSV_MAX_BYTES = 256 * 2**20
# NumPy writes .npy headers of 128 bytes to a few KiB; its reader checks their length only
# after reading them, so the length is checked here first.
NPY_MAX_HEADER = 2**16
# No point is read from these, whatever path or link leads there.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev")


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
    """A .npy (dtype, shape and size checked from its header before its data is read; never
    unpickled, so no code runs) or a .csv of numbers (UTF-8 text, no NUL bytes, at most
    CSV_MAX_BYTES). Which files may be read at all: `real_file`. An error message quotes
    at most a short, escaped piece of the file, never a line of it.
    """
    if not isinstance(path, str) or not path:
        raise ConfigError(key, f"expected a path to a .npy or .csv file, got {path!r}")
    p = Path(os.path.expanduser(path))
    if p.suffix.lower() not in FILE_SUFFIXES:
        raise ConfigError(key, f"only {' and '.join(FILE_SUFFIXES)} files are read, got {path!r}")
    if not p.is_absolute():
        p = Path.cwd() / p  # Hydra does not change the working folder (hydra.job.chdir=false)
    real = real_file(key, p)
    arr = _npy(key, p, real) if p.suffix.lower() == ".npy" else _csv(key, p)
    _check_size(key, int(arr.size))
    return arr


def real_file(key: str, p: Path) -> Path:
    """The file `p` names, with every link resolved, if it may be read.

    The rule: a symlink may lead only into the folder it sits in (or below), so a link
    planted beside a config (`x.csv -> /etc/passwd`) reads nothing; folders named in the
    path itself are followed as named. Nothing under /proc, /sys or /dev is read, however
    the path reaches it. Whether it is a regular file is checked on the opened file.
    """
    if not os.path.lexists(p):
        raise ConfigError(key, f"no such file: {p}")
    real = files.resolve(p, key, inside=p.parent)
    for folder in map(Path, SYSTEM_FOLDERS):
        if real == folder or folder in real.parents:
            where = p if real == p else f"{p} leads to {real}"
            raise ConfigError(key, f"{where}: no point is read from under {folder}")
    return real


def _csv(key: str, p: Path) -> np.ndarray:
    """The numbers of a .csv: read whole (it is small), then checked to be text, then parsed."""
    data = files.read_bounded(p, key, CSV_MAX_BYTES, inside=p.parent)
    nul = data.find(b"\0")
    if nul >= 0:
        raise ConfigError(key, f"{p.name} holds a NUL byte (at byte {nul:,}): it is not a text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(key, f"{p.name} is not UTF-8 text (byte {err.start:,})") from None
    try:
        arr = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=1)
    except ValueError:  # NumPy's message would quote the field in full: say where instead
        raise ConfigError(key, f"cannot read {p.name}: {_csv_fault(text)}") from None
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.ravel()  # one row or one column: a vector
    return arr


def _csv_fault(text: str) -> str:
    """Where a .csv that NumPy refused stops being a table of numbers, quoting 20 characters at most."""
    width = None
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0]
        if not body.strip():
            continue
        fields = body.split(",")
        for column, field in enumerate(fields, 1):
            try:
                float(field)
            except ValueError:
                return f"line {number}, field {column} is not a number: {short(field.strip(), 20)}"
        if width is not None and len(fields) != width:
            return f"line {number} has {len(fields)} fields, the lines above it {width}"
        width = len(fields)
    return "not a table of numbers"


def _npy(key: str, p: Path, real: Path) -> np.ndarray:
    """The array of a .npy, its data read only once its header passes (see `_file`)."""
    with files.open_regular(real, key, str(p)) as f:  # a FIFO would block, a device never end
        info = os.fstat(f.fileno())
        shape, fortran, dtype = _npy_header(key, f, p.name)
        if not (dtype.kind in "iu" and dtype.itemsize <= 8 or dtype.kind == "f" and dtype.itemsize in (2, 4, 8)):
            raise ConfigError(
                key,
                f"cannot read {p.name}: it holds {dtype.str!r} ({dtype}) numbers; a point holds integers or "
                "floats of at most 8 bytes",
            )
        count = math.prod(shape)
        _check_size(key, count)
        size = f.tell() + count * dtype.itemsize
        if info.st_size != size:
            raise ConfigError(
                key, f"cannot read {p.name}: its header says {size:,} bytes, the file has {info.st_size:,}"
            )
        arr = np.fromfile(f, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def _npy_header(key: str, f: Any, name: str) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """(shape, fortran order, dtype) from a .npy header of at most NPY_MAX_HEADER bytes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        width = {(1, 0): 2, (2, 0): 4}[version]  # bytes of the header's length (3.0: field names)
        length = int.from_bytes(f.read(width), "little")
        if length > NPY_MAX_HEADER:
            raise ValueError(length)
        f.seek(-width, os.SEEK_CUR)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(f, max_header_size=NPY_MAX_HEADER)
    except (ValueError, KeyError, TypeError, SyntaxError, RecursionError, MemoryError, OSError):
        raise ConfigError(key, f"cannot read {name}: not a .npy file of version 1 or 2 (its header)") from None
    if any(n < 0 for n in shape):
        raise ConfigError(key, f"cannot read {name}: its header gives the shape {list(shape)}")
    return shape, fortran, dtype


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


def config_files(cfg: Any, where: str = "") -> Iterator[Tuple[str, str]]:
    """(key, path) of every file generator `{file: PATH}` anywhere in the config: a point, a
    grid axis, `output_gradients`, `tangents`: wherever `points.evaluate` may read one."""
    stack: List[Tuple[str, Any]] = [(where, cfg)]
    while stack:
        key, node = stack.pop()
        if isinstance(node, Mapping):
            if len(node) == 1 and isinstance(node.get("file"), str):
                yield key, node["file"]
                continue
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(node) if isinstance(v, (Mapping, list, tuple)))
