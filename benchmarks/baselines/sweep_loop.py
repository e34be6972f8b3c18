"""Baseline for B2: a sweep written by hand, one process and one loop.

    python benchmarks/baselines/sweep_loop.py N OUT_DIR

TensorFlow is imported once; for x = 0 .. N-1 the loop computes dy/dx of y = x**3 on a
GradientTape and writes OUT_DIR/<i>/results.json (values and the derivative). No config
files, no composition: the least a sweep of N jobs can cost.
"""

import json
import os
import sys

import tensorflow as tf


def main(n: int, out_dir: str) -> None:
    for i in range(n):
        x = tf.constant(float(i))
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = x**3
        dy_dx = tape.gradient(y, x)
        folder = os.path.join(out_dir, str(i))
        os.makedirs(folder, exist_ok=True)
        record = {"values": {"x": float(x), "y": float(y)}, "derivatives": [{"name": "dy/dx", "value": float(dy_dx)}]}
        with open(os.path.join(folder, "results.json"), "w") as f:
            json.dump(record, f, indent=2)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
