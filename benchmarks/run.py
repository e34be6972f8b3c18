"""The runner against its alternatives, measured in one run on this machine.

    python benchmarks/run.py            # the full benchmark (about 6 minutes on 2 cores)
    python benchmarks/run.py --smoke    # a tiny version that only proves the script works
    python benchmarks/run.py --json results.json   # also write the figures as JSON

Every figure is a median over repeats, and every goal a ratio against a baseline measured
in the same run (the machine is shared and noisy: absolute times drift, ratios less so).
Commands run in subprocesses, cold, as a user runs them; each is timed by wall clock, and
its CPU time and peak memory come from the kernel (`os.wait4`).

B1  one cold run: `python -m runner experiment=seed_cubic` against baselines/seed_cubic.py
(B2-B4 run the runner with SAME_WORK: checks, event files and plots off, as the baselines
have none.)
B2  a sweep's marginal cost per job, (t(200 jobs) - t(10 jobs)) / 190: the runner's
    `-m point.x=range(..)`, Hydra's basic sweeper on a task that does nothing
    (baselines/hydra_noop.py) and a hand-written loop (baselines/sweep_loop.py)
B3  the marginal cost of a 10**6-point grid (chain rule, dy/dx and dz/dx), big minus small,
    inside one process: the runner's job (grid_runner.py) against a hand-written
    tf.function (baselines/grid_function.py), the two processes taking turns over three
    rounds; and the notebook's per-point eager loop (baselines/grid_eager_loop.py, timed
    on 1,000 points and scaled per point)
B4  peak memory (max RSS) of one cold run at 10**7 points, runner against the tf.function
B5  a callable job against the same function as expression steps and by hand in a script,
    cold and per job in a sweep, with SAME_WORK and with the defaults (callable_cost.py)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import callable_cost
from measure import BASELINES, HERE, PY, SAME_WORK, check_sweep_folders, median, run, runner_cmd


@dataclass
class Sizes:
    """How big and how often: the full benchmark, or the smoke test's tiny version."""

    repeats: int
    b1_repeats: int
    sweep_small: int
    sweep_big: int
    grid_small: int
    grid_big: int
    loop_points: int
    memory_points: int


FULL = Sizes(
    repeats=3,
    b1_repeats=5,
    sweep_small=10,
    sweep_big=200,
    grid_small=10,
    grid_big=10**6,
    loop_points=1000,
    memory_points=10**7,
)
SMOKE = Sizes(
    repeats=1,
    b1_repeats=1,
    sweep_small=2,
    sweep_big=4,
    grid_small=10,
    grid_big=10**4,
    loop_points=20,
    memory_points=10**5,
)


def b1_cold_run(sizes: Sizes, work: Path) -> Dict[str, float]:
    runner, base = [], []
    for i in range(sizes.b1_repeats):  # interleaved, so both see the same load
        runner.append(run(runner_cmd("experiment=seed_cubic"), work / "b1").wall_s)
        base.append(run([PY, str(BASELINES / "seed_cubic.py"), str(work / "b1" / f"base-{i}")], work / "b1").wall_s)
    return {
        "runner_s": median(runner),
        "baseline_s": median(base),
        "ratio": median(runner) / median(base),
        "repeats": sizes.b1_repeats,
    }


