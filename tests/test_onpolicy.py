"""On-policy training (sekd.train.onpolicy, sekd.train.trainer): the student's samples reach the
loss with the prompt masked and their EOS kept, the on-policy steps follow onpolicy_fraction
deterministically, gold steps keep the gold batch, and seeded runs are deterministic."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import LANGUAGES, tiny_job
from safetensors.torch import load_file

from sekd import models
from sekd.data import alma as data
from sekd.data.batches import PadCollator, encode_files, prompt_length
from sekd.plan.variants import make_variant
from sekd.train import job as train
from sekd.train import onpolicy, sampling, trainer

EOS, PAD = 2, 0
STUDENT = {"student_temperature": 1.0, "student_top_k": 0, "student_top_p": 1.0}
FD_RKL = make_variant("fd_rkl", STUDENT)
GKD = make_variant("gkd", {**STUDENT, "jsd_beta": 0.5, "onpolicy_fraction": 0.5})
FD_JS = make_variant(
    "fd_js",
    {**STUDENT, "teacher_temperature": 1.0, "teacher_top_k": 0, "teacher_top_p": 1.0},
)
MAX_NEW = 12
SEQUENCES = {"max_new_tokens": MAX_NEW}


# --- repacking and the per-step decision ---------------------------------------------------------


def test_repack_masks_the_prompt_keeps_eos_and_pads_right():
    prompts = [[5, 6, 7], [8, 9]]
    samples = [([11, 12, EOS], True), ([EOS], True)]
    out = onpolicy.repack(prompts, samples, max_length=16, pad_token_id=PAD)
    b = out.batch
    assert b["input_ids"].tolist() == [[5, 6, 7, 11, 12, EOS], [8, 9, EOS, PAD, PAD, PAD]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]
    assert b["labels"].tolist() == [
        [-100, -100, -100, 11, 12, EOS],
        [-100, -100, EOS, -100, -100, -100],
    ]
    assert all(v.dtype == torch.long for v in b.values())
    assert (out.empty, out.truncated) == (1, 0)


def test_repack_counts_truncated_samples_and_cuts_at_max_length():
    prompts = [[5, 6, 7], [8, 9], [4]]
    # unfinished (no EOS); finished but its EOS past max_length; finished and fitting
    samples = [([11, 12], False), ([13, 14, 15, EOS], True), ([16, EOS], True)]
    out = onpolicy.repack(prompts, samples, max_length=5, pad_token_id=PAD)
    assert out.batch["input_ids"].tolist() == [
        [5, 6, 7, 11, 12],
        [8, 9, 13, 14, 15],
        [4, 16, EOS, PAD, PAD],
    ]
    assert out.batch["labels"][1].tolist() == [-100, -100, 13, 14, 15]  # EOS cut
    assert (out.empty, out.truncated) == (0, 2)
    with pytest.raises(ValueError, match="fills max_length"):
        onpolicy.repack([[1, 2, 3, 4, 5]], [([EOS], True)], max_length=5, pad_token_id=PAD)


def test_the_sampling_budget_never_changes_a_kept_token():
    assert onpolicy.new_token_budget([[1] * 10, [1] * 4], 96, 128) == 96
    assert onpolicy.new_token_budget([[1] * 10, [1] * 4], 96, 20) == 16
    with pytest.raises(ValueError, match="no room"):
        onpolicy.new_token_budget([[1] * 20], 96, 20)


def test_the_onpolicy_decision_is_deterministic_and_follows_the_fraction():
    steps = range(4000)
    for fraction in (0.25, 0.5, 0.9):
        drawn = [onpolicy.onpolicy_step(7, s, fraction) for s in steps]
        assert drawn == [onpolicy.onpolicy_step(7, s, fraction) for s in steps]
        assert abs(sum(drawn) / len(drawn) - fraction) < 0.03  # ~4 standard errors
    assert not any(onpolicy.onpolicy_step(7, s, 0.0) for s in steps)
    assert all(onpolicy.onpolicy_step(7, s, 1.0) for s in steps)
    other = [onpolicy.onpolicy_step(8, s, 0.5) for s in steps]
    assert other != [onpolicy.onpolicy_step(7, s, 0.5) for s in steps]  # the run's seed counts
    # nested: a step on-policy at fraction f is on-policy at every larger fraction
    assert all(
        onpolicy.onpolicy_step(7, s, 0.9) for s in steps if onpolicy.onpolicy_step(7, s, 0.5)
    )
    with pytest.raises(ValueError, match="onpolicy_fraction"):
        onpolicy.onpolicy_step(7, 0, 1.5)


def test_sample_seeds_and_epochs():
    assert onpolicy.sample_seeds(1, [3, 4], 0) == [
        sampling.row_seed(1, 3, 0),
        sampling.row_seed(1, 4, 0),
    ]
    assert onpolicy.sample_seeds(1, [3], 1) != onpolicy.sample_seeds(1, [3], 0)
    assert [onpolicy.epoch_of(e) for e in (None, 0.0, 0.75, 1.0, 1.5)] == [0, 0, 0, 1, 1]


def test_the_collator_adds_index_and_prompt_length_and_keeps_the_gold_batch():
    examples = [
        {"input_ids": [1, 2, 3, 4], "attention_mask": [1] * 4, "labels": [-100, -100, 3, 4]},
        {"input_ids": [1, 5, 6], "attention_mask": [1] * 3, "labels": [-100, 5, 6]},
    ]
    for i, ex in enumerate(examples):
        ex["index"] = 10 + i
    plain = PadCollator(PAD)(examples)
    batch = PadCollator(PAD, prompt_fields=True)(examples)
    assert batch["example_index"].tolist() == [10, 11]
    assert batch["prompt_length"].tolist() == [2, 1]
    assert set(batch) == {*plain, "example_index", "prompt_length"}
    assert all(torch.equal(batch[k], plain[k]) for k in plain)
    assert prompt_length([-100, -100, -100]) == 3 and prompt_length([4, -100]) == 0
    del examples[0]["index"]
    with pytest.raises(KeyError, match="index"):
        PadCollator(PAD, prompt_fields=True)(examples)


# --- training runs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("onpolicy")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    teacher = tiny_teacher_dir
    return root, teacher


def _job(setup, base, variant, name, **training):
    root, teacher = setup
    return tiny_job(
        root / name,
        base,
        root / "train.jsonl",
        variant=variant,
        teacher=teacher,
        training={"epochs": 1, **training},
        sequences=SEQUENCES,
    )


def _capture(monkeypatch) -> tuple[list, list]:
    """Record what reaches distill_loss (labels, on_policy, loss) and sekd.train.sampling.sample
    (prompts, seeds, samples) during training."""
    losses, draws = [], []
    real_loss, real_sample = trainer.distill_loss, onpolicy.sample

    def loss(student, teacher, labels, objective, **kwargs):
        out = real_loss(student, teacher, labels, objective, **kwargs)
        losses.append((labels.clone(), kwargs.get("on_policy"), out.loss.detach().clone()))
        return out

    def sample(model, prompts, seeds, **kwargs):
        out = real_sample(model, prompts, seeds, **kwargs)
        draws.append((prompts, seeds, out, kwargs))
        return out

    monkeypatch.setattr(trainer, "distill_loss", loss)
    monkeypatch.setattr(onpolicy, "sample", sample)
    return losses, draws


def _examples(setup, tok) -> list[dict]:
    """The tokenised training set of the runs, in order (its position = "index")."""
    return encode_files([str(setup[0] / "train.jsonl")], tok, LANGUAGES, 128)


def _rows(labels: torch.Tensor) -> list[list[int]]:
    """Rows of shifted labels [B, T-1] without their trailing -100 padding."""
    out = []
    for row in labels.tolist():
        while row and row[-1] == -100:
            row.pop()
        out.append(row)
    return out


def test_fd_rkl_trains_on_the_students_samples(setup, tiny_model_dir, tiny_tokenizer, monkeypatch):
    losses, draws = _capture(monkeypatch)
    summary = train.run(_job(setup, tiny_model_dir, FD_RKL, "rkl-capture"))
    steps = summary["global_steps"]
    assert steps == 3 and len(draws) == len(losses) == 2 * steps  # 2 micro-batches a step
    assert all(on_policy is True for _, on_policy, _ in losses)

    # The first draw is the base student's: resampling its prompts with the seeds of their
    # examples (row_seed(run seed, index, epoch 0)) gives the same tokens.
    examples = _examples(setup, tiny_tokenizer)
    index_of = {
        tuple(ex["input_ids"][: prompt_length(ex["labels"])]): i for i, ex in enumerate(examples)
    }
    prompts, seeds, samples, kwargs = draws[0]
    assert seeds == onpolicy.sample_seeds(1, [index_of[tuple(p)] for p in prompts], 0)
    assert (
        kwargs["max_new_tokens"] == MAX_NEW
        and kwargs["eos_token_id"] == (tiny_tokenizer.eos_token_id,)  # the model lists no other
    )
    base = models.load_causal_lm(str(tiny_model_dir), "float32", False, None).eval()
    assert sampling.sample(base, prompts, seeds, **kwargs) == samples

    # What reached the loss: the prompt masked (shifted by one), then each sample, EOS kept.
    for (labels, _, _), (prompts, _, samples, _) in zip(losses, draws, strict=True):
        expected = [
            [-100] * (len(p) - 1) + tokens for p, (tokens, _) in zip(prompts, samples, strict=True)
        ]
        assert _rows(labels) == expected
    totals = summary["onpolicy"]
    assert totals["samples"] == len(examples) == 12 and totals["onpolicy_fraction"] == 1.0
    assert totals["truncated_samples"] == sum(not f for _, _, s, _ in draws for _, f in s)
    assert totals["empty_samples"] == sum(f and len(t) == 1 for _, _, s, _ in draws for t, f in s)


def test_fd_rkl_runs_are_deterministic_and_log_the_generation_share(setup, tiny_model_dir):
    a = train.run(_job(setup, tiny_model_dir, FD_RKL, "rkl-a", epochs=2))
    b = train.run(_job(setup, tiny_model_dir, FD_RKL, "rkl-b", epochs=2))
    first, second = (load_file(str(setup[0] / n / "model.safetensors")) for n in ("rkl-a", "rkl-b"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(first[k], base[k]) for k in base)  # it trained
    logged = [e for e in a["log_history"] if "loss" in e]
    assert len(logged) == a["global_steps"] == 6
    for entry in logged:
        assert entry["onpolicy_fraction"] == 1.0
        assert 0 < entry["generation_share"] < 1
        assert entry["empty_samples"] + entry["truncated_samples"] <= 4
    totals = a["onpolicy"]
    assert totals["steps"] == totals["onpolicy_steps"] == 6 and totals["samples"] == 24
    assert 0 < totals["generation_share"] < 1
    assert totals["truncated_samples"] == sum(e["truncated_samples"] for e in logged)
    keep = ("loss", "grad_norm", "empty_samples", "truncated_samples", "onpolicy_fraction")
    assert [{k: e[k] for k in keep} for e in logged] == [
        {k: e[k] for k in keep} for e in b["log_history"] if "loss" in e
    ]


def test_gkd_mixes_gold_and_onpolicy_steps(setup, tiny_model_dir, tiny_tokenizer, monkeypatch):
    losses, draws = _capture(monkeypatch)
    summary = train.run(_job(setup, tiny_model_dir, GKD, "gkd", epochs=4))
    steps = summary["global_steps"]
    assert steps == 12 and len(losses) == 2 * steps
    expected = [onpolicy.onpolicy_step(1, s, 0.5) for s in range(steps)]
    assert 0 < sum(expected) < steps  # both kinds occur in this run
    assert [on for _, on, _ in losses] == [e for e in expected for _ in range(2)]
    assert len(draws) == 2 * sum(expected)
    examples = _examples(setup, tiny_tokenizer)
    gold = {tuple(ex["labels"][1:]) for ex in examples}
    for labels, on_policy, _ in losses:
        rows = {tuple(r) for r in _rows(labels)}
        if on_policy:
            assert not rows & gold  # the random student's samples are not the references
        else:
            assert rows <= gold  # the gold batch, unchanged
    logged = [e for e in summary["log_history"] if "loss" in e]
    assert [e["onpolicy_fraction"] for e in logged] == [float(e) for e in expected]
    assert [e["generation_share"] > 0 for e in logged] == expected
    assert summary["onpolicy"]["onpolicy_fraction"] == round(sum(expected) / steps, 4)


def test_teacher_and_student_halves_are_averaged(
    setup, tiny_model_dir, tiny_tokenizer, monkeypatch
):
    """fd_js ("teacher+student"): each micro-batch's loss is ½·(its own sequences, on_policy
    False) + ½·(the student's samples of its prompts, on_policy True)."""
    from transformers import TrainingArguments

    root, teacher_dir = setup
    losses, draws = _capture(monkeypatch)
    student = models.load_causal_lm(str(tiny_model_dir), "float32", False, None)
    teacher = models.load_causal_lm(str(teacher_dir), "float32", False, None).eval()
    examples = _examples(setup, tiny_tokenizer)[:3]
    for i, ex in enumerate(examples):
        ex["index"] = i
    variant = FD_JS
    sampling_settings = onpolicy.OnPolicy(
        "teacher+student", 1.0, 1.0, 0, 1.0, MAX_NEW, 128, tiny_tokenizer.eos_token_id, PAD, 1
    )
    t = trainer.DistillTrainer(
        model=student,
        args=TrainingArguments(output_dir=str(root / "js"), use_cpu=True, report_to=[]),
        variant=variant,
        teacher=teacher,
        onpolicy=sampling_settings,
    )
    batch = PadCollator(tiny_tokenizer.pad_token_id, prompt_fields=True)(examples)
    gold_labels = batch["labels"][:, 1:].clone()
    student.train()
    loss = t.compute_loss(student, dict(batch))
    (gold, off, a), (sampled, on, b) = losses
    assert (off, on) == (False, True)
    assert torch.equal(gold, gold_labels)
    prompts, seeds, samples, _ = draws[0]
    assert seeds == onpolicy.sample_seeds(1, [0, 1, 2], 0)
    assert _rows(sampled) == [
        [-100] * (len(p) - 1) + s for p, (s, _) in zip(prompts, samples, strict=True)
    ]
    torch.testing.assert_close(loss.detach(), 0.5 * a + 0.5 * b)
    assert student.training  # back in train mode after sampling
    del batch["prompt_length"]
    with pytest.raises(ValueError, match="prompt_length"):
        t.compute_loss(student, dict(batch))
    with pytest.raises(ValueError, match="on-policy sampling settings"):
        trainer.DistillTrainer(
            model=student,
            args=TrainingArguments(output_dir=str(root / "js2"), use_cpu=True, report_to=[]),
            variant=variant,
            teacher=teacher,
        )


def test_a_resumed_gkd_run_draws_the_same_samples(setup, tiny_model_dir, monkeypatch):
    """Stopped at step 4 (a signal, checkpointed mid-epoch) and rerun: the rerun resumes and
    takes the same on-policy steps with the same samples (seeded by example and epoch) as an
    uninterrupted run, to the same weights."""
    import signal

    from sekd.train import checkpoints
    from sekd.train.distributed import PreemptedError

    reference = train.run(_job(setup, tiny_model_dir, GKD, "gkd-whole", epochs=3))
    job = _job(setup, tiny_model_dir, GKD, "gkd-resumed", epochs=3)
    on_step_end = checkpoints.CheckpointCallback.on_step_end

    def stop_at_4(self, args, state, control, **kwargs):
        if state.global_step == 4:
            self.signalled = signal.SIGUSR1
        return on_step_end(self, args, state, control, **kwargs)

    monkeypatch.setattr(checkpoints.CheckpointCallback, "on_step_end", stop_at_4)
    with pytest.raises(PreemptedError):
        train.run(job)
    monkeypatch.setattr(checkpoints.CheckpointCallback, "on_step_end", on_step_end)
    resumed = train.run(job)
    assert resumed["global_steps"] == reference["global_steps"] == 9
    assert resumed["onpolicy"]["steps"] == 5  # this process's steps only
    keep = ("loss", "grad_norm", "onpolicy_fraction", "empty_samples", "truncated_samples")
    history = [
        [{k: e[k] for k in keep} for e in s["log_history"] if "loss" in e]
        for s in (reference, resumed)
    ]
    assert history[1] == history[0]
    assert 0 < sum(e["onpolicy_fraction"] for e in history[0][4:]) < 5  # both kinds after 4
    first, second = (
        load_file(str(setup[0] / n / "model.safetensors")) for n in ("gkd-whole", "gkd-resumed")
    )
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_non_finite_teacher_on_the_samples_stops_training(setup, tiny_model_dir, tiny_tokenizer):
    from types import SimpleNamespace

    from transformers import TrainingArguments

    from sekd.errors import NonFiniteError

    vocab = len(tiny_tokenizer)

    class NaNTeacher(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return SimpleNamespace(logits=torch.full((*input_ids.shape, vocab), torch.nan))

    student = models.load_causal_lm(str(tiny_model_dir), "float32", False, None).train()
    examples = _examples(setup, tiny_tokenizer)[:2]
    for i, ex in enumerate(examples):
        ex["index"] = i
    settings = onpolicy.OnPolicy(
        "student", 1.0, 1.0, 0, 1.0, MAX_NEW, 128, tiny_tokenizer.eos_token_id, PAD, 1
    )
    t = trainer.DistillTrainer(
        model=student,
        args=TrainingArguments(output_dir=str(setup[0] / "nan"), use_cpu=True, report_to=[]),
        variant=FD_RKL,
        teacher=NaNTeacher(),
        onpolicy=settings,
    )
    batch = PadCollator(tiny_tokenizer.pad_token_id, prompt_fields=True)(examples)
    with pytest.raises(
        NonFiniteError, match="teacher's logits hold NaN or inf at optimizer step 1"
    ):
        t.compute_loss(student, dict(batch))


def test_the_sampling_settings_come_from_the_plan_and_the_job(setup, tiny_model_dir):
    rkl = _job(setup, tiny_model_dir, FD_RKL, "settings")
    tok = type("Tok", (), {"eos_token_id": EOS, "pad_token_id": PAD, "__len__": lambda _: 300})()
    ends = [EOS, 7]  # the tokenizer's EOS, then the student's generation_config end id
    settings = train._onpolicy(rkl, FD_RKL, tok, ends)
    assert settings == onpolicy.OnPolicy(
        "student", 1.0, 1.0, 0, 1.0, MAX_NEW, 128, (EOS, 7), PAD, 1, vocab_limit=300
    )
    gkd = train._onpolicy(rkl, GKD, tok, ends)
    assert (gkd.sequences, gkd.fraction) == ("gold+student", 0.5)
    assert train._onpolicy(rkl, make_variant("forward_kd", {"lam": 0.5}), tok, ends) is None
    with pytest.raises(ValueError, match=r"sequences\.max_new_tokens"):
        train._onpolicy(replace(rkl, sequences={}), FD_RKL, tok, ends)
