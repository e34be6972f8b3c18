"""Baseline for B1: the seed's first example written by hand, as the notebook does it.

    python benchmarks/baselines/seed_cubic.py OUT_DIR

Computes dy/dx of y = x**3 at x = 5 on a GradientTape and writes OUT_DIR/results.json
with the same keys the runner writes (values, derivatives, error, expect), atomically.
"""

import json
import os
import sys
import tempfile

import tensorflow as tf


def main(out_dir: str) -> None:
    x = tf.constant(5.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x**3
    dy_dx = tape.gradient(y, x)
    record = {
        "schema_version": 1,
        "experiment": "seed_cubic",
        "status": "ok",
        "values": {"x": float(x.numpy()), "y": float(y.numpy())},
        "derivatives": [
            {
                "name": "dy/dx",
                "kind": "gradient",
                "target": "y",
                "sources": ["x"],
                "order": 1,
                "value": float(dy_dx.numpy()),
            }
        ],
        "error": None,
        "expect": {
            "declared": {"derivatives": {"dy/dx": 75.0}},
            "met": abs(float(dy_dx.numpy()) - 75.0) <= 1e-6 + 1e-6 * 75.0,
        },
    }
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(out_dir, "results.json"))
    print(f"dy/dx = {float(dy_dx.numpy())}")


if __name__ == "__main__":
    main(sys.argv[1])