def b2_sweep(sizes: Sizes, work: Path) -> Dict[str, float]:
    small, big = sizes.sweep_small, sizes.sweep_big
    sides = {
        "runner": lambda n, i: runner_cmd(
            "-m", f"point.x=range(0,{n})", f"hydra.sweep.dir={work}/b2/runner-{n}-{i}", *SAME_WORK
        ),
        "runner_defaults": lambda n, i: runner_cmd(
            "-m", f"point.x=range(0,{n})", f"hydra.sweep.dir={work}/b2/defaults-{n}-{i}"
        ),
        "hydra_floor": lambda n, i: [
            PY,
            str(BASELINES / "hydra_noop.py"),
            "-m",
            f"x=range(0,{n})",
            f"hydra.sweep.dir={work}/b2/hydra-{n}-{i}",
        ],
        "loop": lambda n, i: [PY, str(BASELINES / "sweep_loop.py"), str(n), str(work / "b2" / f"loop-{n}-{i}")],
    }
    out: Dict[str, float] = {"jobs_small": small, "jobs_big": big, "repeats": sizes.repeats}
    for name, cmd in sides.items():
        wall, cpu = {small: [], big: []}, {small: [], big: []}
        for i in range(sizes.repeats):
            for n in (small, big):
                r = run(cmd(n, i), work / "b2")
                wall[n].append(r.wall_s)
                cpu[n].append(r.cpu_s)
        out[f"{name}_ms_per_job"] = 1000 * (median(wall[big]) - median(wall[small])) / (big - small)
        out[f"{name}_cpu_ms_per_job"] = 1000 * (median(cpu[big]) - median(cpu[small])) / (big - small)
    check_sweep_folders(work / "b2" / f"runner-{big}-0", big)
    out["hydra_floor_over_runner"] = out["hydra_floor_ms_per_job"] / out["runner_ms_per_job"]
    return out


def b3_grid(sizes: Sizes, work: Path) -> Dict[str, float]:
    """Rounds of (runner process, baseline process), each timing `reps` pairs: a big job's
    20 MB of arrays go to disk, whose speed here drifts from minute to minute, so the two
    sides take turns and every pair of every round counts towards the median."""
    small, big, reps, rounds = sizes.grid_small, sizes.grid_big, sizes.repeats + 2, sizes.repeats
    pairs: Dict[str, List[float]] = {"runner": [], "base": []}

    def marginal(times: Dict[str, List[float]]) -> List[float]:  # paired: each big run less the small run before it
        return [b - s for s, b in zip(times["small"], times["big"])]

    for i in range(rounds):
        runner = run(
            [
                PY,
                str(HERE / "grid_runner.py"),
                str(small),
                str(big),
                str(reps),
                str(work / "b3" / f"runner-{i}"),
                *SAME_WORK,
            ],
            work / "b3",
        )
        base = run(
            [
                PY,
                str(BASELINES / "grid_function.py"),
                "--time",
                str(small),
                str(big),
                str(reps),
                str(work / "b3" / f"base-{i}"),
            ],
            work / "b3",
        )
        pairs["runner"] += marginal(json.loads(runner.stdout))
        pairs["base"] += marginal(json.loads(base.stdout))
    loop = json.loads(run([PY, str(BASELINES / "grid_eager_loop.py"), str(sizes.loop_points)], work / "b3").stdout)
    r, b = median(pairs["runner"]), median(pairs["base"])
    loop_s = loop["per_point_s"] * (big - small)
    return {
        "points": big,
        "repeats": reps * rounds,
        "runner_s": r,
        "tf_function_s": b,
        "ratio": r / b,
        "eager_loop_points_timed": sizes.loop_points,
        "eager_loop_s_scaled": loop_s,
        "speedup_over_eager_loop": loop_s / r,
    }


def b4_memory(sizes: Sizes, work: Path) -> Dict[str, float]:
    n = sizes.memory_points
    runner = run(
        runner_cmd(
            "--config-dir", str(HERE / "conf"), "experiment=bench_grid", f"point.x.linspace=[0.0,1.0,{n}]", *SAME_WORK
        ),
        work / "b4",
    )
    base = run([PY, str(BASELINES / "grid_function.py"), str(n), str(work / "b4" / "base")], work / "b4")
    return {
        "points": n,
        "runner_mb": runner.max_rss_mb,
        "tf_function_mb": base.max_rss_mb,
        "ratio": runner.max_rss_mb / base.max_rss_mb,
    }


def startup(sizes: Sizes, work: Path) -> Dict[str, float]:
    help_s = [run(runner_cmd("--help"), work / "help").wall_s for _ in range(sizes.b1_repeats)]
    return {"runner_help_s": median(help_s), "repeats": sizes.b1_repeats}


def machine() -> Dict[str, object]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
    }


