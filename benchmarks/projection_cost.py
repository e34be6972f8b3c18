"""V2 (issue 14): the gradient by a 1024x1024 W checked by projection, against the tape's own time.

    python benchmarks/projection_cost.py [--size 1024] [--repeats 5] [--parts]

One process: `runner.job.run` on y = reduce_sum(tanh(matmul(W, v))) with W [size, size] and
v [size, 1] random float32 inputs, dy/dW, event files and plots off; the first run (TensorFlow's
warm-up) is left out, then the median over `--repeats` of the check's time (`timing.verify_s`:
the float64 re-run, K directions drawn, one run of the function per direction, TF's value
projected) against the tape's (`forward_s + derivatives_s`). Goal: at most 2x.

`--parts`: where the check's time goes, the median per part: perf_counter around the functions
that do each, in this process only, a part's time without the parts it calls (the point's run
widens the inputs); the timers add a few microseconds a call.
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import time
from typing import Any, Callable, Dict, List

import check_timing  # beside this script

# part -> (module path, owner attribute or "", function): the check's parts, by the function doing each
PARTS = {
    "inputs widened to float64": ("runner.verify.forward_pass", "_Widened", "__getitem__"),
    "float64 run at the point": ("runner.verify.forward_pass", "_Base", "tensors"),
    "float64 runs along the directions": ("runner.verify.forward_pass", "Forward", "target"),
    "directions drawn": ("runner.verify.projection", "", "_signs"),
    "moves x0 + h d": ("runner.verify.forward_pass", "Forward", "moved"),
    "TF's value projected": ("runner.verify.projection", "", "_projected"),
}


def timers() -> Callable[[], List[Dict[str, float]]]:
    """Wraps each part's function and `runner.job._verify` (which closes a job's tally); gives
    a function returning one tally per job so far, in seconds, with the check's whole time."""
    import importlib

    from runner import job

    now: Dict[str, float] = collections.defaultdict(float)
    jobs: List[Dict[str, float]] = []
    inside: List[str] = []  # the parts running, innermost last

    def wrap(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            inside.append(label)
            t = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t
                inside.pop()
                now[label] += spent
                if inside:  # not the enclosing part's own time
                    now[inside[-1]] -= spent

        setattr(owner, name, timed)

    for label, (module, owner, name) in PARTS.items():
        mod = importlib.import_module(module)
        wrap(getattr(mod, owner) if owner else mod, name, label)
    verify = job._verify

    def tally(*args: Any, **kwargs: Any) -> Any:
        now.clear()
        t = time.perf_counter()
        try:
            return verify(*args, **kwargs)
        finally:
            jobs.append(dict(now, check=time.perf_counter() - t))

    job._verify = tally  # type: ignore[assignment]
    return lambda: jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", action="store_true", help="where the check's time goes, per part")
    args = parser.parse_args()
    n = args.size
    cfg = {
        "function": {"inputs": ["W", "v"], "steps": {"y": "reduce_sum(tanh(matmul(W, v)))"}},
        "point": {"W": {"random": {"shape": [n, n], "seed": 0}}, "v": {"random": {"shape": [n, 1], "seed": 1}}},
        "derivatives": [{"target": "y", "sources": "W"}],
        "log": {"tensorboard": False, "plots": False},
    }
    tallies = timers() if args.parts else None
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
    if tallies is not None:
        jobs = tallies()[1:]  # the warm-up left out, as above
        ms = {p: statistics.median(j.get(p, 0.0) for j in jobs) * 1e3 for p in list(PARTS) + ["check"]}
        shown = {p: v for p, v in ms.items() if p != "check"}
        for part, v in sorted(shown.items(), key=lambda pv: -pv[1]):
            print(f"  {part:40s} {v:6.2f} ms")
        print(f"  {'the rest (Python, small arrays, records)':40s} {ms['check'] - sum(shown.values()):6.2f} ms")
        print(f"  {'the check, with the timers':40s} {ms['check']:6.2f} ms")


if __name__ == "__main__":
    main()
