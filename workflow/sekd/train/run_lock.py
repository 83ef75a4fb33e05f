"""Who trains a run, and how an interrupted workflow stops its trainers (issue 13, class 6).

Torch-free: `forward_interrupts` runs in the Snakemake process (rules/train.smk installs it at
parse time); `hold` and `stop_with_snakemake` run in a training job (sekd.train.job.run).

* `hold`: a training job owns its run exclusively. It takes an exclusive, non-blocking
  ``flock`` on ``<checkpoint_dir>.lock`` and writes its PID and host into it; a second trainer of
  the same run stops at once with `RunLockedError`, naming the holder. The kernel releases the lock
  when the holder dies, so a crash or SIGKILL never leaves a stale lock behind.
* `stop_with_snakemake`: when the Snakemake process that started the job is gone (SIGKILLed), a
  watchdog thread sends SIGTERM to the job itself, which checkpoints at the end of the step and
  stops (sekd.train.checkpoints) instead of training on as an orphan.
* `forward_interrupts`: Snakemake's local executor answers SIGINT by waiting for every running job
  to finish (its thread pool's shutdown); the handler passes the SIGINT on to Snakemake's child
  processes in its process group first, as Ctrl-C in a terminal does, so trainers checkpoint and
  stop within a step.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

log = logging.getLogger("sekd.train.job.runlock")

POLL_S = 1.0  # how often the watchdog checks that Snakemake is still there
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a filesystem without flock


class RunLockedError(RuntimeError):
    """Another live trainer holds the run."""


def lock_path(checkpoint_dir: str | Path) -> Path:
    """The lock file of a run: ``<checkpoint_dir>.lock``, next to its checkpoint directory."""
    return Path(str(checkpoint_dir).rstrip("/") + ".lock")


def _holder(fd: int) -> str:
    """'pid N on host H' from a lock file (what its holder wrote)."""
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096).decode())
        return f"pid {record['pid']} on host {record['host']}"
    return "pid ? on host ? (it is just starting)"


def _lock(path: Path, run_dir: str) -> int | None:
    """An fd holding the exclusive lock on `path`; None when the filesystem has no locks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"another trainer ({holder}) is training {run_dir}; wait for it or stop it "
                f"(its lock: {path})"
            ) from None
        except OSError as error:
            os.close(fd)
            if error.errno not in NO_LOCKS:
                raise
            log.warning("%s: the filesystem cannot lock (%s); the run is not guarded", path, error)
            return None
        # The previous holder removes the file as it ends: lock the file that is there now.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


@contextlib.contextmanager
def hold(checkpoint_dir: str | Path) -> Iterator[None]:
    """Own the run of `checkpoint_dir` while the block runs; raise `RunLockedError` when a live
    trainer (of this or another host sharing the filesystem) owns it."""
    path = lock_path(checkpoint_dir)
    fd = _lock(path, str(checkpoint_dir))
    if fd is None:
        yield
        return
    try:
        record = {"pid": os.getpid(), "host": socket.gethostname()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while holding it: a waiting trainer then locks a new file
        os.close(fd)


def _is_snakemake(process: psutil.Process) -> bool:
    """Whether `process` runs Snakemake (``snakemake ...`` or ``python -m snakemake ...``)."""
    with contextlib.suppress(psutil.Error):
        # [.../snakemake, ...], [python, .../snakemake, ...] or [python, -m, snakemake, ...]
        return "snakemake" in [os.path.basename(arg) for arg in process.cmdline()[:3]]
    return False


def snakemake_ancestor() -> psutil.Process | None:
    """The nearest ancestor of this process that runs Snakemake, if any."""
    with contextlib.suppress(psutil.Error):
        for process in psutil.Process().parents():
            if _is_snakemake(process):
                return process
    return None


def _alive(process: psutil.Process) -> bool:
    """Whether `process` still runs (psutil compares its start time too: a reused PID is not)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def stop_with_snakemake(poll_s: float = POLL_S) -> Iterator[psutil.Process | None]:
    """While the block runs, SIGTERM this process once the Snakemake process that started it has
    gone; yields that process (None outside Snakemake: nothing is watched)."""
    parent = snakemake_ancestor()
    if parent is None:
        yield None
        return
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_s):
            if not _alive(parent):
                log.warning(
                    "Snakemake (pid %d) is gone: checkpointing and stopping this job", parent.pid
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="sekd-snakemake-watchdog", daemon=True)
    thread.start()
    try:
        yield parent
    finally:
        done.set()
        thread.join()


def _pass_on(signum: int, frame) -> None:
    """Snakemake's SIGINT: first to its descendants in its process group (those Ctrl-C reaches;
    a trainer's torchrun has its own session and hears from the trainer), then its own."""
    group = os.getpgrp()
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(child.pid) == group:
                    child.send_signal(signum)
    signal.default_int_handler(signum, frame)


def forward_interrupts() -> bool:
    """In the Snakemake process: make SIGINT reach the running jobs, as Ctrl-C does.

    Snakemake 9's local executor runs a ``script:`` job in a thread (`run_wrapper`) that waits
    for the script's process; on SIGINT (KeyboardInterrupt) the scheduler cancels the executor,
    whose thread pool waits for those threads, so a SIGINT sent to Snakemake's PID alone left a
    training job running to its end. Returns whether the handler is installed (not when SIGINT
    has another handler than Python's default, or outside the main thread).
    """
    try:
        current = signal.getsignal(signal.SIGINT)
        if current is _pass_on:
            return True
        if current is not signal.default_int_handler:
            return False
        signal.signal(signal.SIGINT, _pass_on)
    except ValueError:  # not the main thread
        return False
    return True
