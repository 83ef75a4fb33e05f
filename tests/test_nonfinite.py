"""NaN or inf in either model's logits stops training at the first bad step, with a message that
names the step and the model, and nothing of the run is saved (issue 13, class 1)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_job

from sekd import models
from sekd.data import alma as data
from sekd.errors import NonFiniteError
from sekd.plan.variants import make_variant
from sekd.train import job as train

# 6 tiny records, batch 4 = 2 micro-batches of 2: model calls 3 and 4 are optimizer step 2
BAD_CALL = 3


@pytest.fixture(scope="module")
def train_file(tiny_records, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    data.write_jsonl(tiny_records, path)
    return path


def _run(objective, train_file, model_dir, out):
    variant = make_variant(objective, {"lam": 0.5, "beta": 0.5, "gamma": 0.4})
    variant = "sft" if objective == "sft" else variant
    teacher = model_dir if objective != "sft" else None
    return train.run(tiny_job(out, model_dir, train_file, variant=variant, teacher=teacher))


def _corrupt_on_call(model, value: float, *, whole_row: bool = False):
    """A forward hook that puts `value` into the logits of the model's BAD_CALL-th call (one
    entry, or one whole position's row), keeping the autograd graph."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == BAD_CALL:
            poison = torch.zeros_like(output.logits)
            if whole_row:
                poison[0, -2, :] = value
            else:
                poison[0, -2, 5] = value
            output.logits = output.logits + poison
        return output

    model.register_forward_hook(hook)
    return model


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("objective", ["forward_kd", "sekd"])
def test_nan_or_inf_from_the_teacher_stops_at_that_step(
    monkeypatch, train_file, tiny_model_dir, tmp_path, objective, value
):
    load = models.load_teacher
    monkeypatch.setattr(
        models, "load_teacher", lambda *a, **k: _corrupt_on_call(load(*a, **k), value)
    )
    with pytest.raises(
        NonFiniteError, match=r"teacher's logits hold NaN or inf at optimizer step 2"
    ):
        _run(objective, train_file, tiny_model_dir, tmp_path / "kd")
    assert not (tmp_path / "kd").exists()


def test_an_all_minus_inf_teacher_row_stops_although_the_loss_stays_finite(
    monkeypatch, train_file, tiny_model_dir, tmp_path
):
    load = models.load_teacher
    monkeypatch.setattr(
        models,
        "load_teacher",
        lambda *a, **k: _corrupt_on_call(load(*a, **k), -math.inf, whole_row=True),
    )
    with pytest.raises(NonFiniteError, match=r"teacher's logits .* optimizer step 2"):
        _run("forward_kd", train_file, tiny_model_dir, tmp_path / "kd")


@pytest.mark.parametrize("value", [math.nan, math.inf])
@pytest.mark.parametrize("objective", ["sft", "sekd"])
def test_nan_or_inf_from_the_student_stops_at_that_step(
    monkeypatch, train_file, tiny_model_dir, tmp_path, objective, value
):
    load, loaded = models.load_causal_lm, []

    def load_student_first(*args, **kwargs):  # the student is loaded first, then the teacher
        model = load(*args, **kwargs)
        loaded.append(model)
        return _corrupt_on_call(model, value) if len(loaded) == 1 else model

    monkeypatch.setattr(models, "load_causal_lm", load_student_first)
    name = make_variant(objective, {"lam": 0.5, "beta": 0.5, "gamma": 0.4}).name
    with pytest.raises(NonFiniteError) as caught:
        _run(objective, train_file, tiny_model_dir, tmp_path / "run")
    assert str(caught.value).startswith(
        f"{name}: the student's logits hold NaN or inf at optimizer step 2 (training)"
    )
    assert not (tmp_path / "run").exists()


def test_finite_runs_are_untouched(train_file, tiny_model_dir, tmp_path):
    summary = _run("sekd", train_file, tiny_model_dir, tmp_path / "kd")
    assert all(math.isfinite(e["loss"]) for e in summary["log_history"] if "loss" in e)


@pytest.mark.parametrize("objective", ["sft", "forward_kd", "sekd", "sekd_topk"])
def test_an_empty_sequence_dimension_is_a_zero_loss_on_both_paths(objective):
    """T = 0 (no position at all) used to raise a storage error on the chunked path."""
    from sekd.train.losses import distill_loss

    labels = torch.zeros(2, 0, dtype=torch.long)
    for chunk_size in ("auto", None):
        student = torch.randn(2, 0, 50, requires_grad=True)
        out = distill_loss(
            student, torch.randn(2, 0, 50), labels, objective, chunk_size=chunk_size,
            top_k_percent=20,
        )  # fmt: skip
        out.loss.backward()
        assert out.loss.item() == 0.0 and out.num_tokens == 0
        assert student.grad.shape == student.shape
