"""The chunked, analytic-gradient path of sekd.train.losses (sekd.train.chunked) against the
reference autograd path (chunk_size=None), and its gradients against float64 autograd."""

from __future__ import annotations

import math

import pytest
import torch
from test_losses import make_batch
from torch.nn.functional import one_hot

from sekd.plan.objectives import OBJECTIVES, PAPER_OBJECTIVES
from sekd.train.chunked import _plan, auto_chunk_size, kernel_of
from sekd.train.losses import distill_loss, distill_loss_reference

# the objectives with a chunked kernel (the paper's); the others take the reference path on
# either setting of chunk_size (test_losses_baselines.py)
ALL = [name for name in OBJECTIVES if kernel_of(name) is not None]
TEACHER = [name for name in ALL if OBJECTIVES[name].needs_teacher]
PAPER = list(PAPER_OBJECTIVES)
SKEWED = ["skew_kd", "sekd", "sekd_topk", "skew_teacher_kd"]
CHUNKS = [1, 3, 7, 1000]  # one row, sizes that don't divide N (18 here), larger than N


def hparams(objective, **kw):
    """Keyword arguments (sekd's Γ: `with_gamma`)."""
    kw = dict(kw)
    if objective == "sekd_topk":
        kw.setdefault("top_k_percent", 30)
    return kw


def with_gamma(s, t, labels, objective, kw):
    """sekd's Γ between the two middle d's (no d equals it): both kinds of token occur."""
    if objective == "sekd" and "gamma" not in kw:
        d = distill_loss_reference(s, t, labels, "noevo_kd", lam=kw.get("lam", 0.5)).difficulty
        d = d[labels != -100].sort().values
        kw = {**kw, "gamma": float(d[d.numel() // 2 - 1 : d.numel() // 2 + 1].mean())}
    return kw


def run(s, t, labels, objective, **kw):
    """(DistillOutput, d loss/d student) on a fresh leaf copy of s."""
    s = s.detach().clone().requires_grad_()
    out = distill_loss(s, t, labels, objective, **kw)
    out.loss.backward()
    return out, s.grad


def rel(a, b, floor=0.0):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(max(floor, 1e-300)))


def compare(s, t, labels, objective, chunk_size, value_tol=1e-5, grad_tol=1e-5, floor=0.0, **kw):
    """The chunked path equals the reference path: loss, loss_sum, gradient, hard, d."""
    teacher = t if OBJECTIVES[objective].needs_teacher else None
    kw = with_gamma(s, teacher, labels, objective, hparams(objective, **kw))
    out, grad = run(s, teacher, labels, objective, chunk_size=chunk_size, **kw)
    ref, grad_ref = run(s, teacher, labels, objective, chunk_size=None, **kw)
    assert out.loss.dtype == torch.float32 and out.loss.dim() == 0
    assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
    assert grad.dtype == s.dtype and grad.shape == s.shape
    assert out.num_tokens == ref.num_tokens
    for a, b in ((out.loss, ref.loss), (out.loss_sum, ref.loss_sum)):
        assert abs(a.item() - b.item()) <= value_tol * max(abs(b.item()), 1e-6), (a, b)
    assert rel(grad, grad_ref, floor) <= grad_tol, rel(grad, grad_ref, floor)
    for ours, theirs in ((out.hard_mask, ref.hard_mask), (out.difficulty, ref.difficulty)):
        assert (ours is None) == (theirs is None)
    if ref.hard_mask is not None:
        assert torch.equal(out.hard_mask, ref.hard_mask)
        assert out.difficulty.dtype == torch.float32 and not out.difficulty.requires_grad
        assert torch.allclose(out.difficulty, ref.difficulty, rtol=1e-5, atol=1e-6)
    return out, ref


# --- agreement with the reference path ----------------------------------------------------------


@pytest.mark.parametrize("chunk_size", CHUNKS)
@pytest.mark.parametrize("objective", ALL)
def test_matches_reference_path(objective, chunk_size):
    s, t, labels = make_batch((3, 8, 50), seed=0)  # 18 tokens
    out, _ = compare(s, t, labels, objective, chunk_size)
    if objective in ("sekd", "sekd_topk"):
        assert out.hard_mask.any() and not out.hard_mask[labels != -100].all()


@pytest.mark.parametrize("objective", ALL)
@pytest.mark.parametrize("seed", [1, 2])
def test_default_chunking_larger_vocabulary(objective, seed):
    s, t, labels = make_batch((2, 9, 1001), seed)
    assert auto_chunk_size(1001) > 18
    compare(s, t, labels, objective, "auto")
    compare(s, t, labels, objective, 5)


@pytest.mark.parametrize("objective", SKEWED)
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.9])
@pytest.mark.parametrize("lam", [0.0, 1.0, 0.3])
def test_edge_hyperparameters(objective, beta, lam):
    s, t, labels = make_batch((3, 7, 50), seed=5)
    compare(s, t, labels, objective, 4, lam=lam, beta=beta)


