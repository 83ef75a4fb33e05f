"""The layers of sekd: the plan (sekd/plan/) and whatever else the rules import at parse time is
torch-free, the compute modules import torch (and transformers) at the top, and no module imports
another in a cycle."""

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
MODULES = sorted(SEKD.rglob("*.py"))
# The torch-free layer: the plan, and the shared modules and data readers it imports.
PARSE_TIME = {
    *(f"plan.{p.stem}" for p in (SEKD / "plan").glob("*.py") if p.stem != "__init__"),
    "errors",
    "atomic",
    "data.alma",
    "data.prompts",
}


def dotted(path: Path) -> str:
    """`plan.config` of workflow/sekd/plan/config.py (`plan` of a package's __init__.py)."""
    return ".".join(path.relative_to(SEKD).with_suffix("").parts).removesuffix(".__init__")


def _imported(module: str, names: list[str]) -> set[str]:
    """The sekd modules that ``from <module> import <names>`` imports (below sekd, dotted)."""
    base = module.removeprefix("sekd").lstrip(".")
    found = set()
    for name in names:
        inner = f"{base}.{name}" if base else name
        if (SEKD / f"{inner.replace('.', '/')}.py").exists():
            found.add(inner)
        elif base:
            found.add(base)
    return found


def _rule_imports() -> set[str]:
    """sekd modules the Snakefile and the rules import (``from sekd.X import``, ``from sekd.X
    import Y``)."""
    found = set()
    for path in RULE_FILES:
        for line in path.read_text().splitlines():
            if m := re.match(r"from (sekd(?:\.[\w.]+)?) import ([\w, ]+)", line):
                found |= _imported(m[1], [n.split(" as ")[0].strip() for n in m[2].split(",")])
    return found


def test_parse_time_modules_import_without_torch_or_numpy():
    modules = sorted(PARSE_TIME | _rule_imports())
    assert {"plan.run_names", "plan.config", "plan.allocation"} <= set(modules)
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


@pytest.mark.parametrize("path", MODULES, ids=dotted)
def test_compute_modules_import_torch_at_the_top(path):
    assert _function_level_imports(path) == []


def _sekd_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in MODULES:
        targets = edges.setdefault(dotted(path), set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sekd":
                targets |= _imported(node.module, [alias.name for alias in node.names])
    return edges


def test_the_edges_name_modules_and_packages():
    edges = _sekd_edges()
    assert {"plan.objectives", "plan.variants"} <= edges["plan.run_names"]
    assert "train.losses" in edges["train.trainer"]


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
