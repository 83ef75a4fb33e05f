"""The seeds' baselines of sekd.train.losses (issue 10: word_kd, seq_kd, seq_inter, fd_kl, fd_rkl,
fd_js, fd_tvd, gkd) against an independent float64 transcription of their definitions, written
from probabilities; value and gradient w.r.t. the student logits, on both paths of
`distill_loss` (chunk_size=None, and the default, which falls back to the reference for
objectives without a chunked kernel)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.functional import one_hot

from sekd.plan.objectives import OBJECTIVES
from sekd.train.chunked import kernel_of
from sekd.train.losses import distill_loss

BASELINES = ["word_kd", "seq_kd", "seq_inter", "fd_kl", "fd_rkl", "fd_js", "fd_tvd", "gkd"]
NO_TEACHER_LOGITS = ["seq_kd", "seq_inter"]
PATHS = [None, "auto"]  # chunk_size: the reference, and the default

# (objective, its keyword arguments): every objective once, and the hyper-parameters' ends.
CASES = [
    ("word_kd", {"lam": 0.5}),
    ("word_kd", {"lam": 0.0}),
    ("word_kd", {"lam": 1.0}),
    ("word_kd", {"lam": 0.3}),
    ("seq_kd", {}),
    ("seq_inter", {}),
    ("fd_kl", {}),
    ("fd_rkl", {}),
    ("fd_js", {"on_policy": False}),
    ("fd_js", {"on_policy": True}),
    ("fd_tvd", {"on_policy": False}),
    ("fd_tvd", {"on_policy": True}),
    ("gkd", {"jsd_beta": 0.0}),
    ("gkd", {"jsd_beta": 0.1}),
    ("gkd", {"jsd_beta": 0.5}),
    ("gkd", {"jsd_beta": 0.9}),
    ("gkd", {"jsd_beta": 1.0}),
]
IDS = [f"{o}-{'-'.join(f'{k}{v}' for k, v in kw.items())}" for o, kw in CASES]


# --- the definitions in float64, from probabilities ---------------------------------------------


def kl64(a, b, log_a, log_b):
    """KL(a||b) = Σ_v a_v·log(a_v/b_v), the terms with a_v > 0 only (0·log 0 = 0). log a and
    log b are given where a or b can underflow (q and p at extreme logits); both are read only
    where a > 0, so the gradient stays finite."""
    pos = a > 0
    one = torch.ones_like(a)
    log_a = torch.where(pos, log_a, one)
    log_b = torch.where(pos, log_b, one)
    return torch.where(pos, a * (log_a - log_b), torch.zeros_like(a)).sum(-1)


def log_of(m, a):
    """log m where a > 0 (there m >= w·a > 0: m is a mixture with weight w on a), 0 elsewhere."""
    return torch.log(torch.where(a > 0, m, torch.ones_like(m)))


def transcription(s, t, labels, objective, lam=0.5, jsd_beta=0.5, on_policy=False):
    """Mean per-token loss over the non-ignored tokens; s, t float64 [B,T,V] (t may be None for
    seq_kd, seq_inter); written from each definition, independent of sekd.train.losses."""
    mask = labels != -100
    V = s.shape[-1]
    z = s[mask]  # [n, V]
    q, log_q = torch.softmax(z, -1), torch.log_softmax(z, -1)
    y = one_hot(labels[mask], V).double()
    nll = -(y * log_q).sum(-1)  # -log q[y]
    if objective in NO_TEACHER_LOGITS:
        per = nll
    else:
        zt = t.detach()[mask][:, :V]
        p, log_p = torch.softmax(zt, -1), torch.log_softmax(zt, -1)
        if objective == "word_kd":  # Kim & Rush: (1-λ)·NLL - λ·Σ_v p_v log q_v, p_v > 0 only
            cross = -torch.where(p > 0, p * log_q, torch.zeros_like(p)).sum(-1)
            per = (1 - lam) * nll + lam * cross
        elif objective == "fd_kl":
            per = kl64(p, q, log_p, log_q)
        elif objective == "fd_rkl":
            per = kl64(q, p, log_q, log_p)
        elif objective == "fd_js":
            m = (p + q) / 2
            per = kl64(q, m, log_q, log_of(m, q)) if on_policy else kl64(p, m, log_p, log_of(m, p))
        elif objective == "fd_tvd":
            per = 0.5 * (p - q).abs().sum(-1)
        elif objective == "gkd":
            b = jsd_beta
            if b == 0:
                per = kl64(p, q, log_p, log_q)
            elif b == 1:
                per = kl64(q, p, log_q, log_p)
            else:
                m = b * p + (1 - b) * q
                per = b * kl64(p, m, log_p, log_of(m, p)) + (1 - b) * kl64(
                    q, m, log_q, log_of(m, q)
                )
        else:
            raise AssertionError(objective)
    return per.sum() / max(per.numel(), 1)


# --- helpers ------------------------------------------------------------------------------------


def random_batch(seed, shape=(2, 5, 11), ignore=0.3):
    """Fresh random inputs: logits ~ N(0, 2²), some labels -100 (never all)."""
    B, T, V = shape
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, T, V, generator=g) * 2
    t = torch.randn(B, T, V, generator=g) * 2
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[torch.rand(B, T, generator=g) < ignore] = -100
    labels[0, 0] = 3
    return s, t, labels


def tie_the_max(x, g):
    """Copy each row's maximum onto another random entry: exact ties at the top."""
    x = x.clone()
    flat = x.view(-1, x.shape[-1])
    top = flat.argmax(-1)
    other = (top + 1 + torch.randint(0, x.shape[-1] - 1, top.shape, generator=g)) % x.shape[-1]
    flat[torch.arange(flat.shape[0]), other] = flat.max(-1).values
    return x


