"""Seeds and determinism: what makes a re-run give the same bits.

`apply` runs in the job after TensorFlow is imported and before the program runs, so every
job (even the tenth job of a sweep in one process) starts from the same random state. It
returns what it did, for the run log.
"""

from __future__ import annotations

import random
from typing import Any, Dict, Optional, Tuple

import numpy as np

_op_determinism = False  # enable_op_determinism is process-wide and cannot be undone

# (seed, the state of TF's eager seed generator right after tf.random.set_seed(seed)), as
# this process last set them. See `_seed_tensorflow`.
_tf_seeded: Optional[Tuple[int, Any]] = None


def apply(tf: Any, seed: int, determinism: bool) -> Dict[str, Any]:
    """Seed Python, NumPy and TensorFlow with `seed`; enable op determinism if asked.

    `tf.random.set_seed` rather than `tf.keras.utils.set_random_seed` (which does the same
    three seeds) because importing Keras costs seconds per process.
    """
    global _op_determinism
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _seed_tensorflow(tf, seed)
    if determinism and not _op_determinism:
        tf.config.experimental.enable_op_determinism()
        _op_determinism = True
    return {
        "seed": seed,
        "seeded": ["random.seed", "numpy.random.seed", "tf.random.set_seed"],
        "determinism": determinism,
        # what really holds in this process (a job earlier in it may have turned it on)
        "op_determinism": _op_determinism,
    }


def _seed_tensorflow(tf: Any, seed: int) -> None:
    """`tf.random.set_seed(seed)`, skipped when it would change nothing.

    Besides setting the seed, set_seed clears TensorFlow's eager kernel cache, and every op
    of the next job then builds its kernel again: measured at 1.6 ms on a 0.36 ms job (a
    sweep's jobs all seed). So when the seed is the one this process set last and the
    seed generator behind every op seed (the eager context's `_rng`) is still in the state
    set_seed left it in, nothing random has happened since, and the call is skipped. Any
    draw that used the global seed (`tf.random.uniform([3])`) moved that state, so the next
    job seeds again (tests/test_sweeps.py checks it). The runner's expressions have no
    random ops, so no cached kernel holds a random state either. Where the internal
    attribute is missing (another TensorFlow), set_seed is always called.
    """
    global _tf_seeded
    state = _seed_generator_state()
    if state is not None and _tf_seeded == (seed, state):
        return
    tf.random.set_seed(seed)
    state = _seed_generator_state()
    _tf_seeded = None if state is None else (seed, state)


def _seed_generator_state() -> Any:
    """The state of the eager context's op-seed generator; None where it has none."""
    from tensorflow.python.eager import context

    rng = getattr(context.context(), "_rng", None)
    return rng.getstate() if isinstance(rng, random.Random) else None
