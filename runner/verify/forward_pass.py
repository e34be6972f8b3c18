"""The function re-run at any point in float64, for the checks: `Forward` (imports TensorFlow when built).

`Forward` re-runs the job's function (its steps lowered by :mod:`runner.language.lowering`
as the run did, after the user's code when there is one) with chosen inputs or steps moved
and the tape's held names kept fixed. `Move` says how a source is moved: exactly, in
float64, or rounded to the dtype a user's code computes it in.
"""

from __future__ import annotations

import dataclasses
import sys
import weakref
from typing import Any, Collection, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from runner.config.spec import JobSpec, StepSpec
from runner.language import expression as ex
from runner.tape.forward import StepFailed, run_function

# Relative finite-difference steps: innermost level ~ eps**(1/3); outer levels of nested
# differences (hessian, hvp, order > 1) take larger steps so the inner noise stays small.
FD_STEPS = (6e-6, 1e-4, 1e-3, 5e-3)
_EPS64 = float(np.finfo(np.float64).eps)
# Machine epsilon by dtype: the check of code that does not take float64 works in its dtype.
# float64 arrays of at least this many numbers, ALIGN-byte aligned (`empty`), are given to
# TensorFlow without a copy (`_as_tensor`)
SHARED, ALIGN = 1 << 16, 64
# The checks' large buffers (`empty(pool=True)`), kept for the next job in this process: the first
# touch of fresh memory costs page faults (~2.5 ms per 8 MB here, more than the arithmetic on it)
POOL: List[np.ndarray] = []
POOL_BYTES, POOLED = 1 << 27, 1 << 17  # at most 128 MiB, of blocks of at least 128 KiB
MOVE_CHUNK = 1 << 17  # numbers `Forward.moved` writes at once
EPS = {"float64": _EPS64, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}


@dataclasses.dataclass(frozen=True)
class Move:
    """How a source is moved: the dtype it is computed in (None: float64, moves are exact),
    its epsilon, and the relative steps that suit it (the float64 ones scaled by
    (eps / eps64) ** (1/3), the optimum of a central difference, at most 0.05)."""

    name: str = "float64"
    dtype: Any = None
    factor: float = 1.0  # the steps scaled by this (`measure_error` takes a second, smaller set)

    @property
    def eps(self) -> float:
        return EPS.get(self.name, EPS["float32"])

    def rel(self, level: int) -> float:
        step = FD_STEPS[min(level, len(FD_STEPS) - 1)]
        step = step if self.dtype is None else min(step * (self.eps / _EPS64) ** (1 / 3), 0.05)
        return step * self.factor

    def snap(self, a: np.ndarray) -> np.ndarray:
        """A moved value as it arrives: rounded to the dtype it is computed in."""
        return a if self.dtype is None else np.asarray(a, dtype=self.dtype).astype(np.float64)


EXACT = Move()


class Unverifiable(Exception):
    """The check cannot be made (too large, unsupported form); its message is the reason."""


# ---- the float64 forward pass ------------------------------------------------------------


def _freeze_stop_gradients(expr: ex.Expr, prefix: str, found: List[Tuple[str, ex.Expr]]) -> ex.Expr:
    """Replace each `stop_gradient(u)` by a name whose value is held at the point."""
    if isinstance(expr, ex.Call) and expr.func == "stop_gradient":
        key = f"{prefix}#stop_gradient{len(found)}"
        found.append((key, expr.args[0]))
        return ex.Name(key, expr.column)
    if isinstance(expr, ex.Unary):
        return dataclasses.replace(expr, operand=_freeze_stop_gradients(expr.operand, prefix, found))
    if isinstance(expr, (ex.Binary, ex.Compare)):
        return dataclasses.replace(
            expr,
            left=_freeze_stop_gradients(expr.left, prefix, found),
            right=_freeze_stop_gradients(expr.right, prefix, found),
        )
    if isinstance(expr, ex.Call):
        return dataclasses.replace(expr, args=tuple(_freeze_stop_gradients(a, prefix, found) for a in expr.args))
    return expr


