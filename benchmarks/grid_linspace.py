"""Is a 10^6-point job as fast as TensorFlow itself? Medians of repeats, same process.

Compares the runner's tape program (`program.run`, eager and `compile: function`) on
y = sin(x) * x over linspace(-10, 10, N) with a hand-written GradientTape computation of
the same gradient (eager, and as a tf.function), each including the transfer of the point
into TensorFlow and of the results back to NumPy. Also times a whole job (`job.run`:
validation, program, arrays.npz and results.json) for reference.

    python benchmarks/grid_linspace.py [N] [REPEATS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner import job  # noqa: E402
from runner.config import spec as specs  # noqa: E402
from runner.tape import startup  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 7


def config(compile_mode: str) -> dict:
    return {
        "function": {"inputs": ["x"], "steps": {"y": "sin(x) * x"}},
        "point": {"x": {"linspace": [-10.0, 10.0, N]}},
        "tape": {"compile": compile_mode},
        "derivatives": [{"target": "y", "sources": "x"}],
    }


def median_seconds(candidates: dict, repeats: int = REPEATS) -> dict:
    """Median time of each candidate. The candidates take turns within every repeat, so a
    load change on this shared machine hits them all alike instead of one of them."""
    for fn in candidates.values():
        fn()  # warm-up: first-call costs (kernels, tracing) are not what is compared
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    tf, _ = startup.load()
    from runner.tape import program

    x_np = np.linspace(-10.0, 10.0, N)

    def by_hand_eager():
        x = tf.constant(x_np, dtype=tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.math.sin(x) * x
        dy = tape.gradient(y, x)
        return x.numpy(), y.numpy(), dy.numpy()

    @tf.function
    def traced(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.math.sin(x) * x
        return y, tape.gradient(y, x)

    def by_hand_function():
        x = tf.constant(x_np, dtype=tf.float32)
        y, dy = traced(x)
        return x.numpy(), y.numpy(), dy.numpy()

    eager_spec = specs.build(config("eager"))
    function_spec = specs.build(config("function"))
    out_dir = Path(tempfile.mkdtemp())

    rows = list(
        median_seconds(
            {
                "TensorFlow by hand, eager": by_hand_eager,
                "runner program, eager": lambda: program.run(eager_spec),
                "TensorFlow by hand, tf.function": by_hand_function,
                "runner program, compile: function": lambda: program.run(function_spec),
                "runner whole job, eager (+ validation, arrays.npz, results.json)": lambda: job.run(
                    config("eager"), out_dir, echo=False
                ),
            }
        ).items()
    )
    base = {"eager": rows[0][1], "function": rows[2][1]}
    print(f"N = {N:,} points, median of {REPEATS} interleaved repeats (after one warm-up), TensorFlow {tf.__version__}")
    for name, seconds in rows:
        ref = base["function"] if "function" in name and "job" not in name else base["eager"]
        print(f"  {name:<66} {seconds * 1000:8.1f} ms   x{seconds / ref:5.2f}")


if __name__ == "__main__":
    main()
