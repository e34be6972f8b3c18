"""Seeds and determinism: what makes a re-run give the same bits.

`apply` runs in the job after TensorFlow is imported and before the program runs, so every
job (even the tenth job of a sweep in one process) starts from the same random state. It
returns what it did, for the run log.
"""

from __future__ import annotations

import random
from typing import Any, Dict

import numpy as np

_op_determinism = False  # enable_op_determinism is process-wide and cannot be undone


def apply(tf: Any, seed: int, determinism: bool) -> Dict[str, Any]:
    """Seed Python, NumPy and TensorFlow with `seed`; enable op determinism if asked.

    `tf.random.set_seed` rather than `tf.keras.utils.set_random_seed` (which does the same
    three seeds) because importing Keras costs seconds per process.
    """
    global _op_determinism
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed)
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
