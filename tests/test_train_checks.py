"""Training settings that used to be accepted and then silently did something else (issue 13)."""

from __future__ import annotations

import pytest
from conftest import tiny_job

from sekd.data import alma as data
from sekd.train import job as train


def _sft_job(tmp_path, records, model_dir, **training):
    data.write_jsonl(records, tmp_path / "train.jsonl")
    data.write_jsonl(records[:4], tmp_path / "valid.jsonl")
    return tiny_job(
        tmp_path / "sft",
        model_dir,
        tmp_path / "train.jsonl",
        valid_file=tmp_path / "valid.jsonl",
        training=training,
    )


def test_eval_steps_longer_than_the_run_is_an_error(tiny_records, tiny_model_dir, tmp_path):
    """12 examples, batch 4, 2 epochs = 6 optimizer steps: an evaluation every 7 would never run,
    and the best SFT checkpoint (§4.2) would silently not be selected."""
    job = _sft_job(tmp_path, tiny_records, tiny_model_dir, eval_steps=7)
    with pytest.raises(ValueError, match=r"training.eval_steps=7 is more than the run's 6"):
        train.run(job)
    assert not (tmp_path / "sft").exists()


def test_eval_steps_within_the_run_selects_the_best_checkpoint(
    tiny_records, tiny_model_dir, tmp_path
):
    summary = train.run(_sft_job(tmp_path, tiny_records, tiny_model_dir, eval_steps=3))
    assert summary["best_checkpoint"] is not None
