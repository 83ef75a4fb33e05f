"""No function of the sekd package is longer than a screen (60 lines, docstring included)."""

from __future__ import annotations

import ast
from pathlib import Path

SEKD = Path(__file__).resolve().parent.parent / "workflow" / "sekd"
MAX_LINES = 60


def _lengths(path: Path) -> dict[str, int]:
    """{qualified name: lines from `def` to the last line} of every function in `path`."""
    lengths = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}."
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[name[:-1]] = child.end_lineno - child.lineno + 1
            visit(child, name)

    visit(ast.parse(path.read_text(encoding="utf-8")), "")
    return lengths


def test_the_measure_counts_from_def_to_the_last_line(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        'def f():\n    """Doc."""\n\n    return 1\n\n\nclass C:\n    def g(self):\n        pass\n'
    )
    assert _lengths(source) == {"f": 4, "C.g": 2}


def test_no_function_in_sekd_is_longer_than_60_lines():
    long = {
        f"{path.relative_to(SEKD)}:{name} ({n} lines)"
        for path in sorted(SEKD.rglob("*.py"))
        for name, n in _lengths(path).items()
        if n > MAX_LINES
    }
    assert long == set(), f"split these into helpers of a dozen lines or so: {sorted(long)}"