@pytest.mark.parametrize("objective", ["forward_kd", "reverse_kd", "noevo_kd"])
@pytest.mark.parametrize("lam", [0.0, 1.0])
def test_edge_lambda(objective, lam):
    s, t, labels = make_batch((3, 7, 50), seed=6)
    compare(s, t, labels, objective, 4, lam=lam)


def test_beta_zero_gives_exactly_zero_loss_and_gradient():
    s, t, labels = make_batch((3, 7, 50), seed=6)
    for lam in (0.0, 0.5, 1.0):
        for chunk_size in (1, 4, 100):
            out, grad = run(s, t, labels, "skew_kd", lam=lam, beta=0.0, chunk_size=chunk_size)
            assert out.loss.item() == 0.0 and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize("seed", [0, 1, 35])
def test_extreme_logits(seed):
    """|logits| ~ 1e4: as in test_losses, gradients relative to max(||g_ref||, 1e-3) (at seed 35
    every token saturates), and reverse_kd's gradient, q·(ℓ - KL) with ℓ ~ 1e4, is ill-conditioned
    in fp32 (the two paths round differently: ~1e-3 relative, both that far from float64)."""
    s, t, labels = make_batch((3, 7, 50), seed, scale=1e4)
    for objective in ALL:
        grad_tol = 5e-3 if objective == "reverse_kd" else 1e-5
        for chunk_size in (1, 5):
            compare(s, t, labels, objective, chunk_size, 1e-5, grad_tol, 1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_bfloat16_inputs(seed):
    """bf16 logits: both paths compute in fp32 and round the gradient to bf16 once, so they agree
    up to one bf16 rounding (3.9e-3 relative) on entries where the fp32 values straddle it."""
    s, t, labels = make_batch((3, 7, 50), seed)
    s, t = s.bfloat16(), t.bfloat16()
    for objective in ALL:
        out, _ = compare(s, t, labels, objective, 4, 1e-5, 4e-3)
        assert out.loss.dtype == torch.float32


@pytest.mark.parametrize("objective", ALL)
def test_fully_masked_batch(objective):
    s, t, labels = make_batch((2, 4, 9), seed=0)
    labels[:] = -100
    out, grad = run(s, t, labels, objective, **hparams(objective), chunk_size=3)
    assert out.loss.item() == 0.0 and out.loss_sum.item() == 0.0 and out.num_tokens == 0
    assert out.loss.requires_grad and torch.count_nonzero(grad) == 0
    ref = distill_loss_reference(s, t, labels, objective, **hparams(objective))
    for ours, theirs in ((out.hard_mask, ref.hard_mask), (out.difficulty, ref.difficulty)):
        assert (ours is None and theirs is None) or torch.equal(ours, theirs)


@pytest.mark.parametrize("objective", TEACHER)
def test_view_input_and_larger_teacher_vocabulary(objective):
    """As the trainer calls it: logits[:, :-1] views (non-contiguous), the teacher padded."""
    s, t, labels = make_batch((3, 9, 50), seed=12, teacher_extra=14)
    kw = hparams(objective)
    base = s.clone().requires_grad_()
    out = distill_loss(base[:, :-1], t[:, :-1], labels[:, 1:], objective, chunk_size=4, **kw)
    out.loss.backward()
    ref_base = s.clone().requires_grad_()
    ref = distill_loss_reference(
        ref_base[:, :-1], t[:, :-1, :50].contiguous(), labels[:, 1:], objective, **kw
    )
    ref.loss.backward()
    assert math.isclose(out.loss.item(), ref.loss.item(), rel_tol=1e-5)
    assert rel(base.grad, ref_base.grad) <= 1e-5 and not base.grad[:, -1].any()


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 64])
@pytest.mark.parametrize("objective", ["sft", "reverse_kd", "sekd", "sekd_topk", "skew_teacher_kd"])
def test_prompt_masked_batches_read_by_runs(objective, chunk_size):
    """The trainer's layout: per sequence a masked prompt, the target, masked padding; each run of
    target tokens is read and written in place (contiguous mode), chunks never straddling two,
    unless gathering needs less than half the chunks."""
    s, t, labels = make_batch((3, 12, 50), seed=7, ignore=0.0)
    for b, (prompt, length) in enumerate([(2, 9), (4, 12), (0, 5)]):
        labels[b, :prompt] = -100
        labels[b, length:] = -100
    mask = labels != -100
    spans, contiguous = _plan(mask.nonzero(), int(mask.sum()), chunk_size)
    # 64: one chunk of gathered rows beats three runs
    assert contiguous == (chunk_size < 64) and all(j - i <= chunk_size for i, j, _, _ in spans)
    for i, j, b, t0 in (
        spans if contiguous else []
    ):  # each span is positions (b, t0..t0+j-i-1), all targets
        assert mask[b, t0 : t0 + j - i].all() and int(mask[:b].sum() + mask[b, :t0].sum()) == i
    compare(s, t, labels, objective, chunk_size)


