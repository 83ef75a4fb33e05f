"""The checkpoint and preemption protocol of a training run, and its step timer.

Checkpoints are written every ``training.save_steps`` optimizer steps and when SIGUSR1, SIGTERM or
SIGINT arrives (SLURM's warning before a time limit, a requeue, Ctrl-C or an interrupted Snakemake,
sekd.train.run_lock); a checkpoint is trusted only once every
rank has written its part (the COMPLETE mark). Before a run starts, `prepare_checkpoints` removes
incomplete checkpoints and those of another job, and names the one to resume from, so that a rerun
of a killed or requeued job continues where it stopped (docs/deepspeed.md).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback

from sekd.train.distributed import PreemptedError

# a child of sekd.train.job: a run's messages (tests listen to "sekd.train.job") stay under one name
log = logging.getLogger("sekd.train.job.checkpoints")

COMPLETE = "sekd_complete.json"  # written into a checkpoint once every rank has finished it
PREEMPTED = "preempted.json"  # written into checkpoint_dir when a signal stopped the run
JOB_KEY = "sekd_job.json"  # what the checkpoints in checkpoint_dir were trained with
EXIT_PREEMPTED = 75  # a rank's exit status after a signal-triggered checkpoint (EX_TEMPFAIL)
# Signals that make a run checkpoint at the end of the step and stop: SLURM's warning (USR1), a
# requeue or the Snakemake watchdog (TERM, sekd.train.run_lock), Ctrl-C or Snakemake's SIGINT (INT).
SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def checkpoints(root: Path) -> list[Path]:
    """checkpoint-N directories of `root`, by step."""
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


class CheckpointCallback(TrainerCallback):
    """Checkpoints every `save_steps` optimizer steps and when one of `SIGNALS` arrives.

    A signal only sets a flag; at the end of the step the ranks agree on it (all-reduce, so a
    signal that reached one rank stops all at the same step), save, mark the checkpoint
    complete and raise `PreemptedError`. A checkpoint is marked complete (COMPLETE) only once
    all ranks wrote their part; then older ones are removed (the best SFT one is kept).
    """

    def __init__(self, save_steps: int | None, checkpoint_dir: str):
        self.save_steps = save_steps
        self.root = Path(checkpoint_dir)
        self.signalled: int | None = None
        self.stopping = False
        self._previous: dict = {}

    def _on_signal(self, signum, frame):
        self.signalled = signum

    def install(self) -> None:
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: signals stay as they are
                return

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _any_rank_signalled(self, args) -> bool:
        flag = self.signalled is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            t = torch.tensor([float(flag)], device=args.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

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
        if state.is_world_process_zero:
            (checkpoint / COMPLETE).write_text(json.dumps({"step": state.global_step}))
            best = state.best_model_checkpoint
            for old in checkpoints(self.root):
                if old != checkpoint and (best is None or old.name != Path(best).name):
                    shutil.rmtree(old, ignore_errors=True)
            if self.stopping:
                what = signal.Signals(self.signalled).name if self.signalled else "a signal"
                (self.root / PREEMPTED).write_text(
                    f"{what}: checkpointed {checkpoint} at step {state.global_step} of "
                    f"{state.max_steps}; a rerun resumes from it"
                )
        barrier()
        if self.stopping:
            raise PreemptedError(f"checkpointed at step {state.global_step} on a signal")


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


def prepare_checkpoints(job: Any, world_size: int = 1) -> str | None:
    """Tidy `job.checkpoint_dir` before training; return the checkpoint to resume from, if any.

    Runs in one process before any rank starts: checkpoints without the COMPLETE mark (the run was
    killed while writing them) are removed, and so are all checkpoints when they were trained with
    a different job (another config, or another world size under DeepSpeed, whose ZeRO-3
    checkpoints are partitioned per rank). `job` is a sekd.train.job.TrainJob.
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
    (root / JOB_KEY).write_text(json.dumps(key, indent=1))
    complete = checkpoints(root)
    if complete:
        log.info("resuming from %s", complete[-1])
        return str(complete[-1])
    return None
