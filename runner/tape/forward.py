"""The forward pass: every step of a job computed in order, written once for every caller.

The tape program runs it under the shared tape (steps listed in `tape.stop_recording`
paused), requests that recompute the function run it again from their sources (those and
the held steps fixed), and the finite-difference check runs it in float64 at moved points.
Each caller brings its own evaluators (`runner.language.lowering`) and, for a function that
is the user's own code, that code (`runner.tape.user_code`), so this module imports no
TensorFlow itself.
"""

from __future__ import annotations

from typing import Any, Callable, Collection, ContextManager, Dict, Mapping, Optional, Protocol, Sequence, Tuple

from runner.config.spec import StepSpec

Evaluator = Callable[[Dict[str, Any]], Any]


class Code(Protocol):
    """The user's code (`runner.tape.user_code.UserCode`): its outputs by name, from the inputs."""

    @property
    def outputs(self) -> Tuple[str, ...]: ...

    def __call__(self, env: Mapping[str, Any]) -> Dict[str, Any]: ...


class StepFailed(Exception):
    """A step raised; `step` names it and `error` is what was raised (TensorFlow's own)."""

    def __init__(self, step: str, error: BaseException):
        super().__init__(f"{type(error).__name__} in step {step!r}: {error}")
        self.step = step
        self.error = error


def run_steps(
    steps: Sequence[StepSpec],
    evaluators: Mapping[str, Evaluator],
    env: Dict[str, Any],
    fixed: Optional[Mapping[str, Any]] = None,
    paused: Collection[str] = (),
    pause: Optional[Callable[[], ContextManager[Any]]] = None,
) -> Dict[str, Any]:
    """Compute each step into `env` (which holds the inputs) and return it.

    A step in `fixed` takes that value instead of being computed (a source held by a
    recomputing request, a held step); a step in `paused` is computed inside `pause()`
    (the shared tape's `stop_recording`). A step that raises raises `StepFailed`.
    """
    for step in steps:
        if fixed is not None and step.name in fixed:
            env[step.name] = fixed[step.name]
            continue
        try:
            if pause is not None and step.name in paused:
                with pause():
                    env[step.name] = evaluators[step.name](env)
            else:
                env[step.name] = evaluators[step.name](env)
        except Exception as err:
            raise StepFailed(step.name, err) from err
    return env


# The step name a failure of the user's code is logged under (`error.step`).
CALLABLE_STEP = "function.callable"


def run_function(
    steps: Sequence[StepSpec],
    evaluators: Mapping[str, Evaluator],
    env: Dict[str, Any],
    code: Optional[Code] = None,
    fixed: Optional[Mapping[str, Any]] = None,
    paused: Collection[str] = (),
    pause: Optional[Callable[[], ContextManager[Any]]] = None,
) -> Dict[str, Any]:
    """The whole function: the user's code (when there is one) on the inputs in `env`, then
    the steps, as `run_steps`. Outputs in `fixed` keep those values; when all are fixed the
    code is not called. What the code raises is raised as `StepFailed` of `CALLABLE_STEP`."""
    if code is not None:
        held = {o: fixed[o] for o in code.outputs if fixed is not None and o in fixed}
        if len(held) < len(code.outputs):
            try:
                env.update(code(env))
            except Exception as err:
                raise StepFailed(CALLABLE_STEP, err) from err
        env.update(held)
    return run_steps(steps, evaluators, env, fixed=fixed, paused=paused, pause=pause)
