"""The checkpoint and preemption protocol of a training run, and its step timer.

Checkpoints are written every ``training.save_steps`` optimizer steps and when SIGUSR1, SIGTERM or
SIGINT arrives (SLURM's warning before a time limit, a requeue, Ctrl-C or an interrupted Snakemake,
sekd.train.run_lock); a checkpoint is trusted only once every rank has written its part: then rank 0
writes the COMPLETE mark, which is also the checkpoint's manifest (every file's size and sha256),
written last and atomically. Before a run starts, `prepare_checkpoints` removes incomplete
checkpoints and those of another job, checks the newest against its manifest (a truncated or
altered file: skipped and removed, with the reason in the log) and names the newest intact one to
resume from, so that a rerun of a killed or requeued job continues where it stopped. A signal that
arrives before the first checkpoint, even before training starts, stops the run with the same
`PreemptedError` as later ones (`Signals`). A checkpoint write that runs out of space raises
`sekd.errors.DiskFullError` and leaves the previous checkpoint (`writing`). docs/deepspeed.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from sekd import atomic
from sekd.train.distributed import PreemptedError

# a child of sekd.train.job: a run's messages (tests listen to "sekd.train.job") stay under one name
log = logging.getLogger("sekd.train.job.checkpoints")

# written into a checkpoint once every rank has finished it: {"step": N, "files": {name:
# {"size": bytes, "sha256": hex}}} of every other file in it (names relative, "/"-separated)
COMPLETE = "sekd_complete.json"
PREEMPTED = "preempted.json"  # written into checkpoint_dir when a signal stopped the run
JOB_KEY = "sekd_job.json"  # what the checkpoints in checkpoint_dir were trained with
EXIT_PREEMPTED = 75  # a rank's exit status after a signal-triggered checkpoint (EX_TEMPFAIL)
# Signals that make a run checkpoint at the end of the step and stop: SLURM's warning (USR1), a
# requeue or the Snakemake watchdog (TERM, sekd.train.run_lock), Ctrl-C or Snakemake's SIGINT (INT).
SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)
CHUNK = 8 << 20  # bytes hashed at a time
HASH_THREADS = 8  # files hashed at once by a process (hashlib and reads release the GIL)


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def checkpoints(root: Path) -> list[Path]:
    """checkpoint-N directories of `root`, by step."""
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


class Signals:
    """Which of `SIGNALS` arrived (the last one) while installed; the handler only records it.

    A job installs it first thing (`sekd.train.job.run` for the whole run, a torchrun rank when it
    starts), so that a signal that comes before the first checkpoint, while the checkpoints are
    checked or the models load, is not the default action (SIGUSR1 and SIGTERM kill a process)
    but stops the run as later ones do (`stop_if_signalled`, `CheckpointCallback.on_train_begin`).
    Outside the main thread `install` leaves the signals as they are. A context manager too.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def _record(self, signum, frame) -> None:
        self.received = signum

    def install(self) -> None:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._record)
            except ValueError:  # not the main thread: signals stay as they are
                return

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> Signals:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else "a signal"


