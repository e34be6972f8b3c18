"""The real SLURM cluster of the tests marked `slurm`: the one-node cluster `.ci/slurm-up`
starts (or any cluster `sinfo` reaches). The tests never start or stop it; they only cancel
the jobs they submitted, which they recognise by a job name of their own."""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import List, Optional, Tuple

# a node in one of these states takes jobs: now, or once the running ones end (a node busy
# with someone else's jobs is a working cluster; its jobs queue)
USABLE = ("idle", "mixed", "allocated", "completing")


def _run(args: List[str], timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def find_partition() -> Tuple[Optional[str], str]:
    """(the name of an up partition with a node that takes jobs, the default one first, or None; what
    `sinfo` said, in one line). Without a controller sinfo retries for about 10 s."""
    if shutil.which("sinfo") is None:
        return None, "sinfo is not installed"
    try:
        out = _run(["sinfo", "-h", "-o", "%P|%a|%T|%N"], timeout=60)
    except subprocess.TimeoutExpired:
        return None, "sinfo did not answer in 60 s"
    said = (out.stdout + out.stderr).strip().replace("\n", "; ")[:300] or "nothing"
    usable = []
    for line in out.stdout.splitlines() if out.returncode == 0 else []:
        name, avail, state = (line.split("|") + ["", ""])[:3]
        if avail == "up" and state.rstrip("*~#!%$@^-") in USABLE:
            usable.append(name)
    usable.sort(key=lambda name: not name.endswith("*"))  # sinfo marks the default with '*'
    return (usable[0].rstrip("*") if usable else None), f"sinfo: {said}"


def jobs_named(name: str) -> List[str]:
    """The ids of the queued or running jobs called `name` (array tasks included)."""
    out = _run(["squeue", "-h", "-n", name, "-o", "%i"])
    if out.returncode != 0:
        raise RuntimeError(f"squeue failed: {out.stderr.strip()}")
    return out.stdout.split()


def cancel(name: str, timeout: float = 60) -> List[str]:
    """Cancel every job called `name` and wait until none is left in the queue; returns the
    jobs that were still there (none after a test that waited for its own)."""
    left = jobs_named(name)
    if left:
        _run(["scancel", "-n", name])
        deadline = time.monotonic() + timeout
        while jobs_named(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs {name} still queued {timeout:.0f} s after scancel: {jobs_named(name)}")
            time.sleep(0.5)
    return left


def states(name: str) -> List[str]:
    """The accounting states of the jobs called `name` (`sacct`, one per array task, or per
    range of array tasks that never started); a cancelled job's is `CANCELLED`
    (sacct's "CANCELLED by UID" cut to its first word)."""
    # by the jobs' ids: sacct's --name leaves out, at times, the record of the array tasks
    # that never started (an array's `638_[1-5%1]`, `-j 638` lists it)
    ids = _sacct(["-o", "JobID", "--name", name, "-S", "now-1day"])
    arrays = sorted({i.partition("_")[0] for i in ids})
    return _sacct(["-o", "State", *(a for array in arrays for a in ("-j", array))]) if arrays else []


def _sacct(args: List[str]) -> List[str]:
    """The first word of each line of `sacct -n -X -P ARGS`."""
    out = _run(["sacct", "-n", "-X", "-P", *args])
    if out.returncode != 0:
        raise RuntimeError(f"sacct failed: {out.stderr.strip()}")
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
