"""Outputs that exist complete or not at all: written beside the destination, renamed over it.

Every file or directory this workflow writes as a whole goes through here: the block writes
``<dest>.tmp`` (in the destination's directory, so the rename stays on one file system and is
atomic), and only when the block completes is it renamed over ``dest``. A reader, or Snakemake
deciding what to rerun, never sees a half-written ``dest``; a killed job leaves at most
``<dest>.tmp``, which the next attempt overwrites. Nothing is fsynced (no writer here ever did:
the point is a complete output after a failed or killed job, not after a crash of the machine).

A write that runs out of space (a full disk or a quota) raises `sekd.errors.DiskFullError`, which
names ``dest`` and the free space on its file system; the partial temporary is removed, so the
space it took is free again and ``dest`` is as it was (`disk_full` tells such a failure from
others; `naming_full_disk` does the same for writes that do not go through `replacing`, such as
the Trainer's checkpoints; `reserve` allocates a memory-mapped file's space before it is written,
so that a full disk is an error then, not a SIGBUS later).

Standard library only (and sekd.errors, which is too): the Snakefile's modules and the rule scripts
import it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sekd.errors import DiskFullError

SUFFIX = ".tmp"
# errno of a write that ran out of space, and how a message says it
FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded"}
# what the messages of writers that keep no errno say (safetensors: "... (os error 28)")
_FULL_TEXTS = {
    "No space left on device": errno.ENOSPC,
    "os error 28": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "os error 122": errno.EDQUOT,
}
# Writers that fail on a full disk without saying why: torch.save ("[enforce fail at
# inline_container.cc] unexpected pos", "file write failed") and numpy ("N requested and M
# written"). Such a failure counts as a full disk when less than NEARLY_FULL_BYTES are left.
_SILENT_TEXTS = ("inline_container", "PytorchStreamWriter", "file write failed", "requested and")
NEARLY_FULL_BYTES = 1 << 20


def temporary(dest: str | os.PathLike[str]) -> Path:
    """``<dest>.tmp``: where `dest` is written before it is renamed into place."""
    dest = Path(dest)
    return dest.with_name(dest.name + SUFFIX)


@contextmanager
def replacing(dest: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """Yield ``<dest>.tmp`` for the block to write; rename it over `dest` when the block returns.

    A file (the default): the block creates the temporary however it likes (text or bytes, its
    own encoding and newlines; nothing is created for it). If the block raises, the temporary is
    removed and `dest` is left as it was. The parent directory must exist.

    ``directory=True``: the block gets an empty directory (parents created; a temporary left
    by an earlier attempt is removed first) and on success a previous `dest` is removed before
    the rename. If the block raises, the partial directory is left for inspection, as a killed
    job would leave it, and `dest` as it was; the next attempt starts afresh.

    Out of space (either kind): `sekd.errors.DiskFullError` naming `dest` and the free space, the
    temporary removed (a partial directory too: it holds the space the rerun needs).
    """
    dest, tmp = Path(dest), temporary(dest)
    if directory:
        shutil.rmtree(tmp, ignore_errors=True)
        with naming_full_disk(dest, cleanup=lambda: shutil.rmtree(tmp, ignore_errors=True)):
            tmp.mkdir(parents=True)
            yield tmp
            shutil.rmtree(dest, ignore_errors=True)
            os.replace(tmp, dest)
        return
    try:
        with naming_full_disk(dest, cleanup=lambda: tmp.unlink(missing_ok=True)):
            yield tmp
            os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def naming_full_disk(
    path: str | os.PathLike[str],
    *,
    cleanup: Callable[[], object] | None = None,
    note: str | None = None,
) -> Iterator[None]:
    """Raise `sekd.errors.DiskFullError` (from the original error) when a write in the block runs
    out of space (`disk_full`): `path` is what was being written, `cleanup` removes its partial
    remains (run before the free space is measured again), `note` ends the message (what is
    left and what a rerun does). Other errors pass unchanged."""
    try:
        yield
    except Exception as error:
        full = disk_full(error, path, cleanup=cleanup, note=note)
        if full is None or full is error:
            raise
        raise full from error


def disk_full(
    error: BaseException,
    path: str | os.PathLike[str],
    *,
    cleanup: Callable[[], object] | None = None,
    note: str | None = None,
) -> DiskFullError | None:
    """The `DiskFullError` for `error` when it is a write to `path` that ran out of space, else
    None (`error` itself, after `cleanup`, when it already is one and there is no `note`).

    Recognised: an OSError with errno ENOSPC or EDQUOT, in `error` or what caused it; a message
    that says so (safetensors: "No space left on device (os error 28)"); and a failed write whose
    message says nothing of the cause (torch.save, numpy) while less than NEARLY_FULL_BYTES are
    free on the file system of `path`."""
    if isinstance(error, DiskFullError):
        if cleanup is not None:
            cleanup()
        return error if note is None else _full_error(path, error.errno, note=note)
    code = _full_code(error, path)
    if code is None:
        return None
    free = free_bytes(path)
    if cleanup is not None:
        cleanup()
    return _full_error(path, code, free=free, note=note)


def _full_error(
    path: str | os.PathLike[str],
    code: int,
    *,
    free: int | None = None,
    needs: int | None = None,
    note: str | None = None,
) -> DiskFullError:
    """The DiskFullError of `path`: `free` bytes when it failed (None: measured now), `needs`
    bytes to write, `note` on what is left and what to do."""
    now = free_bytes(path)
    free = now if free is None else free
    where = f"{_size(free)} free on its file system ({_mount(path)})"
    if now is not None and now != free:
        where += f", {_size(now)} once the partial write was removed"
    need = f"; it needs {_size(needs)}" if needs is not None else ""
    message = f"{path}: {FULL[code]} while writing it{need}; {where}. "
    message += note or "Nothing of it was kept; free some space and rerun."
    return DiskFullError(message, path=str(path), free=free, code=code)


def reserve(path: str | os.PathLike[str]) -> None:
    """Allocate the blocks of the file `path` (as long as it is now, e.g. a memory-mapped .npy
    just created, a sparse file) so that writing it through the map cannot run out of space later,
    which kills the process with SIGBUS and says nothing. Out of space, raise
    `sekd.errors.DiskFullError` naming `path`, the space it needs and the space free. Uses
    fallocate(2), which quotas count too; where the file system or the platform has none, only
    compares the size with the free space."""
    path = Path(path)
    size = path.stat().st_size
    try:
        allocated = _fallocate(path, size)
    except OSError as error:
        if error.errno not in FULL:
            raise
        raise _full_error(path, error.errno, needs=size) from error
    free = free_bytes(path)
    if not allocated and free is not None and size > free:
        raise _full_error(path, errno.ENOSPC, needs=size)


def _fallocate(path: Path, size: int) -> bool:
    """fallocate(2) the first `size` bytes of `path`; False where it is not supported."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)  # glibc, musl
    if function is None or size == 0:
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    with open(path, "r+b") as f:
        if function(f.fileno(), 0, 0, size) == 0:
            return True
    code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS):
        return False
    raise OSError(code, os.strerror(code), str(path))


