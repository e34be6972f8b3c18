"""Baseline for B5: the seed's chain rule as code, and the same function hand-written.

    RUNNER_TRUST=benchmarks.baselines.chain_code python -m runner --config-dir benchmarks/conf \
        experiment=bench_chain_code               # (a) the runner calling `chain_rule` below
    python benchmarks/baselines/chain_code.py OUT_DIR            # (c) one run, by hand
    python benchmarks/baselines/chain_code.py --sweep N OUT_DIR  # (c) N points in one loop

`chain_rule` is y = x*x, z = y*y, returned as a mapping (the runner's callable with
`function.output: [y, z]`, the same function as `experiment=seed_chain_rule`'s steps). Run as
a script, it is the notebook's way: dz/dx on a GradientTape at x = 3 (or at x = 0 .. N-1),
written to OUT_DIR[/<i>]/results.json with the keys the runner writes. TensorFlow is
imported only by the script, not by the module the runner imports.
"""

import json
import os
import sys
import tempfile


def chain_rule(x):
    """y = x*x, z = y*y: the seed notebook's example 2."""
    y = x * x
    return {"y": y, "z": y * y}


def point(tf, x0: float) -> dict:
    x = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = chain_rule(x)
    dz_dx = tape.gradient(out["z"], x)
    return {
        "schema_version": 1,
        "experiment": "chain_code",
        "status": "ok",
        "values": {"x": float(x), "y": float(out["y"]), "z": float(out["z"])},
        "derivatives": [
            {"name": "dz/dx", "kind": "gradient", "target": "z", "sources": ["x"], "order": 1, "value": float(dz_dx)}
        ],
        "error": None,
    }


def write(record: dict, out_dir: str) -> None:
    """results.json, atomically, as the runner writes it."""
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, os.path.join(out_dir, "results.json"))


def main(argv) -> None:
    import tensorflow as tf

    if argv[0] == "--sweep":
        for i in range(int(argv[1])):
            write(point(tf, float(i)), os.path.join(argv[2], str(i)))
    else:
        record = point(tf, 3.0)
        write(record, argv[0])
        print(f"dz/dx = {record['derivatives'][0]['value']}")


if __name__ == "__main__":
    main(sys.argv[1:])
