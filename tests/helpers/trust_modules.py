"""Throwaway Python packages in a test's folder, for the trust tests.

Every module written here first leaves a marker file `imported-NAME` in the folder the
packages are written to, so a test tells from the disk (and from `sys.modules`) whether a
module it expects refused was ever imported. `mylib` is the trusted library of the tests,
with every way out of it an attacker would try (`mylib.os`, `mylib.system`, `mylib.tf`,
`mylib.fake` registered in `sys.modules` as `os`);
`mylibx` shares its first letters and must never be trusted by `RUNNER_TRUST=mylib`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Iterable

# module name -> its code, after the line that leaves its marker
MODULES: Dict[str, str] = {
    "mylib": (
        "import os\n"
        "from os import system\n"
        "import sys\n"
        "import tensorflow as tf\n"
        "sys.modules['mylib.fake'] = os  # a submodule that is really another module\n"
        "SCALE = 3.0\n"
        "stash = {}\n"
        "forget = stash.clear\n"
        "def square(x):\n"
        "    return x * x\n"
        "def power(n=2):\n"
        "    return lambda x: x ** n\n"
        "def scaled(inner=None, factor=1.0):\n"
        "    return lambda x: factor * (inner(x) if inner else x)\n"
        "def three():\n"
        "    return 3\n"
        "def leave():\n"
        "    sys.exit(0)\n"
        "class Doubler:\n"
        "    def __call__(self, x):\n"
        "        return 2.0 * x\n"
    ),
    "mylib.layers": "def cube(x):\n    return x ** 3\n",
    "mylib.sub": "def square(x):\n    return x * x\n",
    "mylib.other": "def square(x):\n    return x * x\n",
    "mylib.broken": "raise RuntimeError('cannot start: no licence server')\n",
    "mylib.quits": "import sys\nsys.exit(0)  # a script's argparse exits like this\n",
    "mylibx": "def square(x):\n    return x * x\n",
}


def marker(root: Path, module: str) -> Path:
    """The file `module` writes into `root` when it is imported."""
    return root / f"imported-{module}"


def write(root: Path, modules: Dict[str, str] = MODULES) -> None:
    """Write `modules` as packages under `root` (`a.b` -> `a/b.py`, `a` -> `a/__init__.py`)."""
    for name, body in modules.items():
        parts = name.split(".")
        if _is_package(name, modules):
            path = root.joinpath(*parts, "__init__.py")
        else:
            path = root.joinpath(*parts[:-1], parts[-1] + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"open({str(marker(root, name))!r}, 'w').close()\n{body}")


def _is_package(name: str, modules: Dict[str, str]) -> bool:
    return "." not in name or any(other.startswith(name + ".") for other in modules)


def imported(root: Path, modules: Iterable[str] = MODULES) -> Dict[str, bool]:
    """Whether each module ran, by its marker file or its entry in `sys.modules`."""
    return {m: marker(root, m).exists() or m in sys.modules for m in modules}


def forget(modules: Iterable[str] = MODULES) -> None:
    """Drop the modules from `sys.modules`, so the next test imports its own copies."""
    tops = {m.split(".")[0] for m in modules}
    for name in list(sys.modules):
        if name.split(".")[0] in tops:
            del sys.modules[name]


# `python -m runner ARGS` in a bare environment (with RUNNER_TRUST if given), printing its
# exit code, whether it imported TensorFlow, and whether it imported mylib
PROBE = (
    "import sys\n"
    "from runner import cli\n"
    "try:\n"
    "    cli.main()\n"
    "except SystemExit as done:\n"
    "    print(done.code, 'tensorflow' in sys.modules, 'mylib' in sys.modules)\n"
)
