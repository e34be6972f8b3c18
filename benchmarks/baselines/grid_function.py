"""Baseline for B3/B4: the chain rule on a grid, written by hand as one `tf.function`.

    python benchmarks/baselines/grid_function.py N OUT_DIR          # one run (B4: its memory)
    python benchmarks/baselines/grid_function.py --time SMALL BIG REPEATS OUT_DIR   # B3

y = x*x, z = y*y at N points of linspace(0, 1); both derivatives dy/dx and dz/dx from one
persistent tape inside a `tf.function`; the same arrays the runner keeps (x, y, z and the
two derivatives) saved to OUT_DIR/arrays.npz, and a small results.json beside it.
`--time` prints, as JSON, the seconds of each run at SMALL and BIG points, alternating,
in one process (TensorFlow imported and both shapes traced once, before timing), each
run into a new folder as the runner's jobs are.
"""

import json
import os
import sys
import time

import numpy as np
import tensorflow as tf


@tf.function
def chain_rule(x):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    return y, z, tape.gradient(y, x), tape.gradient(z, x)


def run(n: int, out_dir: str) -> None:
    x = tf.linspace(0.0, 1.0, n)
    y, z, dy_dx, dz_dx = chain_rule(x)
    arrays = {
        "values/x": x.numpy(),
        "values/y": y.numpy(),
        "values/z": z.numpy(),
        "derivatives/dy/dx": dy_dx.numpy(),
        "derivatives/dz/dx": dz_dx.numpy(),
    }
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, "arrays.npz"), **arrays)
    record = {"status": "ok", "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()}}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(record, f, indent=2)


def main(argv):
    if argv[0] == "--time":
        small, big, repeats, out_dir = int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
        run(small, os.path.join(out_dir, "warm-small"))
        run(big, os.path.join(out_dir, "warm-big"))
        times = {"small": [], "big": []}
        for i in range(repeats):
            for label, n in (("small", small), ("big", big)):
                t0 = time.perf_counter()
                run(n, os.path.join(out_dir, f"{label}-{i}"))  # a new folder each run, as the runner's
                times[label].append(time.perf_counter() - t0)
        print(json.dumps(times))
    else:
        run(int(argv[0]), argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
