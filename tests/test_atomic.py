"""sekd.atomic: outputs complete or absent; and no other module writes through a temporary
and a rename of its own."""

from __future__ import annotations

import ast
import errno
import os
import re
from pathlib import Path

import pytest

from sekd import atomic
from sekd.errors import DiskFullError, SekdError

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


# --- out of space (issue 23, item 1) -------------------------------------------------------------


def _fill(path: Path, code: int = errno.ENOSPC) -> None:
    """Write part of `path`, then fail as a write out of space does."""
    path.write_bytes(b"x" * 100)
    raise OSError(code, os.strerror(code))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_file_out_of_space_is_a_named_error_and_leaves_the_previous_file(tmp_path, code):
    dest = tmp_path / "hyps.txt"
    dest.write_text("previous\n")
    with pytest.raises(DiskFullError) as raised, atomic.replacing(dest) as tmp:
        _fill(tmp, code)
    error = raised.value
    message = str(error)
    assert message.startswith(f"{dest}: ")
    assert atomic.FULL[code] in message and "free on its file system" in message
    assert error.errno == code and error.path == str(dest) and error.free is not None
    assert isinstance(error, OSError) and isinstance(error, SekdError)
    assert isinstance(error.__cause__, OSError) and error.__cause__.errno == code
    assert dest.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyps.txt"]


def test_a_directory_out_of_space_is_a_named_error_and_its_partial_temporary_goes(tmp_path):
    dest = tmp_path / "store"
    dest.mkdir()
    (dest / "old.json").write_text("{}")
    with (
        pytest.raises(DiskFullError, match=f"^{re.escape(str(dest))}: no space left"),
        atomic.replacing(dest, directory=True) as tmp,
    ):
        (tmp / "a.npy").write_bytes(b"complete")
        _fill(tmp / "b.npy")
    assert sorted(p.name for p in dest.iterdir()) == ["old.json"]
    assert not atomic.temporary(dest).exists()  # unlike other failures: it holds the space


TORCH_SAVE_FAILURE = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


@pytest.mark.parametrize(("free", "full"), [(0, True), (4096, True), (10 << 30, False)])
def test_a_writer_that_hides_the_cause_counts_as_out_of_space_when_space_is_short(
    tmp_path, monkeypatch, free, full
):
    """torch.save says "unexpected pos" on a full disk, numpy "N requested and M written": a
    disk full only if the file system is left (nearly) without space."""
    monkeypatch.setattr(atomic, "free_bytes", lambda path: free)
    dest = tmp_path / "optimizer.pt"
    expected = DiskFullError if full else RuntimeError
    with pytest.raises(expected), atomic.replacing(dest) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError(TORCH_SAVE_FAILURE)
    assert not atomic.temporary(dest).exists()
    error = OSError("1000000 requested and 262112 written")
    assert (atomic.disk_full(error, dest) is not None) == full
    assert atomic.disk_full(ValueError("unexpected pos"), dest) is None  # not a writer's error


def test_a_message_that_says_so_is_out_of_space_whatever_the_free_space(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 10 << 30)
    said = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert atomic.disk_full(said, tmp_path / "model.safetensors").errno == errno.ENOSPC
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert atomic.disk_full(wrapped, tmp_path / "x").errno == errno.EDQUOT


def test_sizes_read_as_bytes_and_binary_units():
    assert atomic._size(0) == "0 bytes"
    assert atomic._size(4128768) == "3.9 MiB (4128768 bytes)"
    assert atomic._size(3 << 40) == "3.0 TiB (3298534883328 bytes)"


def test_reserve_refuses_a_file_that_would_not_fit(tmp_path, monkeypatch):
    path = tmp_path / "logprobs.npy"
    with open(path, "wb") as f:
        f.truncate(3 << 20)  # sparse, as a new memory-mapped .npy
    atomic.reserve(path)  # fits here

    def quota(path, size):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(path))

    monkeypatch.setattr(atomic, "_fallocate", quota)
    with pytest.raises(DiskFullError, match=r"disk quota exceeded.*it needs 3.0 MiB"):
        atomic.reserve(path)
    monkeypatch.setattr(atomic, "_fallocate", lambda path, size: False)  # no fallocate there
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 1 << 20)
    with pytest.raises(DiskFullError, match=r"no space left.*it needs 3.0 MiB.*1.0 MiB"):
        atomic.reserve(path)


def test_out_of_space_on_a_small_file_system_then_a_rerun_after_freeing_space(small_fs):
    fs = small_fs.mount("small", "1m")
    dest, store = fs / "hyps.txt", fs / "store"
    dest.write_text("previous\n")
    big = "x" * (2 << 20)
    with pytest.raises(DiskFullError) as raised, atomic.replacing(dest) as tmp:
        tmp.write_text(big)
    assert str(raised.value).startswith(f"{dest}: no space left on the device while writing it")
    assert f"free on its file system ({fs})" in str(raised.value)
    with pytest.raises(DiskFullError), atomic.replacing(store, directory=True) as tmp:
        (tmp / "part.txt").write_text(big)
    sparse = fs / "big.npy"
    with open(sparse, "wb") as f:
        f.truncate(2 << 20)
    with pytest.raises(DiskFullError, match=r"it needs 2\.0 MiB"):
        atomic.reserve(sparse)
    sparse.unlink()
    assert dest.read_text() == "previous\n"
    assert sorted(p.name for p in fs.iterdir()) == ["hyps.txt"]  # no temporary left
    small_fs.resize(fs, "8m")  # space freed: the same writes now complete
    with atomic.replacing(dest) as tmp:
        tmp.write_text(big)
    with atomic.replacing(store, directory=True) as tmp:
        (tmp / "part.txt").write_text(big)
    assert dest.read_text() == big and (store / "part.txt").read_text() == big


def _imports(module: str) -> set[str]:
    tree = ast.parse((WORKFLOW / "sekd" / module).read_text())
    return {
        name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    }


def test_sekd_atomic_imports_only_the_standard_library():
    imported = {name.split(".")[0] for name in _imports("atomic.py") - {"sekd.errors"}}
    assert imported <= {
        "__future__",
        "ctypes",
        "errno",
        "os",
        "shutil",
        "collections",
        "contextlib",
        "pathlib",
    }
    assert _imports("errors.py") == set()  # and so does sekd.errors, the one it imports


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
