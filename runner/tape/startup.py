"""Import TensorFlow once, with its start-up noise set aside.

TensorFlow 2.21 prints several lines on import and on first device use (oneDNN notices,
CUDA probing on a machine without a GPU) through absl's early logging, which ignores
`TF_CPP_MIN_LOG_LEVEL`. They say nothing about the run, so they are captured from file
descriptor 2 while TensorFlow starts and kept (the run log's `environment` holds them)
instead of being shown; `log.tf_verbose=true` shows them as they come.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from contextlib import contextmanager
from types import ModuleType
from typing import Iterator, Tuple

_startup_text = ""


def load(verbose: bool = False) -> Tuple[ModuleType, str]:
    """Return the `tensorflow` module and what it printed while starting."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"], _startup_text
    with _collector_paused():
        return _import(verbose)


def _import(verbose: bool) -> Tuple[ModuleType, str]:
    global _startup_text
    if verbose:
        with _without_keras():
            import tensorflow as tf

        return tf, ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            with _without_keras():
                import tensorflow as tf

            tf.constant(0.0) + 0.0  # the first op initializes the devices, which also prints
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            _startup_text = sink.read().decode(errors="replace")
    return tf, _startup_text


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while TensorFlow imports; then its objects are frozen.

    The import makes about a million objects that live as long as the process: modules,
    classes, functions, op registrations. Python's collector would walk them in every full
    collection, about 90 ms each, several times during the import and again every few
    hundred jobs of a sweep (GC callbacks counted 500 ms of collections in a 20-job sweep).
    `gc.freeze` moves them out of the collector's sight; they were never garbage.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextmanager
def _without_keras() -> Iterator[None]:
    """Import TensorFlow without the Keras import it makes on the way (1.5-2 s of ~5 s).

    `import tensorflow` imports `keras.src.optimizers` eagerly, only to register Keras's
    optimizers for SavedModel loading, and ignores an ImportError there. The runner builds
    no models, so while TensorFlow imports, `keras` is marked absent (a None entry in
    sys.modules makes its import raise ImportError); the mark is removed right after, and
    `import keras` or `tf.keras` work afterwards as usual.
    """
    marked = "keras" not in sys.modules
    if marked:
        sys.modules["keras"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if marked and sys.modules.get("keras", 0) is None:
            del sys.modules["keras"]
