"""What TensorBoard events and plots cost per job, in-process (as in a basic-launcher sweep).

    python benchmarks/artifacts_cost.py [--repeat 40]

Runs the same job with each artifact switched on and off, interleaved (so drift in machine
load hits both alike), after a warm-up that pays the one-off imports; prints the median
time per job of each variant and its difference from the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from runner import job, schema  # noqa: E402
from runner.cli import config_dir  # noqa: E402

POINT = ["experiment=seed_persistent"]
GRID = ["experiment=seed_chain_rule", "point.x={linspace: [-2, 2, 41]}", "derivatives=[{target: z, sources: x}]"]
VARIANTS = {
    "point, no artifacts (baseline)": POINT + ["log.tensorboard=false", "log.plots=false"],
    "point, tensorboard": POINT + ["log.tensorboard=true", "log.plots=false"],
    "grid, no artifacts (baseline)": GRID + ["log.tensorboard=false", "log.plots=false"],
    "grid, tensorboard": GRID + ["log.tensorboard=true", "log.plots=false"],
    "grid, plot": GRID + ["log.tensorboard=false", "log.plots=true"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    schema.register()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfgs = {
            k: OmegaConf.to_container(compose("config", overrides=v), resolve=True, enum_to_str=True)
            for k, v in VARIANTS.items()
        }
    times = {k: [] for k in cfgs}
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for rep in range(args.repeat + 2):  # the first two rounds warm up (imports, tracing)
            for name, cfg in cfgs.items():
                n += 1
                t0 = time.perf_counter()
                assert job.run(cfg, Path(tmp) / str(n), echo=False) == 0
                if rep >= 2:
                    times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"median ms per job over {args.repeat} interleaved repeats")
    for name, ms in med.items():
        base = med[name.split(",")[0] + ", no artifacts (baseline)"]
        extra = "" if "baseline" in name else f"   +{ms - base:.2f} ms ({ms / base:.2f}x baseline)"
        print(f"  {name:<32} {ms:7.2f}{extra}")


if __name__ == "__main__":
    main()