def extreme_batches(seed, shape=(2, 5, 11)):
    """(name, s, t, labels): logits at scale 1e3 with ties; a very peaked teacher (off-peak
    probabilities e^-300: 0 in fp32, not in float64; no -inf) against student logits ±50."""
    B, T, V = shape
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[1, 2:] = -100
    s = tie_the_max(torch.randn(B, T, V, generator=g) * 1e3, g)
    # a teacher peaked on the student's tied top entries, unequally (noise of scale 1): the two
    # distributions overlap, so every gradient is far from 0
    near = s + torch.randn(B, T, V, generator=g)
    independent = tie_the_max(torch.randn(B, T, V, generator=g) * 1e3, g)
    peaked = torch.zeros(B, T, V)
    peaked.scatter_(-1, torch.randint(0, V, (B, T, 1), generator=g), 300.0)
    plus_minus_50 = torch.where(torch.rand(B, T, V, generator=g) < 0.3, 50.0, -50.0)
    return [
        ("scale 1e3, ties, teacher near the student", s, near, labels),
        ("scale 1e3, ties, independent teacher", s, independent, labels),
        ("peaked teacher, student ±50", plus_minus_50, peaked, labels),
    ]


def run(s, t, labels, objective, **kw):
    """distill_loss and d loss / d student on a fresh fp32 leaf copy of s."""
    s = s.detach().float().clone().requires_grad_()
    out = distill_loss(s, t, labels, objective, **kw)
    out.loss.backward()
    return out, s.grad


def run64(s, t, labels, objective, **kw):
    """The transcription's value and gradient, in float64 on the same (fp32) inputs."""
    s = s.detach().float().double().requires_grad_()
    t = None if t is None else t.detach().float().double()
    loss = transcription(s, t, labels, objective, **kw)
    loss.backward()
    return loss, s.grad


def rel(a, b):
    """||a - b|| / ||b||."""
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def teacher_for(objective, t):
    return None if objective in NO_TEACHER_LOGITS else t


def check(s, t, labels, objective, kw):
    """Both paths of distill_loss equal the transcription: value and gradient to 1e-5 relative."""
    teacher = teacher_for(objective, t)
    ref, grad_ref = run64(s, teacher, labels, objective, **kw)
    assert torch.isfinite(ref) and torch.isfinite(grad_ref).all()
    for path in PATHS:
        out, grad = run(s, teacher, labels, objective, chunk_size=path, **kw)
        assert out.loss.dtype == torch.float32 and out.loss.dim() == 0
        assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
        assert out.hard_mask is None and out.difficulty is None
        assert out.num_tokens == int((labels != -100).sum())
        value_error = abs(out.loss.item() - ref.item()) / max(abs(ref.item()), 1e-12)
        assert value_error <= 1e-5, (path, out.loss.item(), ref.item())
        assert rel(grad, grad_ref) <= 1e-5, (path, rel(grad, grad_ref))
    return ref, grad_ref


# --- agreement with the definitions -------------------------------------------------------------


