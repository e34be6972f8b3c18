"""submitit's reading of `sacct` for a cancelled array (runner/sweep/slurm_states.py): the
accounting lines below are as SLURM 22 printed them on the test cluster after a `scancel -n`
of a `--array=0-5%1` job whose task 0 had finished (`sacct -o JobID,State,NodeList
--parsable2`); the pending tasks' record came out under the array's bare id."""

from __future__ import annotations

import pytest

from runner.sweep import slurm_states

submitit_slurm = pytest.importorskip("submitit.slurm.slurm")

BARE = "JobID|State|NodeList\n540_0|COMPLETED|vm\n540_0.batch|COMPLETED|vm\n540|CANCELLED by 0|None assigned\n"
RANGED = "JobID|State|NodeList\n542_0|COMPLETED|vm\n542_[1-5%1]|CANCELLED by 0|None assigned\n"


def _watcher(array: str) -> object:
    watcher = submitit_slurm.SlurmInfoWatcher()
    watcher._registered.update(f"{array}_{i}" for i in range(6))
    return watcher


def test_submitits_own_parser_leaves_the_tasks_of_a_bare_id_unknown():
    slurm_states.install()
    own = submitit_slurm.SlurmInfoWatcher.read_info.__wrapped__
    stats = own(_watcher("540"), BARE)
    assert "540_3" not in stats  # UNKNOWN to submitit: an unfinished state, waited for for ever


@pytest.mark.parametrize("array, text", [("540", BARE), ("542", RANGED)])
def test_every_task_of_a_cancelled_array_has_a_finished_state(array, text):
    slurm_states.install()
    slurm_states.install()  # once: a second install does not wrap again
    watcher = _watcher(array)
    watcher._info_dict.update(watcher.read_info(text))
    assert watcher.get_state(f"{array}_0", mode="cache") == "COMPLETED"
    for task in range(1, 6):
        assert watcher.get_state(f"{array}_{task}", mode="cache") == "CANCELLED by 0"
        assert watcher.is_done(f"{array}_{task}", mode="cache")


def test_only_launchers_that_submit_to_slurm_install_it():
    from omegaconf import OmegaConf

    def config(target: str) -> object:
        return OmegaConf.create({"hydra": {"launcher": {"_target_": target}}})

    assert slurm_states.submits_to_slurm(
        config("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
    )
    assert slurm_states.submits_to_slurm(config("hydra_plugins.runner_launcher.runner_slurm.RunnerSlurmLauncher"))
    assert not slurm_states.submits_to_slurm(config("hydra_plugins.runner_launcher.runner_launcher.RunnerLauncher"))
