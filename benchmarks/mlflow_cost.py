"""What `log.mlflow` costs a sweep per job: the same jobs with and without MLflow, in one process.

    python benchmarks/mlflow_cost.py [--repeats 40] [--no-server] [--json FILE]
    python benchmarks/mlflow_cost.py --smoke      # a tiny version that only proves it works

One sweep per variant, each job `experiment=seed_persistent point.x=X` with the defaults,
run by `runner.job.run` as the basic launcher runs it (`in_sweep`, a `JobContext` with the
sweep folder and the job's number; the job folder holds the three `.hydra/*.yaml` files Hydra
writes first, which MLflow gets as artifacts beside `results.json`), after each tracked sweep's parent run was made by
`runner.sweep.mlflow_sweep.start` (its `mlflow.json`, which every job reads):

    none     log.mlflow unset (the baseline)
    sqlite   log.mlflow=sqlite:///TMP/mlflow.db (artifacts in TMP/mlruns)
    http     log.mlflow=http://127.0.0.1:PORT, an `mlflow server --workers 1` this script
             starts on a free port (its own sqlite database, artifacts proxied through it)
             and stops at the end (--no-server: skip it)

The variants' jobs run in turn, one of each per repeat, their order rotated from one repeat
to the next, so the machine's drift hits them alike; two untimed rounds first pay the
one-off imports (TensorFlow, MLflow) and tracing. Prints each variant's median ms per job,
its overhead over the baseline (the difference of the medians), the ratio, and the median
of the jobs' own `tracking.mlflow.seconds`; and the per-sweep cost of making the parent run
and ending it. The machine is shared: compare the figures of one run, not across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlflow_server  # noqa: E402  (beside this script)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from runner import job  # noqa: E402
from runner.cli import config_dir  # noqa: E402
from runner.config import schema  # noqa: E402
from runner.record.mlflow_run import JobContext  # noqa: E402
from runner.sweep import mlflow_sweep  # noqa: E402

BASE = ["experiment=seed_persistent"]
WARMUP = 2
# MLflow 3 reads this as an integer; runner/record/mlflow_store.py's default "0.5" makes every
# http request fail (ValueError) unless the user sets it. The user's value wins there, so:
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def start_server(work: Path) -> "tuple[subprocess.Popen[bytes], str]":
    """`mlflow server` over its own database, artifacts proxied through it."""
    return mlflow_server.start(work, work / "server.db", ["--artifacts-destination", str(work / "server-artifacts")])


def configs(stores: Dict[str, Optional[str]]) -> "tuple[Dict[str, Dict[str, Any]], Dict[str, str]]":
    """Each variant's resolved config, and the text of a job's `.hydra/` files (one variant's)."""
    schema.register()
    out, hydra_files = {}, {}
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for name, uri in stores.items():
            extra = [f"log.mlflow={uri}"] if uri else []
            cfg = compose("config", overrides=BASE + extra)
            out[name] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        full = compose("config", overrides=BASE, return_hydra_config=True)
        hydra_files = {
            "config.yaml": OmegaConf.to_yaml(cfg),
            "hydra.yaml": OmegaConf.to_yaml({"hydra": full.hydra}),
            "overrides.yaml": OmegaConf.to_yaml(BASE + ["point.x=0.0"]),
        }
    return out, hydra_files


def measure(stores: Dict[str, Optional[str]], repeats: int, work: Path) -> Dict[str, Any]:
    cfgs, hydra_files = configs(stores)
    names = list(cfgs)
    t0 = time.perf_counter()
    import mlflow  # noqa: F401  (once per process: the first tracked job of a sweep pays it)

    import_s = time.perf_counter() - t0
    times: Dict[str, List[float]] = {n: [] for n in names}
    own: Dict[str, List[float]] = {n: [] for n in names}
    parent_s: Dict[str, float] = {}
    for name, cfg in cfgs.items():
        sweep = work / f"sweep-{name}"
        sweep.mkdir()
        t0 = time.perf_counter()
        mlflow_sweep.start(OmegaConf.create(cfg), sweep)
        parent_s[name] = time.perf_counter() - t0
        state = mlflow_sweep.read_state(sweep)
        if stores[name] and not state.get("parent_run_id"):
            raise RuntimeError(f"{name}: no parent run: {state}")
    for rep in range(repeats + WARMUP):
        k = rep % len(names)
        for name in names[k:] + names[:k]:  # rotated: no variant always runs first
            sweep = work / f"sweep-{name}"
            x = float(rep % 7)
            cfg = {**cfgs[name], "point": {**cfgs[name]["point"], "x": x}}
            folder = sweep / str(rep)
            ctx = JobContext(overrides=(*BASE, f"point.x={x}"), sweep_dir=sweep, job_num=rep)
            (folder / ".hydra").mkdir(parents=True)  # what Hydra writes before a job (untimed)
            for file, text in hydra_files.items():
                (folder / ".hydra" / file).write_text(text)
            t0 = time.perf_counter()
            code = job.run(cfg, folder, name="seed_persistent", echo=False, in_sweep=True, context=ctx)
            elapsed = time.perf_counter() - t0
            assert code == 0, f"{name} job {rep} exited {code}"
            record = json.loads((folder / "results.json").read_text())
            tracked = (record.get("tracking") or {}).get("mlflow") or {}
            if stores[name] and not tracked.get("run_id"):
                raise RuntimeError(f"{name} job {rep} was not logged: {tracked}")
            if rep >= WARMUP:
                times[name].append(elapsed)
                if tracked:
                    own[name].append(tracked["seconds"])
    end_s = {}
    for name in names:
        t0 = time.perf_counter()
        mlflow_sweep.end(work / f"sweep-{name}", [{"met": True}] * (repeats + WARMUP), ())
        end_s[name] = time.perf_counter() - t0
    base = statistics.median(times[names[0]]) * 1000
    out: Dict[str, Any] = {"repeats": float(repeats), "mlflow_import_ms": import_s * 1000, "none_ms_per_job": base}
    for name in names[1:]:
        ms = statistics.median(times[name]) * 1000
        out[f"{name}_ms_per_job"] = ms
        out[f"{name}_overhead_ms_per_job"] = ms - base
        out[f"{name}_ratio"] = ms / base
        out[f"{name}_log_job_ms"] = statistics.median(own[name]) * 1000
        out[f"{name}_parent_start_ms"] = parent_s[name] * 1000
        out[f"{name}_parent_end_ms"] = end_s[name] * 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--smoke", action="store_true", help="3 repeats: only proves the script works")
    parser.add_argument("--no-server", action="store_true", help="skip the `mlflow server` over http")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    repeats = 3 if args.smoke else args.repeats
    load0, t_start = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.chdir(work)  # MLflow's default artifact folder (./mlruns) for the sqlite store
        stores: Dict[str, Optional[str]] = {"none": None, "sqlite": f"sqlite:///{work / 'mlflow.db'}"}
        server = None
        try:
            if not args.no_server:
                server, stores["http"] = start_server(work)
            figures = measure(stores, repeats, work)
        finally:
            if server is not None:
                mlflow_server.stop(server)
        os.chdir("/")
    load1 = os.getloadavg()[0]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"load average {load0:.2f} at start, {load1:.2f} at the end, {time.perf_counter() - t_start:.0f} s"
    )
    print(f"median ms per job over {repeats} rotated repeats (experiment=seed_persistent, the defaults)")
    print(f"  none (baseline)  {figures['none_ms_per_job']:7.2f}")
    print(f"  (once per process: importing MLflow {figures['mlflow_import_ms']:.0f} ms)")
    for name in [n for n in ("sqlite", "http") if f"{n}_ms_per_job" in figures]:
        print(
            f"  {name:<16} {figures[f'{name}_ms_per_job']:7.2f}   +{figures[f'{name}_overhead_ms_per_job']:.2f} ms "
            f"({figures[f'{name}_ratio']:.2f}x); the job's own tracking.mlflow.seconds {figures[f'{name}_log_job_ms']:.2f} ms; "
            f"per sweep: parent made {figures[f'{name}_parent_start_ms']:.0f} ms, ended {figures[f'{name}_parent_end_ms']:.0f} ms"
        )
    figures.update(load_start=load0, load_end=load1)
    if args.json:
        args.json.write_text(json.dumps({"smoke": args.smoke, "figures": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
