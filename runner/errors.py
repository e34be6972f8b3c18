"""The errors a user can cause, each naming the config key at fault."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot run: refused before TensorFlow is imported.

    `key` is the dotted config key at fault (``function.steps.z``), `message` says what is
    wrong in one line, and `detail` (optional) is shown below it, such as the expression
    with a caret under the fault.
    """

    def __init__(self, key: str, message: str, detail: str | None = None):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message
        self.detail = detail

    def headline(self) -> str:
        return f"config error: {self.key}: {self.message}"
