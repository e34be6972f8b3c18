"""`python -m runner.rerun RUN_DIR`: run a logged run again and say whether it reproduces.

The run's resolved config is read from `RUN_DIR/.hydra/config.yaml` (Hydra saves it with
every run), run again in `RUN_DIR/.rerun/` with the same seed and determinism settings,
and every value and derivative is compared with the logged one: `identical` (the same
bits, as logged), `within tolerance` (`--rtol`/`--atol`, with the largest difference), or
`MISMATCH`. The status, error type and verdict on `expect` must match too.

Exit codes: 0 reproduced, 1 a mismatch, 2 not a run folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, cast

import numpy as np

from runner.record import runlog

RERUN_DIR = ".rerun"


def load_value(folder: Path, v: Any) -> Any:
    """A logged value as NumPy (arrays.npz references resolved), a dict of them, or None."""
    if v is None:
        return None
    if isinstance(v, dict) and "array" in v:
        with np.load(folder / v["array"]["file"]) as npz:
            return npz[v["array"]["key"]]
    if isinstance(v, dict):
        return {k: load_value(folder, x) for k, x in v.items()}
    return np.asarray(_finite_floats(v))


def _finite_floats(v: Any) -> Any:
    if isinstance(v, list):
        return [_finite_floats(x) for x in v]
    if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    return v


def compare(old: Any, new: Any, rtol: float, atol: float) -> Tuple[str, Optional[float]]:
    """("identical" | "within tolerance" | "MISMATCH", largest absolute difference)."""
    if isinstance(old, dict) or isinstance(new, dict):
        if not (isinstance(old, dict) and isinstance(new, dict)) or old.keys() != new.keys():
            return "MISMATCH", None
        parts = [compare(old[k], new[k], rtol, atol) for k in old]
        worst = max(parts, key=lambda p: ["identical", "within tolerance", "MISMATCH"].index(p[0]))
        diffs = [d for _, d in parts if d is not None]
        return worst[0], (max(diffs) if diffs else None)
    if old is None or new is None:
        return ("identical", None) if old is None and new is None else ("MISMATCH", None)
    if old.shape != new.shape:
        return "MISMATCH", None
    if np.array_equal(old, new, equal_nan=old.dtype.kind == "f" and new.dtype.kind == "f"):
        return "identical", 0.0
    a, b = old.astype(np.float64), new.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
        same_nonfinite = (np.isnan(a) & np.isnan(b)) | (a == b)
        ok = same_nonfinite | (diff <= atol + rtol * np.abs(a))
    largest = float(np.nanmax(np.where(same_nonfinite, 0.0, diff))) if diff.size else 0.0
    return ("within tolerance" if bool(np.all(ok)) else "MISMATCH"), largest


def items(folder: Path, record: Dict[str, Any]) -> Dict[str, Any]:
    """Every value and derivative of a run log, by a label such as `value x`, `gradient dy/dx`."""
    out = {f"value {k}": load_value(folder, v) for k, v in record["values"].items()}
    out.update({f"{d['kind']} {d['name']}": load_value(folder, d["value"]) for d in record["derivatives"]})
    return out


def rerun(run_dir: Path, rtol: float = 0.0, atol: float = 0.0) -> Tuple[int, List[str]]:
    """Run `run_dir` again; return the exit code and the report's lines."""
    from omegaconf import OmegaConf

    from runner import job
    from runner.sweep import folders

    folders.register()
    old = json.loads((run_dir / runlog.RESULTS_FILE).read_text())
    cfg = cast(Dict[str, Any], OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True))
    cfg["resume"] = None
    # the numbers are what is compared; no need to redraw the pictures
    cfg["log"] = {**(cfg.get("log") or {}), "tensorboard": False, "plots": False}
    out_dir = run_dir / RERUN_DIR
    shutil.rmtree(out_dir, ignore_errors=True)
    job.run(cfg, out_dir, name=old.get("experiment") or "rerun", echo=False)
    new = json.loads((out_dir / runlog.RESULTS_FILE).read_text())

    lines = [f"rerun of {run_dir} ({old.get('experiment')}) in {out_dir}"]
    failed = False
    for label, want, got in [
        ("status", old["status"], new["status"]),
        ("error", (old.get("error") or {}).get("type"), (new.get("error") or {}).get("type")),
        ("expect met", old["expect"]["met"], new["expect"]["met"]),
    ]:
        same = want == got
        failed |= not same
        lines.append(
            f"  {label:<24} {'identical' if same else 'MISMATCH'}" + ("" if same else f": logged {want!r}, now {got!r}")
        )
    old_items, new_items = items(run_dir, old), items(out_dir, new)
    for label in dict.fromkeys([*old_items, *new_items]):
        if label not in old_items or label not in new_items:
            failed = True
            lines.append(f"  {label:<24} MISMATCH: {'not logged before' if label not in old_items else 'missing now'}")
            continue
        verdict, diff = compare(old_items[label], new_items[label], rtol, atol)
        failed |= verdict == "MISMATCH"
        detail = (
            ""
            if verdict == "identical" or diff is None
            else f" (largest |difference| {diff:.3g}; rtol {rtol:g}, atol {atol:g})"
        )
        lines.append(f"  {label:<24} {verdict}{detail}")
    for key in ("python", "tensorflow", "numpy", "platform", "cpu"):
        was, now = old.get("environment", {}).get(key), new.get("environment", {}).get(key)
        if was != now:
            lines.append(f"  note: {key} was {was}, now {now}")
    lines.append("reproduced" if not failed else "NOT reproduced")
    return (1 if failed else 0), lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.rerun", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (holding results.json and .hydra/config.yaml)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: bit-identical)")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: bit-identical)")
    args = parser.parse_args(argv)
    if not (args.run_dir / runlog.RESULTS_FILE).is_file() or not (args.run_dir / ".hydra" / "config.yaml").is_file():
        print(f"not a run folder: {args.run_dir} (needs results.json and .hydra/config.yaml)", file=sys.stderr)
        return 2
    code, lines = rerun(args.run_dir, args.rtol, args.atol)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
