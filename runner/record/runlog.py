"""The run log: `results.json` (strict JSON, written atomically) and, for large tensors,
`arrays.npz` beside it.

Values are plain numbers or nested lists; non-finite numbers become the strings "NaN",
"Infinity" and "-Infinity" so that every JSON parser reads the file. A tensor with more
than `log.max_inline_elements` elements is stored in `arrays.npz`, and the JSON holds a
reference (file, key, shape, dtype) and summary statistics in its place.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import platform
import secrets
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from runner.record.git_state import git_state

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
ARRAYS_FILE = "arrays.npz"


class Encoder:
    """Turns arrays into JSON values, setting aside the large ones for `arrays.npz`."""

    def __init__(self, max_inline_elements: int):
        self.max_inline = max_inline_elements
        self.arrays: Dict[str, np.ndarray] = {}

    def value(self, key: str, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, dict):
            return {k: self.value(f"{key}/{k}", x) for k, x in v.items()}
        arr = np.asarray(v)
        if arr.size > self.max_inline:
            self.arrays[key] = arr
            return array_reference(key, arr)
        return plain(arr.tolist())


def plain(v: Any) -> Any:
    """Nested lists of Python numbers with non-finite floats spelled as the SPEC says."""
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def array_reference(key: str, arr: np.ndarray) -> Dict[str, Any]:
    finite = arr.reshape(-1)
    stats = {}
    if finite.size:
        low, high = finite.min(), finite.max()
        # min and max propagate NaN and show an infinity: both finite means all are, and
        # the finite elements are copied out only when some are not.
        if arr.dtype.kind == "f" and not (np.isfinite(low) and np.isfinite(high)):
            finite = finite[np.isfinite(finite)]
            if finite.size:
                low, high = finite.min(), finite.max()
        if finite.size:
            stats = {"min": float(low), "max": float(high), "mean": _mean(finite)}
    return {
        "array": {"file": ARRAYS_FILE, "key": key, "shape": list(arr.shape), "dtype": str(arr.dtype)},
        "summary": {**stats, "non_finite": int(arr.size - finite.size)},
    }


def _mean(finite: np.ndarray) -> float:
    """The mean of finite numbers as a finite float: summed in float64 (a float32 sum of
    10^5 values near 3e38 overflows), and scaled down first where even float64's would."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(finite.mean(dtype=np.float64))
        if not np.isfinite(mean):
            big = float(np.max(np.abs(finite.astype(np.float64))))
            mean = float((finite.astype(np.float64) / big).mean()) * big
    return mean


def environment(tf_version: Optional[str]) -> Dict[str, Any]:
    """Everything needed to say later what ran where: versions, machine, command, git state.

    The expensive parts (git state, /proc/cpuinfo) are computed once per process and cached,
    so a sweep of many jobs in one process pays them once. Git state is read from `.git`
    without running git (runner/record/git_state.py): a config folder's repository runs nothing.
    """
    import hydra
    import omegaconf

    return {
        "python": platform.python_version(),
        "tensorflow": tf_version,
        "numpy": np.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu(),
        "cpu_count": os.cpu_count(),
        "hostname": platform.node(),
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "cwd": os.getcwd(),
        # the repositories of the config folders, and of the runner's own code
        "git": {str(d): git_state(d) for d in _config_dirs()},
        "runner_git": git_state(Path(__file__).resolve().parents[1]),
        **_package_versions(),
        **(_tensorflow_setup() if tf_version is not None else {"devices": None, "tensorflow_build": None}),
    }


# Packages a result may depend on, recorded by version (None: not installed) without importing
# them: SymPy (the symbolic check), TensorBoard and matplotlib (the files), Hydra's launchers.
PACKAGES = ("sympy", "tensorboard", "matplotlib", "hydra-joblib-launcher", "hydra-submitit-launcher", "submitit")
# The entries `runner.rerun` compares when a rerun's numbers differ from its log's.
COMPARED: Tuple[str, ...] = ("python", "tensorflow", "numpy", "hydra", "omegaconf", *PACKAGES)
COMPARED += ("platform", "machine", "cpu", "cpu_count", "devices", "tensorflow_build")


@functools.lru_cache(maxsize=None)
def _package_versions() -> Dict[str, Optional[str]]:
    from importlib import metadata

    out: Dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=None)
