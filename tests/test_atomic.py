"""sekd.atomic: outputs complete or absent; and no other module writes through a temporary
and a rename of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sekd import atomic

WORKFLOW = Path(__file__).resolve().parent.parent / "workflow"


class BoomError(Exception):
    pass


def test_a_file_appears_only_when_the_block_completes(tmp_path):
    dest = tmp_path / "out.txt"
    with atomic.replacing(dest) as tmp:
        assert tmp == tmp_path / "out.txt.tmp" == atomic.temporary(dest)
        tmp.write_text("complete\n", encoding="utf-8")
        assert not dest.exists()
    assert dest.read_text(encoding="utf-8") == "complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_a_file_replaces_the_previous_one(tmp_path):
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with atomic.replacing(str(dest)) as tmp, open(tmp, "wb") as f:
        f.write(b"new")
    assert dest.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("previous", [None, "old\n"])
def test_a_failed_block_leaves_the_file_as_it_was_and_no_temporary(tmp_path, previous):
    dest = tmp_path / "out.txt"
    if previous is not None:
        dest.write_text(previous)
    with pytest.raises(BoomError), atomic.replacing(dest) as tmp:
        tmp.write_text("half")
        raise BoomError
    assert (dest.read_text() if dest.exists() else None) == previous
    assert not atomic.temporary(dest).exists()


def test_a_failure_before_anything_is_written_is_passed_on(tmp_path):
    with pytest.raises(BoomError), atomic.replacing(tmp_path / "out.txt"):
        raise BoomError
    assert list(tmp_path.iterdir()) == []


def test_a_directory_appears_only_when_the_block_completes(tmp_path):
    dest = tmp_path / "sub" / "store"
    stale = atomic.temporary(dest)
    stale.mkdir(parents=True)
    (stale / "left-by-a-killed-job").write_text("x")
    with atomic.replacing(dest, directory=True) as tmp:
        assert tmp == stale and list(tmp.iterdir()) == []  # the leftover is gone
        (tmp / "a.json").write_text("{}")
        assert not dest.exists()
    assert sorted(p.name for p in dest.iterdir()) == ["a.json"]
    assert not stale.exists()


def test_a_directory_replaces_the_previous_one(tmp_path):
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old.json").write_text("{}")
    with atomic.replacing(dest, directory=True) as tmp:
        (tmp / "new.json").write_text("{}")
    assert sorted(p.name for p in dest.iterdir()) == ["new.json"]


def test_a_failed_directory_block_leaves_the_directory_and_its_partial_temporary(tmp_path):
    """As a killed job would: the partial <dest>.tmp stays (the next attempt removes it)."""
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old.json").write_text("{}")
    with pytest.raises(BoomError), atomic.replacing(dest, directory=True) as tmp:
        (tmp / "half.npy").write_bytes(b"")
        raise BoomError
    assert sorted(p.name for p in dest.iterdir()) == ["old.json"]
    assert sorted(p.name for p in atomic.temporary(dest).iterdir()) == ["half.npy"]


def test_sekd_atomic_imports_only_the_standard_library():
    tree = ast.parse((WORKFLOW / "sekd" / "atomic.py").read_text())
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }
    assert imported <= {"__future__", "os", "shutil", "collections", "contextlib", "pathlib"}


# --- nobody else spells the pattern -------------------------------------------------------------

# Calls that write through a temporary and a rename: only sekd.atomic makes them.
_RENAMES = {("os", "replace"), ("os", "rename"), ("shutil", "move")}
_TEMPORARIES = {"mkstemp", "NamedTemporaryFile", "_atomic_writer"}


def _pattern_uses(path: Path, root: Path = WORKFLOW) -> list[str]:
    """`file:line what` of each call or string in `path` that writes through a temporary of its
    own: os.replace/os.rename/shutil.move, a one-argument .replace()/.rename() (Path's; str's
    replace takes two, DataFrame.rename keywords), mkstemp/NamedTemporaryFile, and ".tmp"/".part"
    names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        what = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = node.func.attr
            if isinstance(owner, ast.Name) and (owner.id, name) in _RENAMES:
                what = f"{owner.id}.{name}"
            elif name in ("replace", "rename") and len(node.args) == 1 and not node.keywords:
                what = f".{name}()"
            elif name in _TEMPORARIES:
                what = name
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in _TEMPORARIES:
                what = node.func.id
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.endswith((".tmp", ".part")) and "\n" not in node.value:
                what = repr(node.value)
        if what is not None:
            found.append((node.lineno, f"{path.relative_to(root)}:{node.lineno} {what}"))
    return [use for _, use in sorted(found)]


def test_the_pattern_finder_finds_each_spelling(tmp_path):
    source = tmp_path / "x.py"
    source.write_text(
        "import os, shutil, tempfile\n"
        "tmp = out.with_suffix('.tmp')\n"
        "tmp.replace(out)\n"
        "tmp.rename(out)\n"
        "os.replace(a, b)\n"
        "shutil.move(a, b)\n"
        "tempfile.mkstemp(dir=d)\n"
        "s.replace('a', 'b'); frame.rename(columns={})\n"
    )
    assert _pattern_uses(source, tmp_path) == [
        "x.py:2 '.tmp'",
        "x.py:3 .replace()",
        "x.py:4 .rename()",
        "x.py:5 os.replace",
        "x.py:6 shutil.move",
        "x.py:7 mkstemp",
    ]


def test_no_module_but_sekd_atomic_writes_through_a_temporary_of_its_own():
    modules = sorted([*WORKFLOW.glob("sekd/**/*.py"), *WORKFLOW.glob("scripts/*.py")])
    assert len(modules) > 40
    found = [use for path in modules if path.name != "atomic.py" for use in _pattern_uses(path)]
    assert found == [], "write through sekd.atomic.replacing instead"