def test_every_baseline_has_a_chunked_kernel():
    """Each is checked against its definition on both paths (PATHS) below; the kernels against
    the reference path in tests/test_losses_chunked.py too."""
    for name in BASELINES:
        assert name in OBJECTIVES and kernel_of(name) is not None
    assert [n for n in BASELINES if not OBJECTIVES[n].reads_teacher_logits] == NO_TEACHER_LOGITS


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("objective", "kw"), CASES, ids=IDS)
def test_matches_the_definition_on_random_inputs(objective, kw, seed):
    s, t, labels = random_batch(seed)
    assert (labels == -100).any()
    ref, grad_ref = check(s, t, labels, objective, kw)
    assert ref.item() > 0 and grad_ref.norm() > 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("objective", "kw"), CASES, ids=IDS)
def test_matches_the_definition_at_extreme_logits(objective, kw, seed):
    """fp32 log-probabilities of logits ~1e3 carry ~1e-4 absolute rounding, ~1e-7 relative to
    the values where the distributions differ. Measured over 6 seeds, worst: value 1.5e-6 and
    gradient 2e-6 relative (gkd at β = 0.1), most objectives ~1e-7. The ties keep every
    gradient away from 0 (a fully saturated q would have a gradient fp32 rounds to 0)."""
    for name, s, t, labels in extreme_batches(seed):
        _, grad_ref = check(s, t, labels, objective, kw)
        assert grad_ref.norm() > 1e-3, name


@pytest.mark.parametrize(("objective", "kw"), CASES, ids=IDS)
def test_bfloat16_inputs(objective, kw):
    """bf16 logits are upcast and computed in fp32: the loss matches the float64 definition on
    the same bf16 values to fp32 accuracy; the gradient comes back in bf16 (8-bit mantissa,
    4e-3 relative rounding): asserted 1e-2."""
    s, t, labels = random_batch(3)
    s, t = s.bfloat16(), t.bfloat16()
    teacher = teacher_for(objective, t)
    ref, grad_ref = run64(s, teacher, labels, objective, **kw)
    for path in PATHS:
        x = s.clone().requires_grad_()
        out = distill_loss(x, teacher, labels, objective, chunk_size=path, **kw)
        out.loss.backward()
        assert out.loss.dtype == torch.float32 and x.grad.dtype == torch.bfloat16
        assert abs(out.loss.item() - ref.item()) <= 1e-5 * abs(ref.item())
        assert rel(x.grad, grad_ref) <= 1e-2


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(("objective", "kw"), CASES, ids=IDS)
def test_fully_masked_row_and_batch(objective, kw, path):
    s, t, labels = random_batch(4, ignore=0.0)
    teacher = teacher_for(objective, t)
    labels[1] = -100  # a fully masked row: its gradient is exactly 0, the rest as defined
    out, grad = run(s, teacher, labels, objective, chunk_size=path, **kw)
    ref, grad_ref = run64(s, teacher, labels, objective, **kw)
    assert torch.isfinite(grad).all() and torch.count_nonzero(grad[1]) == 0
    assert torch.count_nonzero(grad[0]) > 0
    assert abs(out.loss.item() - ref.item()) <= 1e-5 * abs(ref.item())
    assert rel(grad, grad_ref) <= 1e-5
    labels[:] = -100  # a fully masked batch: loss 0, still in the graph, gradient 0
    out, grad = run(s, teacher, labels, objective, chunk_size=path, **kw)
    assert out.loss.item() == 0.0 and out.loss_sum.item() == 0.0 and out.num_tokens == 0
    assert out.loss.requires_grad
    assert torch.isfinite(grad).all() and torch.count_nonzero(grad) == 0


@pytest.mark.parametrize(("objective", "kw"), CASES, ids=IDS)
def test_an_empty_sequence_dimension_is_a_zero_loss(objective, kw):
    """T = 0: no position at all."""
    labels = torch.zeros(2, 0, dtype=torch.long)
    for path in PATHS:
        student = torch.randn(2, 0, 11, requires_grad=True)
        teacher = teacher_for(objective, torch.randn(2, 0, 11))
        out = distill_loss(student, teacher, labels, objective, chunk_size=path, **kw)
        out.loss.backward()
        assert out.loss.item() == 0.0 and out.num_tokens == 0
        assert student.grad.shape == student.shape


# --- properties of the objectives ---------------------------------------------------------------


def loss_and_grad(s, t, labels, objective, **kw):
    out, grad = run(s, t, labels, objective, **kw)
    return out.loss.item(), grad


