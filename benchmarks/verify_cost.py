"""What the independent checks cost: `timing.verify_s` per experiment and mode, against the
tape's own derivative time measured in the same runs, and per source size.

    python benchmarks/verify_cost.py [--repeats 6]

Medians over the repeats after the first (which pays SymPy's import); runs in-process,
writing run folders under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from runner import job  # noqa: E402
from runner.cli import config_dir  # noqa: E402
from runner.config import schema  # noqa: E402


def composed(overrides):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return OmegaConf.to_container(compose("config", overrides=overrides), resolve=True, enum_to_str=True)


def timings(cfg, folder: Path, repeats: int):
    verify, tape = [], []
    for i in range(repeats):
        job.run(cfg, folder / str(i), echo=False)
        t = json.loads((folder / str(i) / "results.json").read_text())["timing"]
        verify.append(t["verify_s"])
        tape.append(t.get("derivatives_s", 0.0))
    return statistics.median(verify[1:]), statistics.median(tape[1:]), verify[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    args.repeats = max(2, args.repeats)  # the first run (imports, warm-up) is left out
    schema.register()
    tmp = Path(tempfile.mkdtemp(prefix="verify_cost_"))
    print(
        f"{'experiment':16s} {'verify':18s} {'checks (ms)':>12s} {'tape (ms)':>10s} {'ratio':>7s} {'first (ms)':>11s}"
    )
    for exp in ["seed_cubic", "seed_persistent", "checks_matmul", "checks_kinks"]:
        for mode in ["auto", "finite_difference"]:
            v, t, first = timings(composed([f"experiment={exp}", f"verify={mode}"]), tmp / exp / mode, args.repeats)
            print(f"{exp:16s} {mode:18s} {v * 1e3:12.2f} {t * 1e3:10.2f} {v / t:7.1f} {first * 1e3:11.1f}")
    print(f"\n{'elements':>8s} {'target':24s} {'verify':18s} {'method':18s} {'checks (ms)':>12s}")
    for n in (10, 100, 1000):
        for y, mode in (
            ("sin(x) * x", "auto"),
            ("sin(x) * x", "finite_difference"),
            ("reduce_sum(sin(x) * x)", "auto"),
        ):
            cfg = {
                "function": {"inputs": ["x"], "steps": {"y": y}},
                "point": {"x": {"linspace": [0.1, 1.0, n]}},
                "derivatives": [{"target": "y", "sources": "x"}],
                "verify": mode,
            }
            folder = tmp / f"n{n}-{mode}-{len(y)}"
            v, _, _ = timings(cfg, folder, max(3, args.repeats // 2))
            method = json.loads((folder / "0" / "results.json").read_text())["derivatives"][0]["check"]["method"]
            print(f"{n:8d} {y:24s} {mode:18s} {method:18s} {v * 1e3:12.1f}")


if __name__ == "__main__":
    main()
