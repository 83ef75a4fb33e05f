"""The two layers of sekd: what the rules import at parse time is torch-free, the compute modules
import torch (and transformers) at the top, and no module imports another in a cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEKD = ROOT / "workflow" / "sekd"
RULE_FILES = [
    *ROOT.glob("Snakefile"),
    *ROOT.glob("workflow/Snakefile"),
    *ROOT.glob("workflow/rules/*.smk"),
]
HEAVY = ("torch", "numpy", "transformers", "tokenizers", "deepspeed", "sacrebleu")
# The torch-free layer besides what the rules import.
PARSE_TIME = {
    "config",
    "config_docs",
    "objectives",
    "variants",
    "runs",
    "data",
    "errors",
    "study",
    "sequences",
}


def _rule_imports() -> set[str]:
    """sekd modules the Snakefile and the rules import (``from sekd.X import``, ``from sekd
    import X``)."""
    found = set()
    for path in RULE_FILES:
        for line in path.read_text().splitlines():
            if m := re.match(r"from sekd(?:\.(\w+) import| import (\w+))", line):
                found.add(m[1] or m[2])
    return found


def test_parse_time_modules_import_without_torch_or_numpy():
    modules = sorted(PARSE_TIME | _rule_imports())
    assert "runs" in modules and "config" in modules
    blocker = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            raise ImportError(f"{{name}} must not be imported at parse time")
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(SEKD.parent)!r})
for module in {modules!r}:
    importlib.import_module("sekd." + module)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
assert not leaked, leaked
"""
    result = subprocess.run(
        [sys.executable, "-c", blocker], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _function_level_imports(path: Path) -> list[str]:
    """``module:line name`` of torch/transformers/numpy imports inside function bodies."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            names = []
            if isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            elif isinstance(inner, ast.ImportFrom) and inner.module and not inner.level:
                names = [inner.module]
            for name in names:
                if name.split(".")[0] in ("torch", "transformers", "numpy"):
                    found.append(f"{path.stem}:{inner.lineno} {name}")
    return found


@pytest.mark.parametrize("path", sorted(SEKD.glob("*.py")), ids=lambda p: p.stem)
def test_compute_modules_import_torch_at_the_top(path):
    assert _function_level_imports(path) == []


def _sekd_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SEKD.glob("*.py"):
        targets = edges.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "sekd":
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sekd."):
                targets.add(node.module.split(".")[1])
    return edges


def test_no_import_cycle_in_sekd():
    edges = _sekd_edges()
    state: dict[str, str] = {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                cycle = [*stack[stack.index(target) :], target] if target in stack else [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*stack, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
