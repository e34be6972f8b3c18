"""Example user code for `function.callable`, run only when trusted: `RUNNER_TRUST=runner.examples`.

Each module is what a user writes in their own package; the experiments that call them are
in `conf/experiment/` (docs/your-code.md walks through each).
"""