def test_fragmented_masks_are_gathered():
    """Masks that cut the tokens into many short runs use the gather mode (fewer chunks)."""
    labels = torch.zeros(2, 40, dtype=torch.long)
    labels[:, ::2] = -100
    mask = labels != -100
    spans, contiguous = _plan(mask.nonzero(), int(mask.sum()), 8)
    assert not contiguous and [(i, j) for i, j, _, _ in spans] == [
        (0, 8),
        (8, 16),
        (16, 24),
        (24, 32),
        (32, 40),
    ]
    s, t, _ = make_batch((2, 40, 30), seed=8)
    for objective in ALL:
        compare(s, t, labels, objective, 8)


# --- autograd plumbing --------------------------------------------------------------------------


def test_backward_through_loss_sum_and_a_scaled_loss():
    s, t, labels = make_batch((3, 7, 50), seed=3)
    grads = []
    for chunk_size in (4, None):
        x = s.clone().requires_grad_()
        out = distill_loss(x, t, labels, "sekd", chunk_size=chunk_size)
        (0.25 * out.loss + 3.0 * out.loss_sum).backward()
        grads.append(x.grad)
    assert rel(*grads) <= 1e-5


def test_second_backward_after_rescaling_is_refused():
    s, t, labels = make_batch((3, 7, 50), seed=3)
    x = s.clone().requires_grad_()
    out = distill_loss(x, t, labels, "forward_kd", chunk_size=4)
    (out.loss * 2).backward(retain_graph=True)
    with pytest.raises(RuntimeError):
        (out.loss * 2).backward()


def test_no_gradient_needed():
    s, t, labels = make_batch((3, 7, 50), seed=4)
    ref = distill_loss_reference(s, t, labels, "sekd").loss
    assert not distill_loss(s, t, labels, "sekd").loss.requires_grad  # s needs no grad
    with torch.no_grad():
        out = distill_loss(s.clone().requires_grad_(), t, labels, "sekd")
    assert not out.loss.requires_grad and math.isclose(out.loss.item(), ref.item(), rel_tol=1e-5)


def test_no_gradient_into_the_teacher():
    s, t, labels = make_batch((3, 7, 50), seed=9)
    for objective in TEACHER:
        teacher = t.clone().requires_grad_()
        run(s, teacher, labels, objective, **hparams(objective), chunk_size=4)
        assert teacher.grad is None


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5, True, "big"])
def test_bad_chunk_size(chunk_size):
    s, t, labels = make_batch((3, 7, 50), seed=13)
    with pytest.raises(ValueError, match="chunk_size"):
        distill_loss(s, t, labels, "sekd", chunk_size=chunk_size)


def test_every_objective_has_a_kernel():
    """Every objective: the paper's and the seeds' baselines (issue 22)."""
    assert all(kernel_of(name) is not None for name in PAPER)
    assert list(OBJECTIVES) == ALL


# --- analytic gradients against float64 autograd ------------------------------------------------


