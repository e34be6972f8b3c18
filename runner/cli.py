"""The command line: Hydra composes the config, `runner.job.run` does the work.

Nothing here imports TensorFlow, so `--help`, `--cfg job` and refused configs answer
at once. The process exits with the job's code (see `runner.job`), or for a sweep with 1
when any job did not complete as declared.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from runner import folders, job, schema, sweep


def config_dir() -> Path:
    """The configs: shipped inside the package (wheel), or `conf/` beside it (checkout)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"runner's configs are missing: looked in {here / 'conf'} and {here.parent / 'conf'}")


schema.register()
folders.register()  # ${pid:} and ${first:} for collision-safe, resumable folders
_exit_code = 0


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_entry(cfg: DictConfig) -> int:
    global _exit_code
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    name = cfg.get("name") or hc.runtime.choices.get("experiment") or "run"
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    code = job.run(container, Path(hc.runtime.output_dir), name=str(name))
    _exit_code = max(_exit_code, code)
    return code


def main() -> None:
    _hydra_entry()
    sys.exit(max(_exit_code, sweep.last_exit_code))
