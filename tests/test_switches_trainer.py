"""Run options that pool the optimizer batch (issue 11, choices 4 and 6; sekd.train.pool,
sekd.train.trainer): ``norm=optimizer_batch`` makes a step's loss Σ(per-token losses)/N over the
whole step, ``pool=optimizer_batch`` picks sekd_topk's ⌈K%·N⌉ hard tokens over the whole step; with
the defaults nothing changes."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_job
from safetensors.torch import load_file
from transformers import Trainer, TrainingArguments

from sekd import models
from sekd.data import alma as data
from sekd.plan.study import planned_variant
from sekd.plan.variants import Variant, make_variant
from sekd.train import job as train
from sekd.train import pool, trainer
from sekd.train.losses import _topk_count, distill_loss
from sekd.train.onpolicy import OnPolicy

LAM = 0.5
FORWARD = {"lam": LAM}
TOPK = {"lam": 0.5, "beta": 0.5, "top_k_percent": 10}


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_teacher_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("switches")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    teacher = tiny_teacher_dir
    return root, teacher


def _run(setup, base, variant, name: str) -> dict:
    root, teacher = setup
    job = tiny_job(
        root / name, base, root / "train.jsonl", variant=variant, teacher=teacher,
        training={"epochs": 1},
    )  # fmt: skip
    train.run(job)
    return load_file(str(root / name / "model.safetensors"))


def _capture_steps(monkeypatch) -> list[list[dict]]:
    """The micro-batches of each optimizer step, as the Trainer prefetched them."""
    steps = []
    real = trainer.DistillTrainer.get_batch_samples

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batches, num = real(self, epoch_iterator, num_batches, device)
        steps.append([{k: v.clone() for k, v in b.items()} for b in batches])
        return batches, num

    monkeypatch.setattr(trainer.DistillTrainer, "get_batch_samples", get_batch_samples)
    return steps


def _capture_losses(monkeypatch) -> list:
    """Every training distill_loss call with gradients (not the pool's pre-pass):
    (hard_mask, difficulty, num_tokens)."""
    calls = []
    real = trainer.distill_loss

    def loss(student, teacher, labels, objective, **kwargs):
        out = real(student, teacher, labels, objective, **kwargs)
        if torch.is_grad_enabled():
            calls.append((out.hard_mask.clone(), out.difficulty.clone(), out.num_tokens))
        return out

    monkeypatch.setattr(trainer, "distill_loss", loss)
    return calls


def test_pool_selects_the_top_k_of_all_parts_ties_by_position():
    d = [torch.tensor([1.0, 2.0, 2.0]), torch.tensor([2.0, 0.0])]
    assert [h.tolist() for h in pool.select_hard(d, 40)] == [[False, True, True], [False, False]]
    assert [h.tolist() for h in pool.select_hard(d, 60)] == [[False, True, True], [True, False]]
    assert sum(int(h.sum()) for h in pool.select_hard(d, 0)) == 0
    labels = torch.tensor([[-100, -100, 5, 6, -100]])
    grid = pool.on_grid(labels, torch.tensor([False, True]))
    assert grid.tolist() == [[False, False, True, False]]
    assert pool.step_tokens([{"labels": labels}, {"labels": labels}], "cpu") == 4


def test_a_given_hard_mask_is_used_on_both_paths():
    """sekd_topk with `hard_mask`: the batch's own top-k gives the default loss; another mask
    gives the same values and gradients on the chunked and the reference path; misuse is named."""
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(2, 6, 11, generator=gen, requires_grad=True)
    teacher = torch.randn(2, 6, 11, generator=gen)
    labels = torch.randint(0, 11, (2, 6), generator=gen)
    labels[0, :2] = -100
    own = distill_loss(student, teacher, labels, "sekd_topk", **TOPK, chunk_size=None)
    again = distill_loss(
        student, teacher, labels, "sekd_topk", **TOPK, chunk_size=None, hard_mask=own.hard_mask
    )
    assert torch.equal(own.loss, again.loss)
    mask = torch.zeros_like(own.hard_mask)
    mask[0, 3] = mask[1, 0] = mask[1, 5] = True
    out = {}
    for chunk in (None, 3):
        result = distill_loss(
            student, teacher, labels, "sekd_topk", **TOPK, chunk_size=chunk, hard_mask=mask
        )
        (grad,) = torch.autograd.grad(result.loss, student)
        assert torch.equal(result.hard_mask, mask)
        out[chunk] = (result.loss.detach(), grad, result.difficulty)
    for a, b in zip(out[None], out[3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out[None][0], own.loss.detach())
    with pytest.raises(ValueError, match="hard_mask is for objective 'sekd_topk'"):
        distill_loss(student, teacher, labels, "sekd", lam=0.5, beta=0.5, hard_mask=mask)
    bad = mask.clone()
    bad[0, 0] = True
    with pytest.raises(ValueError, match="marks ignored tokens"):
        distill_loss(student, teacher, labels, "sekd_topk", **TOPK, hard_mask=bad)


@pytest.mark.parametrize("objective,hparams", [("sekd_topk", TOPK), ("forward_kd", FORWARD)])
def test_defaults_are_the_trainer_without_the_step_hook(
    setup, tiny_model_dir, monkeypatch, objective, hparams
):
    """With the defaults the pooled-step code is inert: weights identical to a run whose
    trainer lacks the prefetch hook (transformers' own get_batch_samples)."""
    variant = make_variant(objective, hparams)
    explicit = make_variant(objective, hparams, {"norm": "micro_batch", "pool": "micro_batch"})
    assert explicit.name == variant.name  # defaults are not written in run names
    ours = _run(setup, tiny_model_dir, variant, f"default-{objective}")
    monkeypatch.setattr(trainer.DistillTrainer, "get_batch_samples", Trainer.get_batch_samples)
    before = _run(setup, tiny_model_dir, variant, f"nohook-{objective}")
    assert ours.keys() == before.keys()
    for key in ours:
        assert torch.equal(ours[key], before[key]), key


def _per_token_forward_kd(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor):
    """Float64 eq. 3 per token: (1-λ)·(-log q[y]) + λ·KL(p||q), shifted labels [B, T-1]."""
    mask = labels != -100
    log_q = student[:, :-1][mask].double().log_softmax(-1)
    log_p = teacher[:, :-1][mask].double().log_softmax(-1)
    y = labels[mask]
    nll = -log_q.gather(-1, y[:, None]).squeeze(-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return (1 - LAM) * nll + LAM * kl


def test_norm_optimizer_batch_is_the_step_sum_over_its_tokens(setup, tiny_model_dir, monkeypatch):
    """The first step's loss and gradient (before clipping) equal Σ per-token loss / N over
    both micro-batches (gradient accumulation 2, unequal token counts), computed in float64."""
    variant = make_variant("forward_kd", FORWARD, {"norm": "optimizer_batch"})
    assert variant.name.endswith("-norm.optimizer_batch")
    steps = _capture_steps(monkeypatch)
    losses, grads = [], {}
    real_step = trainer.DistillTrainer.training_step

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = real_step(self, model, inputs, num_items_in_batch)
        losses.append(float(loss))
        if len(losses) == 2:  # the first step's micro-batches are done: its gradient
            grads.update({n: p.grad.clone() for n, p in self.model.named_parameters()})
        return loss

    monkeypatch.setattr(trainer.DistillTrainer, "training_step", training_step)
    _run(setup, tiny_model_dir, variant, "norm")

    first = steps[0]
    assert len(first) == 2
    counts = [int(pool.shifted_mask(b["labels"]).sum()) for b in first]
    assert counts[0] != counts[1]
    student = models.load_causal_lm(str(tiny_model_dir), "float32", False, None)
    teacher = models.load_causal_lm(str(setup[1]), "float32", False, None).eval()
    per_token = []
    for b in first:
        ids, attention = b["input_ids"], b["attention_mask"]
        with torch.no_grad():
            t_logits = teacher(input_ids=ids, attention_mask=attention).logits
        s_logits = student(input_ids=ids, attention_mask=attention).logits
        per_token.append(_per_token_forward_kd(s_logits, t_logits, b["labels"][:, 1:]))
    expected = sum(t.sum() for t in per_token) / sum(counts)
    default = sum(t.mean() for t in per_token) / len(per_token)  # micro_batch: mean of means
    params = dict(student.named_parameters())
    want = torch.autograd.grad(expected, list(params.values()), retain_graph=True)
    other = torch.autograd.grad(default, list(params.values()))
    expected, default = float(expected.detach()), float(default.detach())
    assert sum(losses[:2]) == pytest.approx(expected, rel=1e-6)
    assert abs(default - expected) > 1e-5  # what the default trains on
    for name, w in zip(params, want, strict=True):
        torch.testing.assert_close(grads[name], w, rtol=1e-4, atol=1e-7, msg=name)
    flat = torch.cat([g.reshape(-1) for g in want]).double()
    gap = torch.cat([(g - o).reshape(-1) for g, o in zip(want, other, strict=True)]).double()
    assert gap.norm() > 1e-3 * flat.norm()  # the two normalisations give different gradients


def _mini_config() -> dict:
    from pathlib import Path

    from sekd.plan.config import load_config

    root = Path(__file__).resolve().parents[1]
    return load_config(root / "config" / "config.yaml", root / "config" / "mini.yaml")


def test_norm_optimizer_batch_is_for_offpolicy_objectives(tmp_path, tiny_model_dir):
    """An on-policy objective's step samples its tokens in the step: the option is dropped from
    its runs (name unchanged), no run of the plan, and refused by the trainer."""
    sampling = {"student_temperature": 1.0, "student_top_k": 0, "student_top_p": 1.0}
    plain = make_variant("fd_rkl", sampling)
    assert make_variant("fd_rkl", sampling, {"norm": "optimizer_batch"}) == plain
    with pytest.raises(ValueError, match="not a run of this config's plan"):
        planned_variant(_mini_config(), plain.name + "-norm.optimizer_batch")
    forced = Variant(plain.objective, plain.hparams, {"norm": "optimizer_batch"})
    settings = OnPolicy("student", 1.0, 1.0, 0, 1.0, 4, 128, 2, 0, 1)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    model = models.load_causal_lm(str(tiny_model_dir), "float32", False, None)
    with pytest.raises(ValueError, match=r"kd\.normalisation=optimizer_batch.*on-policy"):
        trainer.DistillTrainer(model=model, args=args, variant=forced, onpolicy=settings)


def _steps_of(calls: list, steps: list[list[dict]]) -> list[list]:
    out, i = [], 0
    for batches in steps:
        out.append(calls[i : i + len(batches)])
        i += len(batches)
    assert i == len(calls)
    return out


def test_pool_optimizer_batch_selects_the_top_k_of_the_step(setup, tiny_model_dir, monkeypatch):
    """Every step marks exactly ⌈K%·N⌉ of its N tokens hard, the largest d of the step (its
    two micro-batches together); the first step's choice differs from the micro-batch pool's."""
    variant = make_variant("sekd_topk", TOPK, {"pool": "optimizer_batch"})
    assert variant.name.endswith("-pool.optimizer_batch")
    steps = _capture_steps(monkeypatch)
    calls = _capture_losses(monkeypatch)
    _run(setup, tiny_model_dir, variant, "pool")
    pooled = _steps_of(calls, steps)
    for step in pooled:
        n = sum(c[2] for c in step)
        hard = sum(int(c[0].sum()) for c in step)
        assert hard == _topk_count(TOPK["top_k_percent"], n)
    # the first step (same weights in both runs): the step's top-k vs each micro-batch's
    first = pooled[0]
    masks = [pool.shifted_mask(b["labels"]) for b in steps[0]]
    d_all = torch.cat([c[1][m] for c, m in zip(first, masks, strict=True)])
    hard_all = torch.cat([c[0][m] for c, m in zip(first, masks, strict=True)])
    assert d_all[hard_all].min() >= d_all[~hard_all].max()

    monkeypatch.undo()
    steps_mb = _capture_steps(monkeypatch)
    calls_mb = _capture_losses(monkeypatch)
    _run(setup, tiny_model_dir, make_variant("sekd_topk", TOPK), "pool-micro")
    micro = _steps_of(calls_mb, steps_mb)[0]
    for c in micro:
        assert int(c[0].sum()) == _topk_count(TOPK["top_k_percent"], c[2])
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, micro, strict=True))
