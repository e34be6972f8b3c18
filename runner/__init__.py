"""runner: a declarative experiment runner for TensorFlow's automatic differentiation.

The command line is `python -m runner` (see :mod:`runner.cli`); a job's path reads
top to bottom through `schema` -> `spec` (with `expression`, `points`) -> `program`
(with `lowering`) -> `runlog`, driven by `job`.
"""

__version__ = "0.1.0"
