"""The layout keeps its promises: no import circle, no module over ~400 lines, and the
stages that answer before TensorFlow (config, language) never import it or SymPy."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

from tests.helpers import ROOT

PACKAGES = ("runner", "hydra_plugins")
MAX_LINES = 400
# Stages on the path of `--help` and of a refused config: they answer at once.
LIGHT_STAGES = ("runner.config", "runner.language")
HEAVY = ("tensorflow", "sympy", "matplotlib")
# The language's TensorFlow interpreter; only the tape stage imports it, once TF is loaded.
TF_INTERPRETER = "runner.language.lowering"


def _modules() -> Dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, top_level_only: bool = False) -> Set[str]:
    """Every module `path` imports (lazy ones inside functions too, unless top_level_only)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: Set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> Dict[str, Set[str]]:
    """Module -> the project modules it imports, lazily or not."""
    return {name: {m for m in _imports(path) if m in MODULES and m != name} for name, path in MODULES.items()}


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import circle as a path of module names, or []."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_no_import_circle_among_the_modules():
    assert _cycle(_graph()) == []


def test_only_the_tape_and_verify_stages_import_the_tensorflow_interpreter():
    importers = sorted(n for n, deps in _graph().items() if TF_INTERPRETER in deps)
    assert all(n.startswith(("runner.tape.", "runner.verify.")) for n in importers), importers


def test_the_circle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_no_module_is_over_400_lines(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n.startswith(LIGHT_STAGES) and n != TF_INTERPRETER), ids=str
)
def test_the_config_and_language_stages_import_nothing_heavy_at_load(name):
    heavy = sorted(m for m in _imports(MODULES[name], top_level_only=True) if m.split(".")[0] in HEAVY)
    assert heavy == []
