"""What transformers 4.57 (`make test-tf4`) and 5.x (the workflow's venv, the GPU image) spell
differently gives the same run on both: the warm-up steps and the dtype of loaded weights."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import TrainingArguments

from sekd import models
from sekd.train import job as train

FIVE = int(transformers.__version__.split(".")[0]) >= 5


def _args(tmp_path, ratio: float) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], **train._across_versions(ratio)
    )


@pytest.mark.parametrize(("ratio", "steps", "expected"), [(0.03, 100, 3), (0.1, 27, 3), (0, 50, 0)])
def test_warmup_ratio_is_the_same_fraction_of_the_run_on_both_versions(
    tmp_path, ratio, steps, expected
):
    assert _args(tmp_path, ratio).get_warmup_steps(steps) == expected


def test_a_whole_run_of_warmup(tmp_path):
    if FIVE:  # a warmup_steps of 1.0 is one step there: refused rather than silently changed
        with pytest.raises(ValueError, match=r"training.warmup_ratio=1"):
            train._across_versions(1.0)
    else:
        assert _args(tmp_path, 1.0).get_warmup_steps(40) == 40


def test_weights_load_in_the_asked_dtype(tiny_model_dir):
    model = models.load_causal_lm(tiny_model_dir, "bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