def _note(root: Path, text: str) -> None:
    """Write PREEMPTED (what stopped the run and what a rerun does) into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(root / PREEMPTED) as tmp:
        tmp.write_text(text)


def _rerun(step: int | None) -> str:
    """What a rerun does when the run stopped after checkpoint `step` (None or 0: none)."""
    return f"a rerun resumes from checkpoint-{step}" if step else "a rerun starts over"


def stop_if_signalled(signals: Signals, root: str | Path, resume: str | None, when: str) -> None:
    """Raise `PreemptedError` (noted in PREEMPTED) if a signal arrived; `when`: before what
    (nothing of this attempt to checkpoint), `resume`: the checkpoint a rerun resumes from."""
    if signals.received is None:
        return
    step = int(Path(resume).name[11:]) if resume else None
    note = f"{signals.name} {when}: nothing new to checkpoint; {_rerun(step)}"
    _note(Path(root), note)
    raise PreemptedError(note)


class CheckpointCallback(TrainerCallback):
    """Checkpoints every `save_steps` optimizer steps and when one of `SIGNALS` arrives.

    A signal only sets a flag (in `signals`, which the caller installs: sekd.train.job); at the
    end of the step the ranks agree on it (all-reduce, so a signal that reached one rank stops all
    at the same step), save, mark the checkpoint complete and raise `PreemptedError`. A signal
    before the first step (the models were loading) stops the run at the start of training, with
    nothing to save. A checkpoint is marked complete (COMPLETE, its manifest) only once all ranks
    wrote their part; then older ones are removed (the best SFT one is kept).
    """

    def __init__(self, save_steps: int | None, checkpoint_dir: str, signals: Signals | None = None):
        self.save_steps = save_steps
        self.root = Path(checkpoint_dir)
        self.signals = signals if signals is not None else Signals()
        self.stopping = False

    @property
    def signalled(self) -> int | None:
        return self.signals.received

    @signalled.setter
    def signalled(self, signum: int | None) -> None:
        self.signals.received = signum

    def _any_rank_signalled(self, args) -> bool:
        flag = self.signalled is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([float(flag)], device=args.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def on_train_begin(self, args, state, control, **kwargs):
        # A signal while the models and the checkpoint loaded: stop before the first step.
        if not self._any_rank_signalled(args):
            return
        what = self.signals.name if self.signalled else "a signal (on another rank)"
        note = f"{what} before the first step: nothing new to checkpoint; "
        note += _rerun(state.global_step)
        if state.is_world_process_zero:
            _note(self.root, note)
        barrier()
        raise PreemptedError(note)

    def on_step_end(self, args, state, control, **kwargs):
        if self.save_steps and state.global_step % self.save_steps == 0:
            control.should_save = True
        if self._any_rank_signalled(args):
            self.stopping = True
            control.should_save = True
            control.should_training_stop = True
        self._unmark(args, state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._unmark(args, state, control)

    def _unmark(self, args, state, control) -> None:
        # A second save at the same step (an epoch's end after a step's) rewrites the
        # checkpoint in place: it is incomplete again until on_save.
        if control.should_save and state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            (checkpoint / COMPLETE).unlink(missing_ok=True)

    def on_save(self, args, state, control, **kwargs):
        barrier()
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        files = manifest(checkpoint)  # every rank hashes its share
        if state.is_world_process_zero:
            mark = {"step": state.global_step, "files": files}
            with writing(checkpoint), atomic.replacing(checkpoint / COMPLETE) as tmp:
                tmp.write_text(json.dumps(mark))
            best = state.best_model_checkpoint
            for old in checkpoints(self.root):
                if old != checkpoint and (best is None or old.name != Path(best).name):
                    shutil.rmtree(old, ignore_errors=True)
            if self.stopping:
                _note(
                    self.root,
                    f"{self.signals.name}: checkpointed {checkpoint} at step {state.global_step} "
                    f"of {state.max_steps}; a rerun resumes from it",
                )
        barrier()
        if self.stopping:
            raise PreemptedError(f"checkpointed at step {state.global_step} on a signal")


@contextlib.contextmanager
def writing(checkpoint: Path) -> Iterator[None]:
    """While `checkpoint` is written: a write that runs out of space raises
    `sekd.errors.DiskFullError` naming it and the free space; the partial checkpoint is removed.
    The previous complete one stays (older ones go only once a new one is complete, `on_save`),
    and a rerun resumes from it once space is freed."""
    earlier = completed(checkpoint.parent, but=checkpoint)
    note = f"The partial {checkpoint.name} was removed; " + (
        f"the previous checkpoint, {earlier[-1]}, is intact: free some space and rerun, it "
        "resumes from there."
        if earlier
        else "there is no earlier checkpoint: free some space and rerun, it starts over."
    )
    remove = lambda: shutil.rmtree(checkpoint, ignore_errors=True)  # noqa: E731
    with atomic.naming_full_disk(checkpoint, cleanup=remove, note=note):
        yield


def completed(root: Path, but: Path | None = None) -> list[Path]:
    """The checkpoints of `root` marked complete, by step (`but` left out)."""
    return [p for p in checkpoints(root) if p != but and (p / COMPLETE).is_file()]


def _files(checkpoint: Path) -> list[str]:
    """The files of `checkpoint` but its COMPLETE mark, relative and sorted."""
    return sorted(
        p.relative_to(checkpoint).as_posix()
        for p in checkpoint.rglob("*")
        if p.is_file() and p.name not in (COMPLETE, atomic.temporary(COMPLETE).name)
    )


def _digest(path: Path, signals: Signals | None = None) -> dict:
    """{"size": bytes, "sha256": hex} of `path`; stops (PreemptedError) when `signals` gets one."""
    sha, size, buffer = hashlib.sha256(), 0, bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            sha.update(view[:n])
            size += n
            if signals is not None and signals.received is not None:
                raise PreemptedError(
                    f"{signals.name} while checking {path} against its manifest: nothing new to "
                    "checkpoint; a rerun checks it again"
                )
    return {"size": size, "sha256": sha.hexdigest()}


def digests(root: Path, names: list[str], signals: Signals | None = None) -> dict[str, dict]:
    """{name: `_digest`} of the files `names` of `root`, a few at a time."""
    if not names:
        return {}
    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, len(names))) as pool:
        found = pool.map(lambda name: _digest(root / name, signals), names)
        return dict(zip(names, found, strict=True))


def manifest(checkpoint: Path) -> dict[str, dict]:
    """The COMPLETE manifest of `checkpoint` (`digests` of `_files`), on rank 0; every rank of a
    process group hashes its share of the files (rank 0 lists them) and rank 0 gathers them.
    Called by every rank once all have written their part."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return digests(checkpoint, _files(checkpoint))
    rank, world = dist.get_rank(), dist.get_world_size()
    names = [_files(checkpoint) if rank == 0 else None]
    dist.broadcast_object_list(names, src=0)
    shares: list = [None] * world
    dist.all_gather_object(shares, digests(checkpoint, names[0][rank::world]))
    return {name: entry for share in shares for name, entry in share.items()}


