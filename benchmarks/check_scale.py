"""V1 (issue 14): every element of a 10^7-point grid checked, against the tape's own time.

    python benchmarks/check_scale.py [--points 10000000] [--repeats 5] [--verify finite_difference] [--dtype float64]

One process: `runner.job.run` on y = sin(x) * x over a linspace of `--points` points (float32,
or `--dtype float64`), dy/dx, event files and plots off; the first run (SymPy's import, TensorFlow's warm-up) is
left out, then the median over `--repeats` of the check's time (`timing.verify_s`: the
symbolic reference over the whole grid, the target's formula in the same pass, the
comparison; no float64 re-run, as the function is defined everywhere) against the tape's
(`forward_s + derivatives_s`). Goal: at most 2x. `--verify finite_difference` times the
batched differences instead (`verify: finite_difference`: the float64 re-run at the point,
every element moved up and down at once, a second look at suspect kinks). The machine's load moves both times:
compare ratios of one run.
"""

from __future__ import annotations

import argparse

import check_timing  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--verify", default="auto", help="the job's `verify` (auto: symbolic here)")
    parser.add_argument("--dtype", default="float32", help="the grid's dtype (float32, float64)")
    args = parser.parse_args()
    cfg = {
        "function": {"inputs": {"x": {"dtype": args.dtype}}, "steps": {"y": "sin(x) * x"}},
        "point": {"x": {"linspace": [-10.0, 10.0, args.points]}},
        "derivatives": [{"target": "y", "sources": "x"}],
        "verify": args.verify,
        "log": {"tensorboard": False, "plots": False},
        "limits": {"memory": "16GiB"},
    }
    t, c, rec = check_timing.tape_and_check(
        cfg,
        args.repeats,
        lambda rec: (
            None
            if rec["outcome"] == "passed" and rec["elements"] == args.points and args.verify in ("auto", rec["method"])
            else "the check did not pass in every element"
        ),
    )
    print(
        f"V1 {args.points:,} {args.dtype} points, every element checked ({rec['method']}): check {c:.3f} s, tape {t:.3f} s, "
        f"{c / t:.1f}x the tape (goal <= 2x: {'met' if c <= 2 * t else 'NOT met'}; medians of {args.repeats})"
    )


if __name__ == "__main__":
    main()
