"""One job, top to bottom: config -> validated spec -> tape program -> run log.

`run` is a plain function of a composed config and an output folder; the Hydra entry
point (:mod:`runner.cli`) only calls it, and tests call it directly.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from runner.config import settings
from runner.config import spec as specs
from runner.errors import ConfigError
from runner.record import artifacts, console, runlog
from runner.record.mlflow_run import JobContext
from runner.sweep import resume
from runner.tape import reproducibility, startup
from runner.tape.forward import CALLABLE_STEP
from runner.verify.expectations import judge

# Exit codes (see docs/run-log.md, "Outcomes and exit codes").
EXIT_OK = 0  # completed as declared
EXIT_NOT_AS_DECLARED = 1  # an unexpected error, a missing declared error, or a value mismatch
EXIT_CONFIG_ERROR = 2  # refused before TensorFlow ran


def run(
    cfg: Mapping[str, Any],
    output_dir: Path,
    name: str = "run",
    echo: bool = True,
    in_sweep: bool = False,
    context: Optional[JobContext] = None,
) -> int:
    """Run one job and write its `results.json` into `output_dir`; return the exit code.

    `echo`: print as `log.console` says (`shown`); `in_sweep`: a job of a sweep, whose
    progress line (runner/sweep/progress.py) says how it went unless `log.console=verbose`.
    `context`: its overrides and sweep, for `log.mlflow` (runner/record/mlflow_run.py).
    """
    context = context or JobContext()
    started = time.time()
    t0 = time.perf_counter()
    digest = None
    show = shown(cfg, in_sweep) if echo else ""
    echo = bool(show) or (echo and not in_sweep)  # a refusal of a single run is printed even when quiet
    try:
        specs.screen(cfg)
        # the settings alone first: a job a resumed sweep already finished is not built again
        run_settings = settings.build(cfg)
        if run_settings.resume:
            digest = resume.config_digest(cfg)
        done, why = resume.kept(output_dir, digest) if digest else (None, None)
        if done is not None:
            if run_settings.log.mlflow is not None and not (done.get("tracking") or {}).get("mlflow", {}).get("run_id"):
                _track(done, cfg, output_dir, run_settings.log, context)  # finished, but not in MLflow yet
            if show:
                print(f"{done['experiment']}: skipped, complete in {output_dir} (resume)")
            return EXIT_OK if done["expect"]["met"] else EXIT_NOT_AS_DECLARED
        if why and run_settings.log.console != "quiet" and (echo or in_sweep):
            # a log is there but cannot be kept (edited, cut short, other inputs): said on
            # stderr in a sweep too, beside its one line per job
            print(f"{name}: {why}; running it again (resume)", file=sys.stderr)
        spec = specs.build(cfg, name=name, run_settings=run_settings)
        digest = digest or resume.config_digest(cfg)  # its files are known good now: bounded
    except ConfigError as err:
        return _refuse(err, cfg, output_dir, name, started, t0, digest, echo, context)
    t_spec = time.perf_counter()

    tf, tf_startup = startup.load(run_settings.log.tf_verbose)  # only once the config is known good
    from runner.tape import program

    t_import = time.perf_counter()
    seeding = reproducibility.apply(tf, run_settings.seed, run_settings.determinism)
    code, code_failure = None, None
    if spec.callable is not None:
        try:
            spec, code, code_failure = _user_code(spec)
        except ConfigError as err:  # cannot be imported, is not callable, owns no variable asked for
            return _refuse(err, cfg, output_dir, name, started, t0, digest, echo, context)
    if code_failure is None:
        outcome = program.run(spec, code)
    else:  # its first call, at the point, raised: the run's error
        outcome = program.Outcome(error=code_failure)
    t_verify = time.perf_counter()
    checks = _verify(spec, outcome, code)
    verify_s = time.perf_counter() - t_verify
    error_type = outcome.error.type if outcome.error else None
    verdict = judge(spec.expect, error_type, {d.request.name: d.value for d in outcome.derivatives}, checks)

    enc = runlog.Encoder(run_settings.log.max_inline_elements)
    record: Dict[str, Any] = {
        "schema_version": runlog.SCHEMA_VERSION,
        "experiment": spec.name,
        "config_sha256": digest,
        "status": "error" if outcome.error else "ok",
        "values": {k: enc.value(f"values/{k}", v) for k, v in outcome.values.items()},
        "derivatives": [
            runlog.derivative_record(
                enc, d.request.name, d.request.kind, d.request.target, d.request.sources, d.request.order, d.value
            )
            for d in outcome.derivatives
        ],
        "error": _error_record(outcome.error),
        "warnings": outcome.warnings,
        "tape": outcome.tape,
        "expect": {
            "declared": spec.expect.declared() if spec.expect else None,
            "met": verdict.met,
            "mismatches": verdict.mismatches,
        },
        "environment": {
            **runlog.environment(tf.__version__),
            "reproducibility": seeding,
            "tensorflow_startup": tf_startup.splitlines(),
        },
        "timing": {
            "started": started,
            "validate_s": t_spec - t0,
            "import_tensorflow_s": t_import - t_spec,
            **{f"{k}_s": v for k, v in outcome.seconds.items()},
            "total_s": time.perf_counter() - t0,
        },
    }
    if code is not None:
        record["code"] = code.record()
    for rec in record["derivatives"]:
        if rec["name"] in checks:
            rec["check"] = _check_record(enc, rec["name"], checks[rec["name"]])
    record["timing"]["verify_s"] = verify_s
    record["artifacts"] = artifacts.write(output_dir, run_settings.log, spec, outcome, record["timing"], checks)
    record["timing"]["total_s"] = time.perf_counter() - t0
    runlog.write(output_dir, record, enc.arrays)  # last: a complete results.json marks the job done
    if run_settings.log.mlflow is not None:  # after: a store that fails loses no local log
        _track(record, cfg, output_dir, run_settings.log, context)
    if show == "table":
        print(console.table(record, str(output_dir)))
    elif show == "status":
        print(console.status_line(record))
    return EXIT_OK if verdict.met else EXIT_NOT_AS_DECLARED


def shown(cfg: Mapping[str, Any], in_sweep: bool) -> str:
    """What a job prints under `log.console`: "table" (a single run; each job of a verbose
    sweep), "status" (a quiet single run: its status line) or "" (a job of a sweep, which its
    progress line reports). Read from the raw config: a refused `log.console` counts as normal."""
    log = cfg.get("log") if isinstance(cfg, Mapping) else None
    level = log.get("console") if isinstance(log, Mapping) else None
    level = getattr(level, "value", level)
    if in_sweep:
        return "table" if level == "verbose" else ""
    return "status" if level == "quiet" else "table"


def _refuse(
    err: ConfigError,
    cfg: Mapping[str, Any],
    output_dir: Path,
    name: str,
    started: float,
    t0: float,
    digest: Optional[str],
    echo: bool,
    context: JobContext,
) -> int:
    """A refused config: its log (and its MLflow run, when `log.mlflow` itself is valid), its
    one line (and detail) on stderr, exit 2."""
    record = _log_config_error(
        err, cfg, output_dir, name, started, t0, digest or resume.config_digest(cfg, read_files=False)
    )
    try:
        log = settings.build(cfg).log
    except ConfigError:
        log = None
    if log is not None and log.mlflow is not None:
        _track(record, cfg, output_dir, log, context)
    if echo:
        print(err.headline(), file=sys.stderr)
        if err.detail:
            print("    " + err.detail.replace("\n", "\n    "), file=sys.stderr)
    return EXIT_CONFIG_ERROR


def _track(record: Dict[str, Any], cfg: Mapping[str, Any], output_dir: Path, log: Any, context: JobContext) -> None:
    """Log the finished job to MLflow; note how it went in its run log (`tracking.mlflow`)."""
    from runner.record import mlflow_run

    entry = mlflow_run.log_job(record, cfg, output_dir, log.mlflow, log.mlflow_experiment, context)
    record["tracking"] = {"mlflow": entry}
    if "warning" in entry:
        record["warnings"] = [*(record.get("warnings") or []), entry["warning"]]
    runlog.write(output_dir, record, {})  # results.json again, atomically: arrays.npz is as it was


def _user_code(spec: Any) -> Tuple[Any, Any, Any]:
    """The job's own code, imported and, where it needs it, called once at the point
    (runner/tape/user_code.py):
    (the spec with `trainable_variables` bound, the code, the first call's failure or None)."""
    from runner.tape import program, user_code

    code = user_code.load(spec)
    raised = code.build(spec) if code.needs_build(spec) else None
    if raised is not None:
        return spec, code, program.Failure(type(raised).__name__, program.message(raised), step=CALLABLE_STEP)
    return user_code.bind(spec, code), code, None


def _verify(spec: Any, outcome: Any, code: Any = None) -> Dict[str, Dict[str, Any]]:
    """Each derivative's independent check, by request name (none when `verify: off`)."""
    if spec.verify == "off" or not outcome.derivatives:
        return {}
    from runner.verify import check

    pairs = [(d.request, d.value) for d in outcome.derivatives]
    return {req.name: c for (req, _), c in zip(pairs, check.check_all(spec, outcome.values, pairs, code))}


def _check_record(enc: runlog.Encoder, name: str, check: Dict[str, Any]) -> Dict[str, Any]:
    """A check as strict JSON: non-finite errors spelt as strings, like every value."""
    out = {k: _json_safe(v) for k, v in check.items() if k != "reference"}
    if "reference" in check:
        out["reference"] = enc.value(f"checks/{name}", check["reference"])
    return out


def _json_safe(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return runlog.plain(float(v)) if isinstance(v, float) else v


def _declared(expect: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """What a (refused) config declared under `expect`: the keys it set, or None."""
    # as strict JSON: a refused NaN or 1e400 is logged the way results.json spells it
    declared = {k: _json_safe(expect[k]) for k in ("error", "derivatives", "checks") if expect and expect.get(k)}
    return declared or None


def _error_record(failure: Any) -> Optional[Dict[str, Any]]:
    if failure is None:
        return None
    rec = {"type": failure.type, "message": failure.message, "derivative": failure.derivative}
    if failure.step is not None:
        rec["step"] = failure.step
    return rec


def _log_config_error(
    err: ConfigError, cfg: Mapping[str, Any], output_dir: Path, name: str, started: float, t0: float, digest: str
) -> Dict[str, Any]:
    """A refused config still leaves a log, so a sweep's summary lists every job."""
    expect = cfg.get("expect") if isinstance(cfg.get("expect"), Mapping) else None
    record: Dict[str, Any] = {
        "schema_version": runlog.SCHEMA_VERSION,
        "experiment": cfg.get("name") or name,
        "config_sha256": digest,
        "status": "error",
        "values": {},
        "derivatives": [],
        "error": {"type": "ConfigError", "message": str(err), "derivative": None, "key": err.key},
        "expect": {"declared": _declared(expect), "met": False, "mismatches": ["config refused"]},
        "environment": runlog.environment(None),
        "timing": {"started": started, "total_s": time.perf_counter() - t0},
    }
    runlog.write(output_dir, record, {})
    return record
