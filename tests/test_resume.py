"""Resume on preemption: a run killed (SIGKILL) or signalled (SIGUSR1) mid-way and rerun ends
with the same weights and the same logged metrics as an uninterrupted run, bit for bit on CPU."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAINING
from safetensors.torch import load_file

from sekd.data import alma as data
from sekd.plan.variants import make_variant
from sekd.train import checkpoints
from sekd.train import job as train

pytestmark = [pytest.mark.resume, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {**TINY_TRAINING, "epochs": 3, "learning_rate": 1e-2, "save_steps": 2}
KD = {"lam": 0.5, "beta": (0.9, 0.1), "gamma": 0.4, "top_k_percent": 20}
STEPS = 9  # 12 examples / batch 4 x 3 epochs
# Runs the job in a fresh process, each optimizer step slowed down so that the test can interrupt
# it mid-way (the sleep changes no number).
DRIVER = """
import json, sys, time
import transformers
from sekd.train import job as train

training_step = transformers.Trainer.training_step
def slow(self, *args, **kwargs):
    time.sleep(float(sys.argv[2]))
    return training_step(self, *args, **kwargs)
transformers.Trainer.training_step = slow
train.run(train.TrainJob(**json.loads(open(sys.argv[1]).read())))
"""


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    data.write_jsonl(tiny_records[:4], root / "valid.jsonl")
    teacher = tiny_teacher_dir
    (root / "driver.py").write_text(DRIVER)
    return root, teacher


def _job(root, base, name, variant="sft", teacher=None):
    from conftest import LANGUAGES

    return train.TrainJob(
        variant="sft" if variant == "sft" else variant.name,
        plan=None if variant == "sft" else variant,
        base_model=str(base),
        tokenizer_dir=str(base),
        train_files=[str(root / "train.jsonl")],
        valid_files=[] if teacher else [str(root / "valid.jsonl")],
        teacher_model=str(teacher) if teacher else None,
        out_dir=str(root / name),
        checkpoint_dir=str(root / f"{name}-checkpoints"),
        languages=LANGUAGES,
        training=dict(TRAINING),
        seed=1,
    )


def _start(root, job, delay=0.4):
    from dataclasses import asdict

    path = Path(job.checkpoint_dir + ".json")
    path.write_text(json.dumps(asdict(job)))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow")}
    return subprocess.Popen(
        [sys.executable, str(root / "driver.py"), str(path), str(delay)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_checkpoint(proc, job, step, timeout=180):
    marker = Path(job.checkpoint_dir) / f"checkpoint-{step}" / checkpoints.COMPLETE
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before checkpoint {step}:\n{proc.stdout.read()[-3000:]}")
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint {step} after {timeout} s")
        time.sleep(0.05)


def _metrics(summary):
    """Every logged number but timings; the best checkpoint by name."""
    keep = ("loss", "grad_norm", "learning_rate", "epoch", "step", "eval_loss", "hard_fraction")
    history = [
        {k: v for k, v in e.items() if k in keep}
        for e in summary["log_history"]
        if "train_runtime" not in e
    ]
    best = summary["best_checkpoint"]
    return history, best and Path(best).name, summary["best_eval_loss"], summary["global_steps"]


def _same_weights(a, b):
    first, second = (load_file(str(Path(p) / "model.safetensors")) for p in (a, b))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def _resume(job, caplog):
    with caplog.at_level(logging.INFO, logger="sekd.train.job"):
        summary = train.run(job)
    resumed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming")]
    return summary, resumed


def test_sigkill_then_rerun_resumes_sft_with_best_checkpoint_selection(
    setup, tiny_model_dir, caplog
):
    root, _ = setup
    reference = train.run(_job(root, tiny_model_dir, "sft-reference"))
    assert reference["best_checkpoint"] and reference["global_steps"] == STEPS

    job = _job(root, tiny_model_dir, "sft")
    proc = _start(root, job)
    _wait_for_checkpoint(proc, job, 4)  # mid-way through the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not Path(job.out_dir).exists()

    summary, resumed = _resume(job, caplog)
    assert resumed and int(resumed[0].rsplit("-", 1)[1]) >= 4
    assert _metrics(summary) == _metrics(reference)
    evals = [e["eval_loss"] for e in summary["log_history"] if "eval_loss" in e]
    assert len(evals) == 3 and summary["best_eval_loss"] == min(evals)
    _same_weights(job.out_dir, root / "sft-reference")
    assert not Path(job.checkpoint_dir).exists()  # removed after the successful run


def test_sigusr1_checkpoints_stops_and_the_rerun_resumes_kd(setup, tiny_model_dir, caplog):
    root, teacher = setup
    variant = make_variant("skew_kd", KD)  # progressive β: the schedule resumes too
    reference = train.run(_job(root, tiny_model_dir, "kd-reference", variant, teacher))

    job = _job(root, tiny_model_dir, "kd", variant, teacher)
    proc = _start(root, job)
    _wait_for_checkpoint(proc, job, 2)
    proc.send_signal(signal.SIGUSR1)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "PreemptedError" in output, output[-3000:]
    note = (Path(job.checkpoint_dir) / checkpoints.PREEMPTED).read_text()
    assert note.startswith("SIGUSR1: checkpointed")
    stopped_at = max(
        int(p.name.split("-")[1]) for p in Path(job.checkpoint_dir).glob("checkpoint-*")
    )
    assert 2 <= stopped_at < STEPS
    assert (Path(job.checkpoint_dir) / f"checkpoint-{stopped_at}" / checkpoints.COMPLETE).exists()

    summary, resumed = _resume(job, caplog)
    assert resumed and resumed[0].endswith(f"checkpoint-{stopped_at}")
    assert _metrics(summary) == _metrics(reference)
    _same_weights(job.out_dir, root / "kd-reference")


def test_checkpoints_of_another_job_or_incomplete_ones_are_not_resumed(setup, tiny_model_dir):
    root, _ = setup
    job = _job(root, tiny_model_dir, "tidy")
    ckpts = Path(job.checkpoint_dir)
    assert checkpoints.prepare_checkpoints(job) is None  # records the job the checkpoints belong to
    for step, complete in ((2, True), (4, True), (6, False)):
        (ckpts / f"checkpoint-{step}").mkdir(parents=True)
        if complete:
            (ckpts / f"checkpoint-{step}" / checkpoints.COMPLETE).write_text("{}")
    assert checkpoints.prepare_checkpoints(job) == str(ckpts / "checkpoint-4")
    assert not (ckpts / "checkpoint-6").exists()  # killed while writing it
    # save_steps and threads may change between attempts; the learning rate may not
    again = train.TrainJob(**{**job.__dict__, "threads": 2})
    again.training = {**job.training, "save_steps": 5}
    assert checkpoints.prepare_checkpoints(again) == str(ckpts / "checkpoint-4")
    other = train.TrainJob(**{**job.__dict__, "training": {**job.training, "learning_rate": 1.0}})
    assert checkpoints.prepare_checkpoints(other) is None
    assert not list(ckpts.glob("checkpoint-*"))
