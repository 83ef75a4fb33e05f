"""Outputs that exist complete or not at all: written beside the destination, renamed over it.

Every file or directory this workflow writes as a whole goes through here: the block writes
``<dest>.tmp`` (in the destination's directory, so the rename stays on one file system and is
atomic), and only when the block completes is it renamed over ``dest``. A reader, or Snakemake
deciding what to rerun, never sees a half-written ``dest``; a killed job leaves at most
``<dest>.tmp``, which the next attempt overwrites. Nothing is fsynced (no writer here ever did:
the point is a complete output after a failed or killed job, not after a crash of the machine).

Standard library only: the Snakefile's modules and the rule scripts import it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = ".tmp"


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
    """
    dest, tmp = Path(dest), temporary(dest)
    if directory:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        yield tmp
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        return
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