def verify(checkpoint: Path, signals: Signals | None = None) -> str | None:
    """Why `checkpoint` cannot be resumed from (None: it can), by its COMPLETE manifest: a file
    listed there missing, of another size, or with another sha256. Files it does not list are
    not looked at. A checkpoint whose COMPLETE has no manifest (an older sekd wrote only the
    step) is trusted: it was marked complete once every rank had written its part, as now, and
    discarding it would throw away the run's progress; only a corruption after the fact would go
    unnoticed, as it did then."""
    try:
        listed = json.loads((checkpoint / COMPLETE).read_text())
    except (OSError, ValueError) as error:
        return f"its completion mark {COMPLETE} cannot be read ({error})"
    if "files" not in listed:
        log.warning("%s: written without a manifest (an older sekd): trusted unchecked", checkpoint)
        return None
    files, problems = listed["files"], []
    for name, entry in files.items():
        path = checkpoint / name
        size = path.stat().st_size if path.is_file() else None
        if size is None:
            problems.append(f"{name} is missing")
        elif size != entry["size"]:
            problems.append(f"{name} has {size} bytes, its manifest {entry['size']} (truncated)")
    if not problems:
        found = digests(checkpoint, list(files), signals)
        problems = [
            f"{name} differs from its manifest (sha256 {found[name]['sha256'][:12]}..., "
            f"listed {entry['sha256'][:12]}...: corrupt)"
            for name, entry in files.items()
            if found[name]["sha256"] != entry["sha256"]
        ]
    if not problems:
        return None
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


class StepTimer(TrainerCallback):
    """Wall and process CPU time of every optimizer step (forward, teacher or store,
    backward, update)."""

    def __init__(self):
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = self._cpu = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(round(time.perf_counter() - self._start, 6))
        self.cpu_seconds.append(round(time.process_time() - self._cpu, 6))


def job_key(job: Any, world_size: int) -> dict:
    """What the checkpoints of `job` (a sekd.train.job.TrainJob) depend on: all but threads,
    gpus_per_node, save_steps and nproc_per_node; the world size under DeepSpeed (ZeRO-3
    partitions per rank). The plan (the run's values) is left out: `variant`, its name, identifies
    it one to one, and checkpoints written before the plan travelled keep resuming."""
    key = asdict(job)
    for name in ("threads", "gpus_per_node", "resume_from_checkpoint", "plan"):
        key.pop(name)
    key["training"] = {
        k: v for k, v in job.training.items() if k not in ("save_steps", "nproc_per_node")
    }
    key["world_size"] = world_size if job.training.get("deepspeed") else None
    return json.loads(json.dumps(key))


def prepare_checkpoints(
    job: Any, world_size: int = 1, signals: Signals | None = None
) -> str | None:
    """Tidy `job.checkpoint_dir` before training; return the checkpoint to resume from, if any.

    Runs in one process before any rank starts: checkpoints without the COMPLETE mark (the run was
    killed while writing them) are removed, and so are all checkpoints when they were trained with
    a different job (another config, or another world size under DeepSpeed, whose ZeRO-3
    checkpoints are partitioned per rank). Of the rest, the newest that matches its manifest
    (`verify`) is the one to resume from; newer ones that do not are removed, each with a warning
    that says why. `job` is a sekd.train.job.TrainJob; a signal in `signals` stops the checking
    (`PreemptedError`, nothing removed).
    """
    root = Path(job.checkpoint_dir)
    key = job_key(job, world_size)
    (root / PREEMPTED).unlink(missing_ok=True)
    found = checkpoints(root)
    if found:
        try:
            same = json.loads((root / JOB_KEY).read_text()) == key
        except (OSError, ValueError):
            same = False
        if not same:
            log.warning("%s: checkpoints of another job; starting over", root)
        for checkpoint in found:
            if not same or not (checkpoint / COMPLETE).is_file():
                shutil.rmtree(checkpoint)
    root.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(root / JOB_KEY) as tmp:
        tmp.write_text(json.dumps(key, indent=1))
    try:
        intact = newest_intact(root, signals)
    except PreemptedError as stop:  # a signal while hashing: the checkpoints are as they were
        _note(root, str(stop))
        raise
    if intact is not None:
        log.info("resuming from %s", intact)
        return str(intact)
    return None


def newest_intact(root: Path, signals: Signals | None = None) -> Path | None:
    """The newest complete checkpoint of `root` that matches its manifest; the newer ones that do
    not are removed (a warning names each and why)."""
    for checkpoint in reversed(checkpoints(root)):
        start = time.perf_counter()
        try:
            problem = verify(checkpoint, signals)
        except OSError as error:
            problem = f"cannot be read ({error})"
        if problem is None:
            log.info("%s matches its manifest (%.1f s)", checkpoint, time.perf_counter() - start)
            return checkpoint
        log.warning(
            "%s does not match its manifest, not resumed from and removed: %s", checkpoint, problem
        )
        shutil.rmtree(checkpoint, ignore_errors=True)
    return None