def _tensorflow_setup() -> Dict[str, Any]:
    """The devices TensorFlow sees and how it was built (CUDA, cuDNN), once per process and
    only once the job imported TensorFlow (this module never imports it)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return {"devices": None, "tensorflow_build": None}
    devices = []
    for d in tf.config.list_physical_devices():
        device: Dict[str, Any] = {"name": d.name, "type": d.device_type}
        if d.device_type == "GPU":  # its model and compute capability
            try:
                details = tf.config.experimental.get_device_details(d)
            except Exception:  # not every build can say
                details = {}
            device.update({k: _json_plain(v) for k, v in details.items()})
        devices.append(device)
    try:
        build = {k: _json_plain(v) for k, v in tf.sysconfig.get_build_info().items()}
    except Exception:  # a build without the information
        build = None
    return {"devices": devices, "tensorflow_build": build}


def _json_plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return [_json_plain(x) for x in v]
    return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)


@functools.lru_cache(maxsize=None)
def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _config_dirs() -> List[Path]:
    """The folders this job's configs came from (Hydra's primary and --config-dir sources)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        sources = HydraConfig.get().runtime.config_sources
    except Exception:  # outside a Hydra app (tests, rerun): no config source to report
        return []
    return [Path(s.path) for s in sources if s.schema == "file" and s.provider in ("main", "command-line")]


def write(folder: Path, record: Dict[str, Any], arrays: Dict[str, np.ndarray]) -> Path:
    """Write `arrays.npz` (if any) and then `results.json`, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    if arrays:
        # Streamed into the temporary file: an in-memory archive would hold every array twice.
        write_atomic(folder / ARRAYS_FILE, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    path = folder / RESULTS_FILE
    write_atomic(path, text.encode())
    return path


def write_atomic(path: Path, data: Union[bytes, Callable[[BinaryIO], None]]) -> None:
    """Write to a temporary file in the same folder, then rename it into place.

    `data` is the bytes, or a function writing them to the open file. A reader, or a job
    killed half-way, never sees a partial file: the rename is atomic. The flush to disk
    follows within about a second, and at exit at the latest (`_Syncer`).
    """
    # named before the file is made: a signal (KeyboardInterrupt) landing as soon as it exists
    # still finds it to remove, where mkstemp would not yet have handed its name back
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        # made 0600 (as mkstemp would); the log is shared like every other file (plot.png, the
        # event files, .hydra/*): 0666 less the user's umask, as open() would have made it
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
        os.replace(tmp, path)
        _mark_written(path)  # flushed to disk in the background (see _Syncer)
    except FileExistsError:  # only os.open's: another writer's name (a chance of 2^-64), not ours
        raise
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def umask() -> int:
    """The process's umask, read without changing it (`/proc/self/status`, Linux 4.7+):
    setting and restoring it (`os.umask`) would change it meanwhile for every thread (the
    flush thread, a sweep's). Without /proc: the umask read once, at import."""
    mask = _proc_umask()
    return _UMASK_AT_IMPORT if mask is None else mask


def _proc_umask() -> Optional[int]:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_at_import() -> int:
    mask = _proc_umask()
    if mask is None:  # set and restored: a file another thread makes meanwhile gets 0o077, not 0
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def derivative_record(
    enc: Encoder, name: str, kind: str, target: str, sources: Sequence[str], order: int, value: Any
) -> Dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "target": target,
        "sources": list(sources),
        "order": order,
        "value": enc.value(f"derivatives/{name}", value),
    }


class _Syncer:
    """Flushes the files written (`fsync`) in a background thread, about once a second.

    A job writes a few files, and an `fsync` each (4-8 ms on a shared disk, more for a
    large arrays.npz) would cost more than a small job, or a sweep's whole bookkeeping.
    So files are renamed into place complete (atomic for readers, as before) without
    waiting for the disk; this thread flushes them within about a second (`fsync` each,
    or one `os.sync` when a sweep wrote many), and `flush()` (registered to run at exit)
    flushes whatever is left.
    """

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.pending: List[Path] = []
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        threading.Thread(target=self._loop, name="runlog-sync", daemon=True).start()
        atexit.register(self.flush)

    def mark(self, path: Path) -> None:
        with self.lock:
            self.pending.append(path)
        self.dirty.set()

    def flush(self) -> None:
        with self.lock:
            paths, self.pending = self.pending, []
            self.dirty.clear()
        if len(paths) > _FSYNC_AT_MOST:
            os.sync()  # one journal commit for all, where an fsync each would commit each
            return
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # moved or removed since: nothing of ours to flush
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _loop(self) -> None:
        while True:
            self.dirty.wait()
            time.sleep(self.period_s)
            self.flush()


_SYNC_PERIOD_S = 1.0
_FSYNC_AT_MOST = 4  # files flushed one by one; more than this (a sweep) and the system is synced
_syncer: Optional[_Syncer] = None
_syncer_lock = threading.Lock()


def _mark_written(path: Path) -> None:
    global _syncer
    with _syncer_lock:
        if _syncer is None:
            _syncer = _Syncer(_SYNC_PERIOD_S)
    _syncer.mark(path)


def flush() -> None:
    """Flush written files to disk now (a no-op when nothing is pending)."""
    if _syncer is not None:
        _syncer.flush()
