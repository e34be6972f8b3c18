"""B5's third measure: one job's own time, in one process, callable against steps and script.

    RUNNER_TRUST=benchmarks.baselines.chain_code python benchmarks/callable_job.py REPEATS OUT_DIR

Composes `experiment=bench_chain_code` (the callable) and `experiment=seed_chain_rule` (the
steps), each with SAME_WORK and with the defaults, imports TensorFlow, runs each once untimed,
then times `runner.job.run` (spec, code or steps, tape, checks, run log) of each in turn,
REPEATS times, beside the hand-written script's `point` and `write` (baselines/chain_code.py).
Prints the seconds as JSON. What a sweep adds per job (Hydra's files, the launcher) is the
same for both forms, so this is where the two can differ.
"""

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from measure import HERE
from omegaconf import OmegaConf


def main(repeats: int, out_dir: Path) -> None:
    from callable_cost import FORMS, MODES

    from benchmarks.baselines import chain_code
    from runner import job
    from runner.cli import config_dir
    from runner.config import schema
    from runner.tape import startup

    schema.register()
    configs = {}
    for form, experiment in FORMS.items():
        for mode, extra in MODES.items():
            overrides = [f"hydra.searchpath=[file://{HERE / 'conf'}]", experiment, *extra]
            with initialize_config_dir(str(config_dir()), version_base="1.3"):
                cfg = compose("config", overrides=overrides)
            configs[f"{form}_{mode}"] = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    tf, _ = startup.load()

    def script(folder: Path) -> int:
        chain_code.write(chain_code.point(tf, 3.0), str(folder))
        return 0

    sides = {
        name: (lambda folder, c=c, name=name: job.run(c, folder, name=name, echo=False)) for name, c in configs.items()
    }
    sides["script"] = script
    for name, side in sides.items():
        assert side(out_dir / f"warm-{name}") == 0, f"{name} failed"
    times = {name: [] for name in sides}
    for i in range(repeats):
        for name, side in sides.items():
            t0 = time.perf_counter()
            code = side(out_dir / f"{name}-{i}")
            times[name].append(time.perf_counter() - t0)
            assert code == 0, f"{name} failed (exit {code})"
    print(json.dumps(times))


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