class Forward:
    """The job's function re-run by TensorFlow in float64, with chosen names held or moved.

    `base` holds every value at the point TensorFlow used (its inputs, rounded to the run's
    dtype, then widened), computed on first need: an input needs no run, any other name
    runs the function once (a symbolic check of a 10^7-point grid needs only the inputs).
    `shape(name)` and `finite(name)` answer from the run's own values where they can.
    `values(overrides)` re-runs the steps with some inputs or steps
    replaced; steps under `tape.stop_recording` and `stop_gradient` arguments keep their
    base values, as they have no derivative on the tape.

    A function that is the user's code (`code`, runner/tape/user_code.py) is called too: in
    float64 where it takes float64 inputs and gives float64 outputs with float64 variables,
    else in the run's own dtype (`precision` says which, and `why`); its variables are
    sources by path, moved by assigning them and put back after each run.
    """

    def __init__(self, spec: JobSpec, point: Mapping[str, Any], code: Any = None):
        import tensorflow as tf

        from runner.language.lowering import lower

        self.tf = tf
        self.code = code
        self.point = point  # the run's own values (its inputs, and its steps when the run gives them)
        self.formula_finite: set = set()  # names whose formula SymPy found finite in float64 everywhere
        # each float input widened to float64 on first use (`raw`: as the run gave it)
        self.raw: Dict[str, np.ndarray] = {inp.name: np.asarray(point[inp.name]) for inp in spec.inputs}
        self.inputs: Mapping[str, np.ndarray] = _Widened(self.raw, {i.name for i in spec.inputs if i.is_float})
        self.dtypes: Dict[str, str] = {inp.name: inp.dtype for inp in spec.inputs}
        self.variables: Dict[str, Any] = dict(getattr(code, "variables", {}) or {})
        self.precision, self.why = EXACT, None
        self.step_factor = 1.0  # every source's steps scaled by this (see Move.factor)
        # Each `stop_gradient` argument runs as a step of its own just before its step, so
        # that later passes can hold it at its base value as they hold the tape's held steps.
        self.steps: List[StepSpec] = []
        self.evaluators: Dict[str, Any] = {}
        self.held = set(spec.tape.stop_recording)
        for step in spec.steps:
            frozen: List[Tuple[str, ex.Expr]] = []
            rewritten = _freeze_stop_gradients(step.expr, step.name, frozen)
            for key, arg in frozen:
                self.steps.append(StepSpec(key, step.text, arg))
                self.evaluators[key] = lower(arg, tf.float64)
                self.held.add(key)
            self.steps.append(dataclasses.replace(step, expr=rewritten))
            self.evaluators[step.name] = lower(rewritten, tf.float64)
        self._tensors: Dict[str, Any] = {}  # the inputs' float64 tensors (`tensor`)
        self._buffers: Dict[str, np.ndarray] = {}  # `moved`'s buffers, one per name
        if code is not None:
            self.precision, self.why = _code_precision(self, spec)
        self.base = _Base(self)

    def run(self, overrides: Mapping[str, Any], names: Optional[Collection[str]] = None) -> Dict[str, np.ndarray]:
        """`names` (None: every input, step and variable) in float64 with `overrides` (NumPy
        arrays, or float64 tensors) in place; only those asked for are copied out of TensorFlow.
        Raises what TensorFlow raises."""
        env = self._run(overrides, self.base.tensors())
        if names is None:
            names = list(env) + [p for p in self.variables if p not in env]
        return {k: _float64(env[k] if k in env else self.variables[k]) for k in names}

    def values(self, overrides: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Every input, step and variable with `overrides` in place."""
        return self.run(overrides)

    def target(self, target: str, overrides: Mapping[str, Any]) -> np.ndarray:
        """`target` alone with `overrides` in place (the other values stay in TensorFlow)."""
        return self.run(overrides, (target,))[target]

    def tensor(self, name: str) -> Any:
        """An input's float64 value as a tensor, made once (every run of the checks reuses it)."""
        if name not in self._tensors:
            self._tensors[name] = _as_tensor(self.tf, self.inputs[name])
        return self._tensors[name]

    def moved(self, name: str, terms: Sequence[Tuple[float, np.ndarray]]) -> np.ndarray:
        """base[name] + sum(h * d for (h, d) in terms), rounded as `move(name)` rounds, written
        in place, a chunk at a time, into a buffer kept for `name` (the pool's): the next call
        overwrites it, so a move is meant for one run. TensorFlow reads it without a copy."""
        x0 = self.base[name]
        buf = self._buffers.get(name)
        if buf is None or buf.shape != x0.shape:
            buf = self._buffers[name] = empty(x0.shape, pool=True)
        ds = [(h, np.broadcast_to(d, x0.shape)) for h, d in terms]
        rows = max(1, MOVE_CHUNK * x0.shape[0] // max(1, x0.size)) if x0.ndim else 1
        scratch: Any = empty(buf[:rows].shape if x0.ndim else (), pool=True) if ds[1:] else None
        for at in [slice(a, a + rows) for a in range(0, len(x0), rows)] if x0.ndim else [...]:
            out = buf[at]  # what it reads and writes stays in cache
            np.copyto(out, ds[0][1][at] if ds else x0[at])  # d widened by a copy: faster than multiply's casting
            if ds:  # h d + x0 is x0 + h d exactly (IEEE addition commutes): one pass fewer
                out *= ds[0][0]
                out += x0[at]
            for h, d in ds[1:]:
                out += np.multiply(d[at], h, out=scratch[: len(out)] if x0.ndim else scratch)
        if (move := self.move(name)).dtype is not None:
            np.copyto(buf, buf.astype(move.dtype))  # as Move.snap: rounded to the dtype
        return buf

    def shape(self, name: str) -> Tuple[int, ...]:
        """The shape of `name`: the run's own value's where it has one (no float64 re-run)."""
        if name in self.raw:  # as the run gave it: no float64 copy of a large input for its shape
            return tuple(np.shape(self.raw[name]))
        if self.base.ready or name not in self.point:
            return tuple(self.base[name].shape)
        return tuple(np.shape(self.point[name]))

    def finite(self, name: str) -> bool:
        """Whether `name` is known finite everywhere in float64 without re-running the function:
        its formula evaluated in float64 (the symbolic check, `formula_finite`) and the run's
        own value both finite at every element. False when unknown (the re-run decides)."""
        if self.base.ready or name not in self.formula_finite or name not in self.point:
            return False
        from runner.verify.pointwise import all_finite

        return all_finite(np.asarray(self.point[name]))

    def _run(self, overrides: Mapping[str, Any], base: Mapping[str, Any]) -> Dict[str, Any]:
        """The run's values as tensors: the inputs (each made once, `tensor`) and every step."""
        tf = self.tf
        env: Dict[str, Any] = {
            name: _as_tensor(tf, overrides[name]) if name in overrides else self.tensor(name) for name in self.inputs
        }
        fixed = {name: base[name] for name in self.held} if base else {}  # none on the first pass
        fixed.update((name, _as_tensor(tf, v)) for name, v in overrides.items() if name not in self.inputs)
        saved = {p: v.read_value() for p, v in self.variables.items() if p in overrides}
        try:
            for path in saved:
                self.variables[path].assign(tf.cast(overrides[path], self.variables[path].dtype))
            code = None if self.code is None else _InPrecision(self)
            run_function(self.steps, self.evaluators, env, code, fixed=fixed)
        except StepFailed as failed:  # the check reports TensorFlow's own error type
            raise failed.error from None
        finally:
            for path, value in saved.items():
                self.variables[path].assign(value)
        return env

    def move(self, name: str) -> Move:
        """How `name` is moved: a variable in its dtype, an input in the code's precision."""
        if name in self.variables and self.variables[name].dtype != self.tf.float64:
            dtype = self.variables[name].dtype
            move = Move(dtype.name, dtype.as_numpy_dtype)
        else:
            move = self.precision if name in self.inputs else EXACT
        return dataclasses.replace(move, factor=self.step_factor) if self.step_factor != 1.0 else move


class _Widened(Mapping[str, np.ndarray]):
    """The inputs, each float one widened to float64 when first read (a 10^7-element input
    checked symbolically is widened a chunk at a time instead, from `Forward.raw`)."""

    def __init__(self, raw: Dict[str, np.ndarray], floats: set):
        self._raw, self._floats = raw, floats
        self._done: Dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._done:
            arr = self._raw[name]
            if name in self._floats:  # aligned: TensorFlow reads it without a copy (`Forward.tensor`)
                wide, arr = arr, empty(np.shape(arr), pool=True)
                np.copyto(arr, wide)
            self._done[name] = arr
        return self._done[name]

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


class _Base(Mapping[str, np.ndarray]):
    """`Forward.base`: an input's float64 value as it is (read-only); any other name runs the
    function in float64 once, on first need, and is copied out of TensorFlow when first read
    (the run's tensors stay, for the held names of later runs). A failing run raises
    `Unverifiable` saying so."""

    def __init__(self, fwd: Forward):
        self._fwd = weakref.proxy(fwd)  # no cycle: the Forward and its buffers go when the check ends
        self._env: Optional[Dict[str, Any]] = None
        self._values: Dict[str, np.ndarray] = {}
        self._failed: Optional[str] = None

    @property
    def ready(self) -> bool:
        return self._env is not None

    def tensors(self) -> Dict[str, Any]:
        """The run at the point, as tensors (the variables' values read once)."""
        if self._env is None:
            if self._failed is None:
                try:
                    env = self._fwd._run({}, {})
                    env.update((p, v.read_value()) for p, v in self._fwd.variables.items() if p not in env)
                    self._env = env
                    return env
                except Exception as err:
                    first = str(err).splitlines()[0] if str(err) else ""
                    self._failed = f"the float64 forward pass failed: {type(err).__name__}: {first}"
            raise Unverifiable(self._failed)
        return self._env

    def all(self) -> Dict[str, np.ndarray]:
        return {name: self[name] for name in self.tensors()}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._fwd.inputs:
            value = np.asarray(self._fwd.inputs[name], dtype=np.float64).view()
            value.flags.writeable = False
            return value
        if name not in self._values:
            self._values[name] = _float64(self.tensors()[name])
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors())

    def __len__(self) -> int:
        return len(self.tensors())


def empty(shape: Tuple[int, ...], dtype: Any = np.float64, pool: bool = False) -> np.ndarray:
    """An uninitialised array (float64 by default) aligned as TensorFlow needs to read it
    without a copy; with `pool`, from `POOL`: a block nothing holds any more (no array, view or
    tensor of it: they keep its reference count up), else a new one kept while POOL_BYTES allow."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    pool = pool and size >= POOLED  # (smaller ones: malloc reuses its own memory)
    free = sorted((r for r in POOL if sys.getrefcount(r) <= 3), key=len) if pool else []  # (the pool's, r, the call's)
    raw = next((r for r in free if size + ALIGN <= r.size <= 2 * size + ALIGN), None)
    if raw is None:
        raw = np.empty(size + ALIGN, dtype=np.uint8)
        while pool and free and sum(map(len, POOL)) + raw.size > POOL_BYTES:  # free blocks make room, largest first
            gone = free.pop()
            POOL[:] = [r for r in POOL if r is not gone]
        if pool and sum(map(len, POOL)) + raw.size <= POOL_BYTES:
            POOL.append(raw)
    skip = -raw.ctypes.data % ALIGN
    return raw[skip : skip + size].view(dtype).reshape(shape)


def _float64(v: Any) -> np.ndarray:
    return np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float64)


def _as_tensor(tf: Any, value: Any) -> Any:
    """A tensor of `value`: as it is when it is one; a large float64 array is shared with
    TensorFlow without a copy (DLPack: the run reads it, and `.numpy()` copies what comes
    out, so nothing of the run keeps it); anything else copied by `tf.constant`."""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value
    arr = np.asarray(value)
    if (
        arr.dtype == np.float64
        and arr.size >= SHARED
        and arr.ctypes.data % ALIGN == 0  # TensorFlow's kernels abort the process on less
        and arr.flags.c_contiguous
        and arr.flags.writeable
    ):
        try:
            return tf.experimental.dlpack.from_dlpack(arr.__dlpack__())
        except Exception:  # an exporter or importer that declines: the copy
            pass
    return tf.constant(arr)


class _InPrecision:
    """The user's code called on the inputs in the check's precision, its outputs widened."""

    def __init__(self, fwd: Forward):
        self.fwd = fwd
        self.outputs = fwd.code.outputs

    def __call__(self, env: Mapping[str, Any]) -> Dict[str, Any]:
        tf = self.fwd.tf
        cast = {
            k: tf.cast(v, self.fwd.precision.name) if self.fwd.dtypes.get(k, "").startswith(("float", "bfloat")) else v
            for k, v in env.items()
        }
        return {k: tf.cast(v, tf.float64) for k, v in self.fwd.code(cast).items()}


def _code_precision(fwd: Forward, spec: JobSpec) -> Tuple[Move, Optional[str]]:
    """float64 when the code takes float64 inputs and gives float64 outputs from float64
    variables; else the widest float dtype the run used, and why."""
    tf = fwd.tf
    narrow = sorted({str(v.dtype.name) for v in fwd.variables.values() if v.dtype != tf.float64})
    why = None
    if narrow:
        why = f"the code's variables are {', '.join(narrow)}"
    else:
        try:
            given = fwd.code({k: tf.constant(v) for k, v in fwd.inputs.items()})
            other = sorted({v.dtype.name for v in given.values() if v.dtype != tf.float64})
            if other:
                why = f"given float64 inputs, the code returns {', '.join(other)}"
        except Exception as err:
            why = f"the code does not take float64 inputs ({type(err).__name__})"
    if why is None:
        return EXACT, None
    floats = [i.dtype for i in spec.inputs if i.is_float] + narrow
    widest = min(floats, key=lambda d: EPS.get(d, 1.0), default="float32")
    if widest == "float64":
        return EXACT, why
    return Move(widest, tf.as_dtype(widest).as_numpy_dtype), why
