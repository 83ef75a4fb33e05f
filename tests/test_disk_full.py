"""A full disk (issue 23, item 1): a checkpoint, the final model or a teacher store that runs out
of space stops with `sekd.errors.DiskFullError` naming the path and the free space; the previous
checkpoint and every finished output stay, nothing partial is left that looks complete, and once
space is freed a rerun resumes. On a tmpfs of a few hundred KiB mounted by the test (skipped where
mounting is not permitted), and with ENOSPC simulated, which runs everywhere. The write helper
itself: tests/test_atomic.py."""

from __future__ import annotations

import errno
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest
import transformers
from conftest import LANGUAGES, TINY_TRAINING, tiny_job
from safetensors.torch import load_file

from sekd import atomic
from sekd.data import alma as data
from sekd.errors import DiskFullError
from sekd.teacher import store as ts
from sekd.train import checkpoints
from sekd.train import job as train

TRAINING = {"epochs": 3, "save_steps": 2, "select_best_sft": False}
STEPS = 9  # 12 examples / batch 4 x 3 epochs
# A checkpoint of the tiny model is about 480 KiB: one fits in CHECKPOINT_FS, two do not.
CHECKPOINT_FS = "700k"
MODEL_FS = "100k"  # the saved model is about 170 KiB


@pytest.fixture
def train_file(tiny_records, tmp_path) -> Path:
    data.write_jsonl(tiny_records, tmp_path / "train.jsonl")
    return tmp_path / "train.jsonl"


def _job(tmp_path, base, train_file, name, **paths) -> train.TrainJob:
    return replace(tiny_job(tmp_path / name, base, train_file, training=TRAINING), **paths)


def _same_weights(a, b) -> None:
    first, second = (load_file(str(Path(p) / "model.safetensors")) for p in (a, b))
    assert first.keys() == second.keys()
    assert all((first[k] == second[k]).all() for k in first)


def _resumed(job, caplog) -> tuple[dict, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sekd.train.job"):
        summary = train.run(job)
    return summary, [r.getMessage() for r in caplog.records if r.name.startswith("sekd.train")]


def _checkpoint_left(job, step) -> None:
    """The checkpoint dir holds checkpoint-`step` only, complete and matching its manifest."""
    root = Path(job.checkpoint_dir)
    assert [p.name for p in checkpoints.checkpoints(root)] == [f"checkpoint-{step}"]
    assert checkpoints.verify(root / f"checkpoint-{step}") is None


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one_and_the_rerun_resumes(
    tmp_path, tiny_model_dir, train_file, small_fs, caplog
):
    reference = _job(tmp_path, tiny_model_dir, train_file, "reference")
    train.run(reference)
    fs = small_fs.mount("checkpoints", CHECKPOINT_FS)
    job = _job(tmp_path, tiny_model_dir, train_file, "sft", checkpoint_dir=str(fs / "sft"))
    with pytest.raises(DiskFullError) as raised:
        train.run(job)
    message = str(raised.value)
    assert message.startswith(f"{fs}/sft/checkpoint-4: no space left on the device")
    assert f"free on its file system ({fs})" in message
    assert f"the previous checkpoint, {fs}/sft/checkpoint-2, is intact" in message
    _checkpoint_left(job, 2)  # the partial checkpoint-4 is gone, checkpoint-2 untouched
    assert not Path(job.out_dir).exists() and not atomic.temporary(job.out_dir).exists()

    small_fs.resize(fs, "4m")  # space freed
    summary, logged = _resumed(job, caplog)
    assert f"resuming from {fs}/sft/checkpoint-2" in logged
    assert summary["global_steps"] == STEPS
    _same_weights(job.out_dir, reference.out_dir)
    assert not Path(job.checkpoint_dir).exists()


@pytest.mark.slow
def test_a_model_that_does_not_fit_leaves_the_checkpoints_and_the_rerun_saves_it(
    tmp_path, tiny_model_dir, train_file, small_fs, caplog
):
    fs = small_fs.mount("models", MODEL_FS)
    job = _job(tmp_path, tiny_model_dir, train_file, "sft", out_dir=str(fs / "sft"))
    with pytest.raises(DiskFullError) as raised:
        train.run(job)
    assert str(raised.value).startswith(f"{fs}/sft: no space left on the device while writing")
    assert f"free on its file system ({fs})" in str(raised.value)
    assert f"it resumes from {job.checkpoint_dir}/checkpoint-8, kept," in str(raised.value)
    assert list(fs.iterdir()) == []  # neither the model nor a partial sft.tmp
    _checkpoint_left(job, 8)  # the run's last checkpoint stays for the rerun

    small_fs.resize(fs, "4m")
    summary, logged = _resumed(job, caplog)
    assert f"resuming from {job.checkpoint_dir}/checkpoint-8" in logged
    assert summary["global_steps"] == STEPS
    saved = json.loads((Path(job.out_dir) / "train_summary.json").read_text())
    assert saved["global_steps"] == STEPS and not Path(job.checkpoint_dir).exists()


def test_enospc_in_a_checkpoint_is_named_and_the_rerun_resumes_without_a_small_disk(
    tmp_path, tiny_model_dir, train_file, monkeypatch, caplog
):
    """The same without mounting anything: the optimizer's state of checkpoint 4 fails half
    written, as torch.save into a full disk would."""
    original = transformers.Trainer._save_optimizer_and_scheduler

    def full_at_4(self, output_dir):
        if self.state.global_step == 4:
            (Path(output_dir) / "optimizer.pt").write_bytes(b"half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, output_dir)

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", full_at_4)
    job = _job(tmp_path, tiny_model_dir, train_file, "sft")
    with pytest.raises(DiskFullError, match="checkpoint-4: no space left on the device") as raised:
        train.run(job)
    assert raised.value.free is not None and "checkpoint-2, is intact" in str(raised.value)
    _checkpoint_left(job, 2)
    assert not Path(job.out_dir).exists()

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", original)
    summary, logged = _resumed(job, caplog)
    assert f"resuming from {job.checkpoint_dir}/checkpoint-2" in logged
    assert summary["global_steps"] == STEPS


def test_a_teacher_store_that_does_not_fit_stops_before_the_teacher_runs(
    tmp_path, tiny_model_dir, tiny_teacher_dir, train_file, small_fs, monkeypatch
):
    """Its arrays are memory-mapped: space is allocated when they are created (a write into a
    mapping of a full disk would kill the process with SIGBUS, saying nothing)."""
    fs = small_fs.mount("stores", "64k")
    job = ts.StoreJob(
        teacher_model=str(tiny_teacher_dir),
        student_model=str(tiny_model_dir),
        tokenizer_dir=str(tiny_model_dir),
        train_files=[str(train_file)],
        languages=LANGUAGES,
        max_length=TINY_TRAINING["max_length"],
        out_dir=str(fs / "full"),
        mode="full",
    )
    ran = []
    monkeypatch.setattr(ts, "_fill", lambda *args, **kwargs: ran.append(True))
    with pytest.raises(DiskFullError, match=r"full\.tmp/logprobs\.npy: no space left") as raised:
        ts.build(job)
    assert "it needs" in str(raised.value) and f"free on its file system ({fs})" in str(
        raised.value
    )
    assert not ran and list(fs.iterdir()) == []
    small_fs.resize(fs, "4m")
    monkeypatch.undo()
    meta = ts.build(job)
    assert meta["num_tokens"] > 0 and (fs / "full" / "store.json").is_file()