GOALS = {
    "B1": ("ratio", "<=", 1.15),
    "B2": ("runner_ms_per_job", "<=", 15.0),
    "B2 vs Hydra": ("hydra_floor_over_runner", ">=", 9.0),
    "B3": ("ratio", "<=", 1.25),
    "B3 vs loop": ("speedup_over_eager_loop", ">=", 1000.0),
    "B4": ("ratio", "<=", 1.5),
}


def report(m: Dict[str, object], figures: Dict[str, Dict[str, float]]) -> str:
    b1, b2, b3, b4, st = figures["B1"], figures["B2"], figures["B3"], figures["B4"], figures["startup"]

    def verdict(goal: str, section: str) -> str:
        key, op, bound = GOALS[goal]
        value = figures[section][key]
        ok = value <= bound if op == "<=" else value >= bound
        return f"goal {op} {bound:g}: {'met' if ok else 'NOT met'}"

    lines = [
        f"machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, {m['date']}, load average {m['load_average']:.2f} at start",
        f"B1 one cold run (median of {b1['repeats']}): runner {b1['runner_s']:.2f} s, hand-written TF script {b1['baseline_s']:.2f} s"
        f" -> {b1['ratio']:.2f}x  ({verdict('B1', 'B1')})",
        f"B2 sweep, marginal cost per job ({b2['jobs_big']} vs {b2['jobs_small']} jobs, median of {b2['repeats']}):"
        f" runner {b2['runner_ms_per_job']:.1f} ms ({b2['runner_cpu_ms_per_job']:.1f} ms CPU)"
        f"  ({verdict('B2', 'B2')})",
        f"   Hydra basic sweeper, task doing nothing {b2['hydra_floor_ms_per_job']:.1f} ms ({b2['hydra_floor_cpu_ms_per_job']:.1f} ms CPU)"
        f" -> {b2['hydra_floor_over_runner']:.1f}x the runner  ({verdict('B2 vs Hydra', 'B2')})",
        f"   hand-written loop {b2['loop_ms_per_job']:.1f} ms ({b2['loop_cpu_ms_per_job']:.1f} ms CPU)",
        f"   runner with its defaults (checks, event files on) {b2['runner_defaults_ms_per_job']:.1f} ms"
        f" ({b2['runner_defaults_cpu_ms_per_job']:.1f} ms CPU)",
        f"B3 grid of {b3['points']:,} points, marginal cost (median of {b3['repeats']}): runner {1000 * b3['runner_s']:.1f} ms,"
        f" hand-written tf.function {1000 * b3['tf_function_s']:.1f} ms -> {b3['ratio']:.2f}x  ({verdict('B3', 'B3')})",
        f"   notebook's eager loop ({b3['eager_loop_points_timed']:,} points timed, scaled) {b3['eager_loop_s_scaled']:.1f} s"
        f" -> runner {b3['speedup_over_eager_loop']:,.0f}x faster  ({verdict('B3 vs loop', 'B3')})",
        f"B4 peak memory at {b4['points']:,} points: runner {b4['runner_mb']:.0f} MB, tf.function {b4['tf_function_mb']:.0f} MB"
        f" -> {b4['ratio']:.2f}x  ({verdict('B4', 'B4')})",
        f"start-up: python -m runner --help {st['runner_help_s']:.2f} s (median of {st['repeats']}; TensorFlow not imported)",
        callable_cost.report(figures["B5"]),
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny, fast version (proves the script works)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (the runs' outputs)")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    work = Path(tempfile.mkdtemp(prefix="runner-bench-"))
    m = machine()
    t0 = time.perf_counter()
    try:
        figures = {}
        for name, fn in (
            ("startup", startup),
            ("B1", b1_cold_run),
            ("B2", b2_sweep),
            ("B3", b3_grid),
            ("B4", b4_memory),
            ("B5", lambda s, w: callable_cost.b5(s.b1_repeats, s.repeats, s.sweep_small, s.sweep_big, w)),
        ):
            figures[name] = fn(sizes, work)
            print(f"[{time.perf_counter() - t0:6.0f} s] {name} done", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    m["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(report(m, figures))
    print(f"(took {time.perf_counter() - t0:.0f} s; load average {m['load_average_end']:.2f} at the end)")
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "smoke": args.smoke, "figures": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