def _full_code(error: BaseException, path: str | os.PathLike[str]) -> int | None:
    """ENOSPC or EDQUOT when `error` (or its cause or context) is a write out of space."""
    chain, seen = [error], set()
    while chain:
        current = chain.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in FULL:
            return current.errno
        for text, code in _FULL_TEXTS.items():
            if text in str(current):
                return code
        chain += [current.__cause__, current.__context__]
    silent = isinstance(error, (OSError, RuntimeError)) and any(
        text in str(error) for text in _SILENT_TEXTS
    )
    free = free_bytes(path) if silent else None
    return errno.ENOSPC if free is not None and free < NEARLY_FULL_BYTES else None


def _existing(path: str | os.PathLike[str]) -> Path:
    """`path` or its nearest existing parent."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free to unprivileged users on the file system holding `path` (or where it would be);
    None when that cannot be told."""
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def _mount(path: str | os.PathLike[str]) -> Path:
    """The mount point of the file system holding `path`."""
    path = _existing(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size(n: int | None) -> str:
    """'0 bytes', '512 bytes', '3.9 MiB (4128768 bytes)'; 'unknown space' for None."""
    if n is None:
        return "unknown space"
    if n < 1024:
        return f"{n} bytes"
    scaled, units = n / 1024, ["KiB", "MiB", "GiB", "TiB", "PiB"]
    while scaled >= 1024 and len(units) > 1:
        scaled, units = scaled / 1024, units[1:]
    return f"{scaled:.1f} {units[0]} ({n} bytes)"
