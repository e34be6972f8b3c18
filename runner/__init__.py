"""runner: a declarative experiment runner for TensorFlow's automatic differentiation.

The command line is `python -m runner` (see :mod:`runner.cli`); `runner.job` drives one
job through the stages, one package each: `config` (schema -> validated spec) ->
`language` (the steps' expressions) -> `tape` (the GradientTape program) -> `verify`
(every derivative checked) -> `record` (results.json); `sweep` sits around the jobs of a
sweep. Nothing here is imported eagerly.
"""

__version__ = "0.1.0"
