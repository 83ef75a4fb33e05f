"""sekd.atomic: outputs complete or absent."""

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
