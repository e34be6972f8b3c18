"""B3's runner side: the marginal cost of a grid job, timed inside one process.

    python benchmarks/grid_runner.py SMALL BIG REPEATS OUT_DIR [OVERRIDE ...]

Composes `experiment=bench_grid` (benchmarks/conf) with Hydra's compose API at SMALL and
BIG points, imports TensorFlow, runs each once untimed, then times `runner.job.run` (spec,
tape program, run log with arrays.npz) at SMALL and BIG points alternately, REPEATS times,
and prints the seconds as JSON. What a job costs beyond this (Hydra's per-job files) does
not depend on the number of points, so the difference BIG - SMALL is the grid's cost.
"""

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent


def main(small: int, big: int, repeats: int, out_dir: Path, extra: list) -> None:
    from runner import job
    from runner.cli import config_dir
    from runner.config import schema
    from runner.tape import startup

    schema.register()
    configs = {}
    for label, n in (("small", small), ("big", big)):
        overrides = [
            f"hydra.searchpath=[file://{HERE / 'conf'}]",
            "experiment=bench_grid",
            f"point.x.linspace=[0.0,1.0,{n}]",
            *extra,
        ]
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            configs[label] = OmegaConf.to_container(
                compose("config", overrides=overrides), resolve=True, enum_to_str=True
            )
    startup.load()
    for label in configs:
        job.run(configs[label], out_dir / f"warm-{label}", name="bench_grid", echo=False)
    times = {"small": [], "big": []}
    for i in range(repeats):
        for label in ("small", "big"):
            t0 = time.perf_counter()
            code = job.run(configs[label], out_dir / f"{label}-{i}", name="bench_grid", echo=False)
            times[label].append(time.perf_counter() - t0)
            assert code == 0, f"the {label} grid job failed (exit {code})"
    print(json.dumps(times))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5:])