def kl64(a, log_a, log_b):
    return torch.where(a > 0, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def float64_loss(s, t, labels, objective, lam, beta, hard):
    """Eqs. 2-10 transcribed in float64 probability space (independent of both paths)."""
    mask = labels != -100
    V = s.shape[-1]
    log_q = torch.log_softmax(s[mask], -1)
    q = log_q.exp()
    log_p = torch.log_softmax(t[mask][:, :V], -1)
    p = log_p.exp()
    y = one_hot(labels[mask], V).double()
    nll = -(y * log_q).sum(-1)
    if objective == "reverse_kd":
        per = (1 - lam) * nll + lam * kl64(q, log_q, log_p)
    elif objective == "skew_teacher_kd":
        m = beta * q + (1 - beta) * p
        per = (1 - lam) * nll + lam * kl64(p, log_p, m.log())
    else:  # sekd with the given split
        yt = (1 - lam) * y + lam * p
        log_yt = torch.where(yt > 0, yt, torch.ones_like(yt)).log()
        b = torch.where(hard, beta, 1.0)[:, None]
        per = kl64(yt, log_yt, (b * q + (1 - b) * yt).log())
    return per.mean()


@pytest.mark.parametrize("objective", ["reverse_kd", "skew_teacher_kd", "sekd"])
@pytest.mark.parametrize("lam", [0.3, 1.0])
def test_analytic_gradient_against_float64_autograd(objective, lam):
    s, t, labels = make_batch((2, 6, 40), seed=21)
    kw = with_gamma(s, t, labels, objective, {"lam": lam, "beta": 0.6})
    out, grad = run(s, t, labels, objective, chunk_size=3, **kw)
    x = s.double().requires_grad_()
    hard = out.hard_mask[labels != -100] if out.hard_mask is not None else None
    if hard is not None:
        assert hard.any() and not hard.all()
    loss = float64_loss(x, t.double(), labels, objective, lam, 0.6, hard)
    loss.backward()
    assert math.isclose(out.loss.item(), loss.item(), rel_tol=1e-5)
    assert rel(grad, x.grad) <= 1e-5


# --- difficulty_offset (a sampled teacher's entropy correction, sekd.teacher.store) ------------

SELF_EVOLUTION = ["noevo_kd", "skew_kd", "sekd", "sekd_topk"]


def random_offset(labels, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(labels.shape, generator=g) * 0.3


@pytest.mark.parametrize("objective", SELF_EVOLUTION)
@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_difficulty_offset_chunked_matches_reference(objective, chunk_size, beta):
    s, t, labels = make_batch((3, 6, 50), seed=31)
    offset = random_offset(labels, 32)
    compare(s, t, labels, objective, chunk_size, beta=beta, difficulty_offset=offset)


@pytest.mark.parametrize("path", [None, 5])
def test_difficulty_offset_shifts_d_split_and_easy_loss_only(path):
    s, t, labels = make_batch((2, 8, 30), seed=33)
    mask = labels != -100
    offset = random_offset(labels, 34)
    plain, grad_plain = run(s, t, labels, "noevo_kd", chunk_size=path)
    shifted, grad_shifted = run(s, t, labels, "noevo_kd", chunk_size=path, difficulty_offset=offset)
    # d and the KL(ỹ||q) losses move by the offset; the gradient does not
    assert torch.allclose(shifted.difficulty, plain.difficulty + offset * mask, atol=1e-5)
    assert math.isclose(
        shifted.loss_sum.item(), plain.loss_sum.item() + offset[mask].sum().item(), abs_tol=1e-4
    )
    assert torch.equal(grad_plain, grad_shifted)
    # sekd: hard = d + offset > Γ
    gamma = float(plain.difficulty[mask].median())
    out, _ = run(s, t, labels, "sekd", chunk_size=path, gamma=gamma, difficulty_offset=offset)
    assert torch.equal(out.hard_mask, (plain.difficulty + offset > gamma) & mask)
    assert out.hard_mask.any() and not out.hard_mask[mask].all()


@pytest.mark.parametrize("objective", ["sft", "forward_kd", "reverse_kd", "skew_teacher_kd"])
def test_difficulty_offset_is_ignored_by_other_objectives(objective):
    s, t, labels = make_batch((2, 5, 20), seed=35)
    teacher = t if OBJECTIVES[objective].needs_teacher else None
    a, ga = run(s, teacher, labels, objective)
    b, gb = run(s, teacher, labels, objective, difficulty_offset=random_offset(labels, 36))
    assert torch.equal(a.loss, b.loss) and torch.equal(ga, gb)


def test_difficulty_offset_shape_is_checked():
    s, t, labels = make_batch((2, 5, 20), seed=37)
    with pytest.raises(ValueError, match="difficulty_offset"):
        distill_loss(s, t, labels, "sekd", difficulty_offset=torch.zeros(2, 4))
