"""The check's time against the tape's, for check_scale.py (V1) and projection_cost.py (V2):
one job run `repeats + 1` times in this process, the first (imports, TensorFlow's warm-up)
left out."""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner import job  # noqa: E402


def tape_and_check(
    cfg: Mapping[str, Any], repeats: int, refuse: Callable[[Dict[str, Any]], Optional[str]]
) -> Tuple[float, float, Dict[str, Any]]:
    """The medians of the tape's time (`forward_s + derivatives_s`) and of the check's
    (`verify_s`), and the last run's check record; `refuse(check)` says why a run's check is
    not the one measured (the script stops, saying so), or None."""
    tape, check = [], []
    rec: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            out = Path(tmp) / str(i)
            job.run(cfg, out, echo=False)
            log = json.loads((out / "results.json").read_text())
            rec = log["derivatives"][0]["check"]
            why = refuse(rec)
            if why:
                raise SystemExit(f"{why}: {rec.get('reason')}")
            if i:
                t = log["timing"]
                tape.append(t["forward_s"] + t["derivatives_s"])
                check.append(t["verify_s"])
    return statistics.median(tape), statistics.median(check), rec
