"""Baseline for B3: the notebook's way, one point at a time on an eager GradientTape.

    python benchmarks/baselines/grid_eager_loop.py POINTS

For each of POINTS points of linspace(0, 1): a persistent tape, y = x*x, z = y*y, both
derivatives, collected into lists (what a notebook loop does). Prints, as JSON, the
seconds per point (after one warm-up point).
"""

import json
import sys
import time

import numpy as np
import tensorflow as tf


def point(x0: float):
    x = tf.constant(x0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    return float(y), float(z), float(tape.gradient(y, x)), float(tape.gradient(z, x))


def main(points: int) -> None:
    point(0.5)
    xs = np.linspace(0.0, 1.0, points)
    t0 = time.perf_counter()
    rows = [point(float(x)) for x in xs]
    elapsed = time.perf_counter() - t0
    assert len(rows) == points
    print(json.dumps({"points": points, "seconds": elapsed, "per_point_s": elapsed / points}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