@pytest.mark.parametrize("seed", [5, 6])
def test_gkd_ends_are_forward_and_reverse_kl(seed):
    """β = 0: KL(p||q) (fd_kl, and forward_kd at λ = 1); β = 1: KL(q||p) (fd_rkl, reverse_kd at
    λ = 1); the special cases are needed: the formula tends to 0 at both ends."""
    s, t, labels = random_batch(seed)
    gkd0, gkd1 = (loss_and_grad(s, t, labels, "gkd", jsd_beta=b) for b in (0.0, 1.0))
    fd_kl, fd_rkl = loss_and_grad(s, t, labels, "fd_kl"), loss_and_grad(s, t, labels, "fd_rkl")
    assert gkd0[0] == fd_kl[0] and torch.equal(gkd0[1], fd_kl[1])
    assert gkd1[0] == fd_rkl[0] and torch.equal(gkd1[1], fd_rkl[1])
    forward = loss_and_grad(s, t, labels, "forward_kd", lam=1.0, chunk_size=None)
    reverse = loss_and_grad(s, t, labels, "reverse_kd", lam=1.0, chunk_size=None)
    assert math.isclose(gkd0[0], forward[0], rel_tol=1e-6) and rel(gkd0[1], forward[1]) < 1e-5
    assert math.isclose(gkd1[0], reverse[0], rel_tol=1e-6) and rel(gkd1[1], reverse[1]) < 1e-5
    assert not math.isclose(gkd0[0], gkd1[0], rel_tol=1e-3)
    for b in (1e-7, 1 - 1e-7):  # next to the ends the formula itself is ~0
        assert loss_and_grad(s, t, labels, "gkd", jsd_beta=b)[0] < 1e-5 * min(gkd0[0], gkd1[0])


@pytest.mark.parametrize("seed", [7, 8])
def test_gkd_at_one_half_is_the_jensen_shannon_divergence(seed):
    """JSD(p, q) = ½·KL(p||m) + ½·KL(q||m), m = (p+q)/2: in float64 from probabilities, and as
    the mean of fd_js's two halves."""
    s, t, labels = random_batch(seed)
    mask = labels != -100
    x = s.double().requires_grad_()
    p, q = torch.softmax(t.double()[mask], -1), torch.softmax(x[mask], -1)
    m = (p + q) / 2
    jsd = (0.5 * (p * (p / m).log()).sum(-1) + 0.5 * (q * (q / m).log()).sum(-1)).mean()
    jsd.backward()
    ours, grad = loss_and_grad(s, t, labels, "gkd", jsd_beta=0.5)
    assert abs(ours - jsd.item()) <= 1e-5 * jsd.item() and rel(grad, x.grad) <= 1e-5
    assert 0 < ours <= math.log(2)
    teacher_half = loss_and_grad(s, t, labels, "fd_js", on_policy=False)
    student_half = loss_and_grad(s, t, labels, "fd_js", on_policy=True)
    assert math.isclose(ours, (teacher_half[0] + student_half[0]) / 2, rel_tol=1e-6)
    assert rel(grad, (teacher_half[1] + student_half[1]) / 2) <= 1e-5


def test_fd_js_halves_differ():
    """on_policy picks the half: KL(p||m) (teacher sequences) or KL(q||m) (student samples)."""
    s, t, labels = random_batch(9)
    teacher_half = loss_and_grad(s, t, labels, "fd_js", on_policy=False)
    student_half = loss_and_grad(s, t, labels, "fd_js", on_policy=True)
    assert not math.isclose(teacher_half[0], student_half[0], rel_tol=1e-3)
    assert rel(teacher_half[1], student_half[1]) > 1e-2
    for half, on_policy in ((teacher_half, False), (student_half, True)):
        ref, grad_ref = run64(s, t, labels, "fd_js", on_policy=on_policy)
        assert math.isclose(half[0], ref.item(), rel_tol=1e-5) and rel(half[1], grad_ref) <= 1e-5


@pytest.mark.parametrize("objective", ["fd_kl", "fd_rkl", "fd_tvd", "gkd", "word_kd"])
def test_on_policy_changes_only_fd_js(objective):
    s, t, labels = random_batch(10)
    off = loss_and_grad(s, t, labels, objective, on_policy=False)
    on = loss_and_grad(s, t, labels, objective, on_policy=True)
    assert off[0] == on[0] and torch.equal(off[1], on[1])


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_word_kd_is_forward_kd_plus_the_teacher_entropy(lam):
    """Same gradient as forward_kd (same λ); value larger by λ·mean_i H(p_i)."""
    s, t, labels = random_batch(11)
    mask = labels != -100
    word = loss_and_grad(s, t, labels, "word_kd", lam=lam)
    forward = loss_and_grad(s, t, labels, "forward_kd", lam=lam, chunk_size=None)
    p = torch.softmax(t.double()[mask], -1)
    entropy = float(-(p * p.log()).sum(-1).mean())
    assert entropy > 0.1
    assert math.isclose(word[0] - forward[0], lam * entropy, rel_tol=1e-5, abs_tol=1e-6)
    assert rel(word[1], forward[1]) <= 1e-5


