"""runner's Hydra plugins: a launcher and a sweeper that compose a sweep's config once.

Hydra's basic sweeper and launcher compose every job's config from scratch (about 140 ms
each on a small machine, twice per job: once to validate the batch, once to run it). Jobs
whose overrides only change values share everything else, so these plugins compose once
per set of config-group choices and apply each job's value overrides to a copy. Jobs still
run in the launching process, one after another, with the same output folders, `.hydra/`
files, callbacks and `JobReturn`s as the basic launcher gives.

Layout as in Hydra's own plugins: `config.py` (the config dataclasses, registered in the
ConfigStore), thin plugin classes (`runner_launcher.py`, `runner_sweeper.py`) and the work
in `_compose.py` and `_core.py`, which Hydra's plugin scan does not import.
"""
