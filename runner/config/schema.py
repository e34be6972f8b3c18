"""The config schema: typed dataclasses registered in Hydra's ConfigStore.

This module is the single source of truth for what a config may contain. Hydra merges every
YAML file onto `RunnerConfig`, so a misspelt key (``tape.persistant``) or a value of the
wrong type (``tape.persistent: maybe``) fails at composition, naming the key, before any job
runs. Fields whose shape is free-form (`function.inputs` may be a mapping or a list, points
may be numbers, nested lists or generators) are typed ``Any`` here and checked, with the
same care, in :mod:`runner.config.spec`.

Nothing here imports TensorFlow, nor Hydra until `register` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional


class Kind(str, Enum):
    """What a derivative request computes."""

    gradient = "gradient"
    jacobian = "jacobian"
    batch_jacobian = "batch_jacobian"
    hessian = "hessian"
    jvp = "jvp"
    hvp = "hvp"


class Unconnected(str, Enum):
    """`tf.UnconnectedGradients`: what a source the target does not depend on gives."""

    none = "none"
    zero = "zero"


class Verify(str, Enum):
    """How each derivative is checked by a second method (see docs/verification.md)."""

    auto = "auto"  # symbolic where the function is elementwise, else finite differences
    symbolic = "symbolic"
    finite_difference = "finite_difference"
    off = "off"


class Console(str, Enum):
    """How much a run prints (`log.console`; see docs/sweeps.md, "What a sweep prints")."""

    quiet = "quiet"  # a single run: its status line; a sweep: the final table and failed jobs
    normal = "normal"  # a single run: its table; a sweep: one line per job and the final table
    verbose = "verbose"  # a sweep also prints each job's table and Hydra's launch lines


class Compile(str, Enum):
    """How the tape program runs: eagerly, as a `tf.function`, or XLA-compiled."""

    eager = "eager"
    function = "function"
    xla = "xla"


# Keys an input's options mapping may hold (see `function.inputs`).
INPUT_OPTION_KEYS = ("kind", "dtype", "trainable")
INPUT_KINDS = ("constant", "variable")
DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64")


@dataclass
class FunctionConfig:
    """The function under study.

    inputs: a mapping name -> {kind: constant|variable, dtype: float32, trainable: true},
        or a plain list of names (float32 constants).
    steps: ordered name -> expression; each may use the inputs, the callable's outputs
        and earlier steps.
    """

    inputs: Any = None
    steps: Dict[str, str] = field(default_factory=dict)
    # the user's own code, run before the steps (docs/your-code.md): a dotted path such as
    # mylib.losses.huber, or a mapping with _target_ (Hydra's instantiate) giving a callable;
    # only from modules trusted by RUNNER_TRUST in the environment
    callable: Any = None
    # the name of the tensor the callable returns (default y), or a list of names when it
    # returns a mapping name -> tensor
    output: Any = None


@dataclass
class TapeConfig:
    """Options of `tf.GradientTape` and of how it is used."""

    persistent: bool = False
    watch_accessed_variables: bool = True
    # null: watch every constant input; or a list of input names.
    watch: Optional[List[str]] = None
    # steps computed inside `tape.stop_recording()`.
    stop_recording: List[str] = field(default_factory=list)
    compile: Compile = Compile.eager


@dataclass
class DerivativeConfig:
    """One derivative request; requests run in order on the same tape."""

    target: str = "???"
    sources: Any = "???"  # a name, or a list of names
    name: Optional[str] = None  # default: "dy/dx"
    kind: Kind = Kind.gradient
    order: int = 1
    output_gradients: Any = None
    unconnected: Unconnected = Unconnected.none
    tangents: Any = None
    parallel_iterations: Optional[int] = None
    experimental_use_pfor: bool = True


@dataclass
class ExpectConfig:
    """A declared outcome; a run that differs from it has failed."""

    error: Optional[str] = None  # e.g. RuntimeError
    derivatives: Dict[str, Any] = field(default_factory=dict)  # name -> expected value
    rtol: float = 1e-6
    atol: float = 1e-6
    # "pass": every derivative's independent check (see `verify`) must pass
    checks: Optional[str] = None


@dataclass
class LogConfig:
    """How the run log is written."""

    # tensors with more elements than this go into arrays.npz instead of results.json
    max_inline_elements: int = 10000
    # show TensorFlow's C++ start-up messages (hidden by default)
    tf_verbose: bool = False
    # write TensorBoard event files (scalars, histograms, hparams) into the run folder
    tensorboard: bool = True
    # plot.png for a run over a 1-D grid, sweep_plot.png for a sweep (matplotlib). null:
    # both, except a plot per job inside a sweep (~0.25 s each); true: also those; false: none
    plots: Optional[bool] = None
    # what the console shows: quiet | normal | verbose (a sweep's per-job tables)
    console: Console = Console.normal
    # also log each run to MLflow (pip install -e ".[mlflow]"; docs/tracking.md): null or
    # false: no; true: MLflow's default store (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    # in the working folder); or a tracking URI (sqlite:///PATH, http://host:5000, ...)
    mlflow: Any = None
    # the MLflow experiment; default: $MLFLOW_EXPERIMENT_NAME, else the runner's experiment
    mlflow_experiment: Optional[str] = None


@dataclass
class LimitsConfig:
    """Bounds on the work one job may ask for, checked before TensorFlow starts.

    A job above one is refused (exit 2) in one line saying what it would take, the limit and
    the key that raises it: `python -m runner ... limits.memory=16GiB`. Why each default is
    what it is: docs/configs.md, "Limits".
    """

    # the job's estimated memory (runner/language/shapes.py): a whole number of bytes, or a
    # size such as 512MiB, 4GiB, 8GB (KiB/MiB/GiB/TiB: powers of 1024; kB/MB/GB/TB: of 1000)
    memory: str = "4GiB"
    # the highest order of a derivative: the tape's cost grows ~2.3-fold with each order
    order: int = 8
    # the most steps in function.steps
    steps: int = 1000
    # the finite-difference check's work: runs of the function times the elements each run
    # computes (every step counting at least 2,000, TensorFlow's fixed cost of running one)
    check_evaluations: int = 10_000_000_000


@dataclass
class RunnerConfig:
    """The whole composed config of one job."""

    # shown in the console and the run log; default: the chosen experiment's name
    name: Optional[str] = None
    function: FunctionConfig = field(default_factory=FunctionConfig)
    point: Dict[str, Any] = field(default_factory=dict)
    tape: TapeConfig = field(default_factory=TapeConfig)
    derivatives: List[DerivativeConfig] = field(default_factory=list)
    # nothing declared by default; a mapping (not null) so that the command line can add to it:
    # `expect.error=RuntimeError`, `expect.checks=pass`
    expect: ExpectConfig = field(default_factory=ExpectConfig)
    # check every derivative by a second method: auto | symbolic | finite_difference | off
    verify: Verify = Verify.auto
    log: LogConfig = field(default_factory=LogConfig)
    # seeds Python, NumPy and TensorFlow before the program runs (runner/tape/reproducibility.py)
    seed: int = 0
    # tf.config.experimental.enable_op_determinism(): bit-identical re-runs
    determinism: bool = True
    # a sweep folder to resume (`-m ... resume=outputs/multirun/DATE/TIME`): the sweep runs
    # in that folder and skips each job whose results.json is complete for the same config
    resume: Optional[str] = None
    # bounds on memory, order, steps and the check's work (raise one to run a larger job)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


def register() -> None:
    """Register the schema so that `conf/config.yaml` can name it in its defaults list, and
    the job log that appears only when something is logged (`hydra/job_logging: runner`)."""
    # imported here so that the enums (read by runner/config/kinds.py) come without Hydra
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    # Only names a user may choose go in a config group: `--help` lists every option of
    # `tape`, so the schema is not stored there (RunnerConfig types `tape` already).
    cs.store(name="runner_schema", node=_SchemaNode)
    cs.store(group="hydra/job_logging", name="runner", node=JOB_LOGGING, package="hydra.job_logging")


@dataclass
class _SchemaNode(RunnerConfig):
    """RunnerConfig with a defaults list (Hydra drops the key from the composed config):
    first in the primary config's defaults, so an experiment's own `override
    /hydra/job_logging: ...`, or `hydra/job_logging=...` on the command line, wins."""

    defaults: List[Any] = field(default_factory=lambda: [{"override /hydra/job_logging": "runner"}, "_self_"])


# Hydra's default job logging (its `default` option, as it is) with the file handler's `delay`:
# `<job name>.log` is created when something is logged, not empty in every run folder.
JOB_LOGGING: Dict[str, Any] = {"defaults": ["default", "_self_"], "handlers": {"file": {"delay": True}}}
