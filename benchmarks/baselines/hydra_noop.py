"""Baseline for B2: Hydra's floor, a @hydra.main app whose task does nothing.

    python benchmarks/baselines/hydra_noop.py -m x=range(0,N)

Its config is one key (`x: 0`) and Hydra's defaults: the basic sweeper and the basic
launcher, which compose each job's config and write its `.hydra/` files. Whatever a
sweep of this app costs per job is what Hydra costs before any work is done.
"""

from dataclasses import dataclass

import hydra
from hydra.core.config_store import ConfigStore


@dataclass
class NoopConf:
    x: int = 0


ConfigStore.instance().store(name="noop", node=NoopConf)


@hydra.main(version_base="1.3", config_path=None, config_name="noop")
def main(cfg: NoopConf) -> None:
    pass


if __name__ == "__main__":
    main()
