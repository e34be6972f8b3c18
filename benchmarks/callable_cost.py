"""B5: a callable job's cost against the same function written by hand, and the expression form's.

    python benchmarks/callable_cost.py            # B5 alone (about 3 minutes on 2 cores)
    python benchmarks/callable_cost.py --smoke    # a tiny version that only proves it works
    python benchmarks/run.py                      # B1-B5, this one last

The seed's chain rule, y = x*x, z = y*y, and dz/dx, three ways:

(a) code   the runner calling benchmarks/baselines/chain_code.py's `chain_rule` (trusted by
           RUNNER_TRUST=benchmarks.baselines.chain_code), `experiment=bench_chain_code`
(b) steps  the runner with the same function as expression steps, `experiment=seed_chain_rule`
(c) script the same function hand-written in a plain TF script (baselines/chain_code.py)

each measured cold (one run at x = 3, like B1) and as a sweep's marginal cost per job
((t(BIG jobs) - t(SMALL jobs)) / (BIG - SMALL), like B2; the script's side is a loop in one
process); and, to see what a subprocess's noise hides, one job's own time in one process
(callable_job.py: `runner.job.run`, BIG times each, in turn). The runner's two forms run twice: with B2's SAME_WORK (checks, event files, plots
off, as the script has none) and with the defaults, where the code is checked by finite
differences and the steps symbolically (SymPy). All the commands of one repeat run in turn,
their order rotated from one repeat to the next, so the machine's noise hits them alike.

The overhead of a form is its time less the script's; the goal: the code's overhead is no
more than the steps' (in both measures, both modes), i.e. a callable costs no more than the
expression form.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from measure import BASELINES, HERE, PY, SAME_WORK, check_sweep_folders, median, run, runner_cmd

SCRIPT = BASELINES / "chain_code.py"
TRUST = {"RUNNER_TRUST": "benchmarks.baselines.chain_code"}
FORMS = {"code": "experiment=bench_chain_code", "steps": "experiment=seed_chain_rule"}
MODES = {"same_work": SAME_WORK, "defaults": ()}
# sizes: (cold repeats, sweep repeats, small sweep, big sweep)
FULL = (5, 3, 10, 200)
SMOKE = (1, 1, 2, 4)

Side = Tuple[str, Callable[[str], List[str]], Optional[Dict[str, str]]]


def sides(work: Path, sweep: Optional[int]) -> List[Side]:
    """(name, command for a run labelled by its argument, extra environment): the runner in
    each form and mode, then the script; `sweep` = number of jobs, or None for one cold run."""
    out: List[Side] = []
    for form, experiment in FORMS.items():
        for mode, extra in MODES.items():
            name = f"{form}_{mode}"

            def cmd(label: str, name: str = name, experiment: str = experiment, extra: Tuple[str, ...] = extra):
                args = ["--config-dir", str(HERE / "conf"), experiment, *extra]
                if sweep is None:
                    return runner_cmd(*args, f"hydra.run.dir={work}/{name}-{label}")
                return runner_cmd("-m", *args, f"point.x=range(0,{sweep})", f"hydra.sweep.dir={work}/{name}-{label}")

            out.append((name, cmd, TRUST if form == "code" else None))
    if sweep is None:
        out.append(("script", lambda label: [PY, str(SCRIPT), str(work / f"script-{label}")], None))
    else:
        out.append(
            ("script", lambda label: [PY, str(SCRIPT), "--sweep", str(sweep), str(work / f"script-{label}")], None)
        )
    return out


def rotated(items: List[Side], i: int) -> List[Side]:
    k = i % len(items)
    return items[k:] + items[:k]


def cold(repeats: int, work: Path) -> Dict[str, float]:
    """Median wall and CPU time of one cold run of each side, in seconds."""
    wall: Dict[str, List[float]] = {}
    cpu: Dict[str, List[float]] = {}
    for i in range(repeats):
        for name, cmd, env in rotated(sides(work / "cold", None), i):
            r = run(cmd(str(i)), work / "cold", env)
            wall.setdefault(name, []).append(r.wall_s)
            cpu.setdefault(name, []).append(r.cpu_s)
    for form in FORMS:  # both forms computed the same thing: dz/dx = 4 * 3**3
        derivatives = json.loads((work / "cold" / f"{form}_defaults-0" / "results.json").read_text())["derivatives"]
        if [d["value"] for d in derivatives] != [108.0]:
            raise RuntimeError(f"{FORMS[form]} gave {derivatives}")
    return {**{f"{n}_s": median(ts) for n, ts in wall.items()}, **{f"{n}_cpu_s": median(ts) for n, ts in cpu.items()}}


def sweep(repeats: int, small: int, big: int, work: Path) -> Dict[str, float]:
    """Marginal wall and CPU time per job of each side, in milliseconds."""
    wall: Dict[Tuple[str, int], List[float]] = {}
    cpu: Dict[Tuple[str, int], List[float]] = {}
    for i in range(repeats):
        for n in (small, big):
            for name, cmd, env in rotated(sides(work / "sweep", n), i):
                r = run(cmd(f"{n}-{i}"), work / "sweep", env)
                wall.setdefault((name, n), []).append(r.wall_s)
                cpu.setdefault((name, n), []).append(r.cpu_s)
    for form in FORMS:
        check_sweep_folders(work / "sweep" / f"{form}_same_work-{big}-0", big)
    out: Dict[str, float] = {}
    for name, _, _ in sides(work, big):
        for label, times in (("ms_per_job", wall), ("cpu_ms_per_job", cpu)):
            out[f"{name}_{label}"] = 1000 * (median(times[name, big]) - median(times[name, small])) / (big - small)
    return out


def job(repeats: int, work: Path) -> Dict[str, float]:
    """Median time of one job in one process, in milliseconds (callable_job.py)."""
    r = run([PY, str(HERE / "callable_job.py"), str(repeats), str(work / "job")], work, TRUST)
    return {f"{name}_ms": 1000 * median(ts) for name, ts in json.loads(r.stdout).items()}


def b5(cold_repeats: int, repeats: int, small: int, big: int, work: Path) -> Dict[str, float]:
    """Every figure of B5, flat (as run.py's JSON keeps them), with the overheads and verdicts."""
    c = {f"cold_{k}": v for k, v in cold(cold_repeats, work / "b5").items()}
    s = {f"sweep_{k}": v for k, v in sweep(repeats, small, big, work / "b5").items()}
    j = {f"job_{k}": v for k, v in job(big, work / "b5").items()}
    out: Dict[str, float] = {
        "cold_repeats": cold_repeats,
        "sweep_repeats": repeats,
        "jobs_small": small,
        "jobs_big": big,
        **c,
        **s,
        **j,
    }
    for mode in MODES:
        for form in FORMS:
            key = f"{form}_{mode}"
            out[f"cold_{key}_ratio"] = c[f"cold_{key}_s"] / c["cold_script_s"]
            out[f"cold_{key}_overhead_s"] = c[f"cold_{key}_s"] - c["cold_script_s"]
            out[f"sweep_{key}_overhead_ms"] = s[f"sweep_{key}_ms_per_job"] - s["sweep_script_ms_per_job"]
        # the goal: the callable's overhead over the script no more than the steps' (1.0 = met)
        out[f"cold_{mode}_met"] = float(out[f"cold_code_{mode}_overhead_s"] <= out[f"cold_steps_{mode}_overhead_s"])
        out[f"sweep_{mode}_met"] = float(
            out[f"sweep_code_{mode}_overhead_ms"] <= out[f"sweep_steps_{mode}_overhead_ms"]
        )
    return out


def report(f: Dict[str, float]) -> str:
    lines = [
        f"B5 a callable job against the same function as expression steps and in a hand-written TF script"
        f" (chain rule, dz/dx; one cold run, median of {f['cold_repeats']:.0f}; sweep, marginal cost per job,"
        f" {f['jobs_big']:.0f} vs {f['jobs_small']:.0f} jobs, median of {f['sweep_repeats']:.0f}):",
        f"   hand-written script       cold {f['cold_script_s']:.2f} s ({f['cold_script_cpu_s']:.2f} s CPU);"
        f" sweep (a loop) {f['sweep_script_ms_per_job']:.1f} ms per job ({f['sweep_script_cpu_ms_per_job']:.1f} ms CPU)",
    ]
    for mode, label in (("same_work", "same work"), ("defaults", "defaults")):
        for form, what in (("code", "callable"), ("steps", "steps")):
            k = f"{form}_{mode}"
            lines.append(
                f"   {what + ', ' + label:<25} cold {f[f'cold_{k}_s']:.2f} s ({f[f'cold_{k}_cpu_s']:.2f} s CPU),"
                f" {f[f'cold_{k}_ratio']:.2f}x the script;"
                f" sweep {f[f'sweep_{k}_ms_per_job']:.1f} ms per job ({f[f'sweep_{k}_cpu_ms_per_job']:.1f} ms CPU),"
                f" {f[f'sweep_{k}_overhead_ms']:+.1f} ms over the script"
            )
        cold_ms = 1000 * (f[f"cold_code_{mode}_s"] - f[f"cold_steps_{mode}_s"])
        sweep_ms = f[f"sweep_code_{mode}_ms_per_job"] - f[f"sweep_steps_{mode}_ms_per_job"]
        verdicts = [
            f"cold {'met' if f[f'cold_{mode}_met'] else 'NOT met'} ({cold_ms:+.0f} ms)",
            f"sweep {'met' if f[f'sweep_{mode}_met'] else 'NOT met'} ({sweep_ms:+.1f} ms per job)",
        ]
        lines.append(f"     {label}: callable's overhead <= the steps' (goal): " + ", ".join(verdicts))
    lines.append(
        f"   one job in one process (runner.job.run, median of {f['jobs_big']:.0f}): callable"
        f" {f['job_code_same_work_ms']:.2f} ms, steps {f['job_steps_same_work_ms']:.2f} ms with the same work;"
        f" {f['job_code_defaults_ms']:.2f} and {f['job_steps_defaults_ms']:.2f} ms with the defaults;"
        f" the script's {f['job_script_ms']:.2f} ms"
    )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny, fast version (proves the script works)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="runner-bench-b5-"))
    t0 = time.perf_counter()
    try:
        figures = b5(*(SMOKE if args.smoke else FULL), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(figures))
    print(f"(took {time.perf_counter() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"smoke": args.smoke, "figures": {"B5": figures}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
