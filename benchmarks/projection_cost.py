"""V2 (issue 14): the gradient by a 1024x1024 W checked by projection, against the tape's own time.

    python benchmarks/projection_cost.py [--size 1024] [--repeats 5]

One process: `runner.job.run` on y = reduce_sum(tanh(matmul(W, v))) with W [size, size] and
v [size, 1] random float32 inputs, dy/dW, event files and plots off; the first run (TensorFlow's
warm-up) is left out, then the median over `--repeats` of the check's time (`timing.verify_s`:
the float64 re-run, K directions drawn, one run of the function per direction, TF's value
projected) against the tape's (`forward_s + derivatives_s`). Goal: at most 2x.
"""

from __future__ import annotations

import argparse

import check_timing  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.size
    cfg = {
        "function": {"inputs": ["W", "v"], "steps": {"y": "reduce_sum(tanh(matmul(W, v)))"}},
        "point": {"W": {"random": {"shape": [n, n], "seed": 0}}, "v": {"random": {"shape": [n, 1], "seed": 1}}},
        "derivatives": [{"target": "y", "sources": "W"}],
        "log": {"tensorboard": False, "plots": False},
    }
    t, c, rec = check_timing.tape_and_check(
        cfg,
        args.repeats,
        lambda rec: (
            None
            if rec["outcome"] == "passed" and rec["method"] == "projection"
            else "the check did not pass by projection"
        ),
    )
    k = rec["projection"]["directions"]
    print(
        f"V2 dy/dW by a {n}x{n} W, projection along {k} directions: check {c * 1e3:.1f} ms, tape {t * 1e3:.1f} ms, "
        f"{c / t:.1f}x the tape (goal <= 2x: {'met' if c <= 2 * t else 'NOT met'}; medians of {args.repeats})"
    )


if __name__ == "__main__":
    main()