def test_word_kd_skips_teacher_zeros():
    """p_v = 0 (a teacher logit -inf) contributes 0, even where the student's q_v is 0 too."""
    s, t, labels = random_batch(12)
    t, s = t.clone(), s.clone()
    t[..., 4] = -math.inf
    s[..., 4] = -1e4  # q_4 = 0 in fp32
    labels[labels == 4] = 5
    out, grad = run(s, t, labels, "word_kd", lam=0.7, chunk_size=None)
    ref, grad_ref = run64(s, t, labels, "word_kd", lam=0.7)
    assert torch.isfinite(out.loss) and torch.isfinite(grad).all()
    assert math.isclose(out.loss.item(), ref.item(), rel_tol=1e-5) and rel(grad, grad_ref) < 1e-5


def test_fd_tvd_at_equality_has_zero_subgradient():
    """p = q: TVD 0, and torch.abs's subgradient 0 gives a finite, zero gradient."""
    s, _, labels = random_batch(13)
    out, grad = run(s, s.clone(), labels, "fd_tvd")
    assert out.loss.item() == 0.0 and torch.isfinite(grad).all() and not grad.any()


@pytest.mark.parametrize("objective", ["fd_kl", "fd_rkl", "fd_js", "gkd"])
def test_divergences_of_p_from_itself_are_zero(objective):
    """The true divergences (not a cross-entropy): 0 at q = p."""
    s, _, labels = random_batch(14)
    for on_policy in (False, True):
        out = distill_loss(s, s.clone(), labels, objective, on_policy=on_policy)
        assert abs(out.loss.item()) < 1e-6


@pytest.mark.parametrize("objective", NO_TEACHER_LOGITS)
def test_sequence_level_kd_is_sft_without_teacher_logits(objective):
    s, t, labels = random_batch(15)
    for path in PATHS:  # on each path exactly SFT's (sft's kernel on the chunked one)
        sft = loss_and_grad(s, None, labels, "sft", chunk_size=path)
        ours = loss_and_grad(s, None, labels, objective, chunk_size=path)
        assert ours[0] == sft[0] and torch.equal(ours[1], sft[1])
    # teacher logits given are never read: NaN, or a wrong shape, change nothing
    for teacher in (torch.full_like(t, math.nan), torch.zeros(1, 2, 3)):
        given = loss_and_grad(s, teacher, labels, objective)
        assert given[0] == sft[0] and torch.equal(given[1], sft[1])


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"jsd_beta": -0.1}, "jsd_beta"),
        ({"jsd_beta": 1.5}, "jsd_beta"),
        ({"jsd_beta": math.nan}, "jsd_beta"),
        ({"on_policy": 1}, "on_policy"),
        ({"on_policy": "yes"}, "on_policy"),
        ({"on_policy": None}, "on_policy"),
        ({"objective": "fd_js", "on_policy": 0.0}, "on_policy"),
        ({"objective": "word_kd", "teacher_logits": None}, "teacher"),
        ({"objective": "fd_tvd", "teacher_logits": None}, "teacher"),
        ({"objective": "fd_kl", "teacher_logits": torch.zeros(2, 5, 10)}, "vocabulary"),
    ],
)
def test_bad_arguments(kwargs, name):
    s, t, labels = random_batch(16)
    args = {"student_logits": s, "teacher_logits": t, "labels": labels, "objective": "gkd"}
    for path in PATHS:
        with pytest.raises(ValueError, match=name):
            distill_loss(**{**args, **kwargs}, chunk_size=path)


def test_the_paper_objectives_ignore_the_new_keywords():
    """jsd_beta and on_policy reach every objective's function; the existing ones ignore them."""
    s, t, labels = random_batch(17)
    for objective in ("forward_kd", "reverse_kd", "sekd"):
        for path in PATHS:
            base = loss_and_grad(s, t, labels, objective, chunk_size=path)
            other = loss_and_grad(
                s, t, labels, objective, chunk_size=path, jsd_beta=0.9, on_policy=True
            )
            assert base[0] == other[0] and torch.equal(base[1], other[1])
