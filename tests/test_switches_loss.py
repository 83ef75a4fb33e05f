"""The loss-side run options of issue 11 (sekd.plan.objectives.RUN_OPTIONS):

- ``difficulty`` (kd.difficulty, `distill_loss(difficulty=...)`): the d of eq. 5 on which sekd and
  sekd_topk split their tokens, KL(ỹ||q) (default) or CE(ỹ, q) = KL(ỹ||q) + H(ỹ);
- ``betatokens`` (kd.progressive_beta_tokens, `distill_loss(hard_tokens=...)`): the tokens a
  progressive β skews (Fig. 3), SE-KD's hard ones (default) or all of them.

Each against a float64 transcription, on both paths (reference autograd and chunked)."""

from __future__ import annotations

import pytest
import torch
from test_losses import make_batch, ref_kl, rel
from torch.nn.functional import one_hot
from torch.special import xlogy

from sekd.plan.variants import Variant, make_variant
from sekd.teacher import store as ts
from sekd.train.losses import distill_loss

PATHS = [None, 1, 5, 1000]  # the reference (chunk_size=None) and chunked ones
KD = {"lam": 0.5, "beta": 0.5, "gamma": 0.4, "top_k_percent": 20}


# --- float64 transcription ----------------------------------------------------------------------


def transcription(s, t, labels, lam, beta, select, form="kl", offset=None):
    """(mean loss, hard [n], d [n]) in float64. ỹ = (1-λ)y + λp (eq. 4); d = KL(ỹ||q) + offset
    ("kl", eq. 5) or KL(ỹ||q) + H(ỹ) ("cross_entropy"); hard = select(d); per token
    KL(ỹ||βq + (1-β)ỹ) if hard (eq. 7) else KL(ỹ||q) + offset (eq. 8)."""
    mask = labels != -100
    V = s.shape[-1]
    log_q = torch.log_softmax(s[mask].double(), -1)
    q = log_q.exp()
    p = torch.softmax(t.detach()[mask][:, :V].double(), -1)
    y_tilde = (1 - lam) * one_hot(labels[mask], V).double() + lam * p
    off = torch.zeros(q.shape[0], dtype=torch.float64) if offset is None else offset[mask].double()
    kl = ref_kl(y_tilde, q.detach(), log_q.detach())
    entropy = -xlogy(y_tilde, y_tilde).sum(-1)
    d = kl + off if form == "kl" else kl + entropy
    hard = select(d)
    easy_loss = ref_kl(y_tilde, q, log_q) + off
    hard_loss = ref_kl(y_tilde, beta * q + (1 - beta) * y_tilde)
    per = torch.where(hard, hard_loss, easy_loss)
    return per.sum() / max(per.numel(), 1), hard, d


def threshold(gamma):
    return lambda d: d > gamma


def top_k(k_percent):
    def select(d):
        hard = torch.zeros_like(d, dtype=torch.bool)
        hard[d.argsort(descending=True)[: -(-k_percent * d.numel() // 100)]] = True
        return hard

    return select


def every_token(d):
    return torch.ones_like(d, dtype=torch.bool)


def run(s, t, labels, objective, **kw):
    """(DistillOutput, d loss / d student) on a fresh leaf copy of s."""
    s = s.detach().clone().requires_grad_()
    out = distill_loss(s, t, labels, objective, **kw)
    out.loss.backward()
    return out, s.grad


def run64(s, t, labels, **kw):
    s = s.detach().double().requires_grad_()
    loss, hard, d = transcription(s, t, labels, **kw)
    loss.backward()
    return loss, s.grad, hard, d


def middle_gamma(d):
    """Γ between the two middle d's: both kinds of token occur, no d equals Γ."""
    mid = d.sort().values[d.numel() // 2 - 1 : d.numel() // 2 + 1]
    return float(mid.mean())


def check(s, t, labels, objective, path, form, beta=0.5, offset=None, grad_floor=0.0, **kw):
    """distill_loss on `path` equals the transcription: split, d, loss (value and gradient)."""
    mask = labels != -100
    lam = kw.get("lam", 0.5)
    if objective == "sekd" and "gamma" not in kw and kw.get("hard_tokens") != "all":
        d = transcription(s, t, labels, lam, beta, every_token, form, offset)[2]
        kw["gamma"] = middle_gamma(d)
    if kw.get("hard_tokens") == "all":
        select = every_token
    elif objective == "sekd":
        select = threshold(kw.get("gamma", 0.4))
    else:
        select = top_k(kw["top_k_percent"])
    out, grad = run(
        s, t, labels, objective, chunk_size=path, difficulty=form, beta=beta,
        difficulty_offset=offset, **kw,
    )  # fmt: skip
    lam_kw = {"lam": lam}
    loss, grad64, hard, d = run64(s, t, labels, beta=beta, select=select, form=form,
                                  offset=offset, **lam_kw)  # fmt: skip
    assert torch.equal(out.hard_mask[mask], hard)
    assert rel(out.difficulty[mask], d) <= 1e-5
    assert abs(out.loss.item() - loss.item()) <= 1e-5 * max(abs(loss.item()), 1e-6)
    assert rel(grad, grad64, grad_floor) <= 1e-5, rel(grad, grad64, grad_floor)
    return out, hard


# --- difficulty: the d of eq. 5 -----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("form", ["kl", "cross_entropy"])
def test_sekd_split_and_loss_match_the_transcription(path, seed, form):
    s, t, labels = make_batch((3, 7, 50), seed)
    _, hard = check(s, t, labels, "sekd", path, form)
    assert hard.any() and not hard.all()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("form", ["kl", "cross_entropy"])
def test_sekd_topk_split_and_loss_match_the_transcription(path, seed, form):
    s, t, labels = make_batch((2, 9, 40), seed)
    check(s, t, labels, "sekd_topk", path, form, top_k_percent=30)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_cross_entropy_at_edge_hyperparameters(path, beta, lam):
    s, t, labels = make_batch((2, 6, 30), seed=5)
    check(s, t, labels, "sekd", path, "cross_entropy", beta=beta, lam=lam)
    check(s, t, labels, "sekd_topk", path, "cross_entropy", beta=beta, lam=lam, top_k_percent=40)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("seed", [0, 1, 35])
def test_cross_entropy_at_extreme_logits(path, seed):
    """|logits| ~ 1e4 (gradients relative to max(||g||, 1e-3), as in test_losses)."""
    s, t, labels = make_batch((3, 7, 50), seed, scale=1e4)
    check(s, t, labels, "sekd", path, "cross_entropy", grad_floor=1e-3)
    check(s, t, labels, "sekd_topk", path, "cross_entropy", grad_floor=1e-3, top_k_percent=30)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("objective", ["sekd", "sekd_topk"])
def test_cross_entropy_split_is_kl_plus_target_entropy(path, objective):
    """hard = thresholding (or top-K of) KL(ỹ||q) + H(ỹ), with KL and H computed separately."""
    s, t, labels = make_batch((3, 8, 40), seed=7)
    mask = labels != -100
    kw = {"top_k_percent": 25} if objective == "sekd_topk" else {"gamma": 1.5}
    kl_d = distill_loss(s, t, labels, "noevo_kd", chunk_size=path).difficulty[mask].double()
    p = torch.softmax(t[mask].double(), -1)
    y_tilde = 0.5 * one_hot(labels[mask], 40).double() + 0.5 * p
    ce = kl_d + -xlogy(y_tilde, y_tilde).sum(-1)
    out = distill_loss(s, t, labels, objective, chunk_size=path, difficulty="cross_entropy", **kw)
    select = top_k(25) if objective == "sekd_topk" else threshold(1.5)
    assert torch.equal(out.hard_mask[mask], select(ce))
    assert rel(out.difficulty[mask], ce) <= 1e-5


@pytest.mark.parametrize("path", PATHS)
def test_the_two_forms_select_different_tokens(path):
    """λ = 0.5 and a teacher with p(label) = 0.7, p(other) = 0.3: ỹ = (0.85, 0.15), whose entropy
    H(ỹ) = 0.423 > Γ = 0.4. A student that already matches ỹ (KL ≈ 0) is easy under the KL form
    and hard under the CE form, whatever it learns; a student far from ỹ is hard under both and a
    confident teacher's token (p(label) = 0.99, matched) is easy under both."""
    V, big = 8, 30.0
    teacher = torch.full((1, 3, V), -big)
    teacher[0, 0, :2] = torch.tensor([0.7, 0.3]).log()  # the ambiguous token, label 0
    teacher[0, 1, :2] = torch.tensor([0.7, 0.3]).log()  # the same teacher, label 0
    teacher[0, 2, :2] = torch.tensor([0.99, 0.01]).log()  # a confident teacher, label 0
    labels = torch.zeros(1, 3, dtype=torch.long)
    p = torch.softmax(teacher.double(), -1)
    y_tilde = 0.5 * one_hot(labels, V).double() + 0.5 * p
    student = y_tilde.clamp_min(1e-30).log().float()  # q = ỹ
    student[0, 1] = torch.zeros(V)  # a uniform student: far from ỹ
    entropy = -xlogy(y_tilde, y_tilde).sum(-1)[0]
    assert abs(entropy[0].item() - 0.4227) < 1e-3
    kw = {"lam": 0.5, "gamma": 0.4, "chunk_size": path}
    kl = distill_loss(student, teacher, labels, "sekd", **kw)
    ce = distill_loss(student, teacher, labels, "sekd", difficulty="cross_entropy", **kw)
    assert kl.hard_mask[0].tolist() == [False, True, False]
    assert ce.hard_mask[0].tolist() == [True, True, False]
    assert kl.difficulty[0, 0].item() < 1e-5
    assert abs(ce.difficulty[0, 0].item() - entropy[0].item()) < 1e-5
    # the loss of each token is still eq. 7 / eq. 8 of its class: token 0 moves from KL ≈ 0 to
    # the skewed KL, the others keep their loss
    loss64 = transcription(
        student, teacher, labels, 0.5, 0.5, lambda d: torch.tensor([True, True, False]), "kl"
    )[0]
    assert abs(ce.loss.item() - loss64.item()) <= 1e-5 * max(loss64.item(), 1e-6)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("objective", ["sekd", "sekd_topk"])
def test_cross_entropy_with_an_offset(path, objective):
    """A difficulty_offset still shifts the easy tokens' KL loss; the CE d is KL + H(ỹ) of the
    given target (the offset cancels in it: see test_offset_meaning_with_a_sampled_teacher)."""
    s, t, labels = make_batch((3, 6, 30), seed=9)
    offset = torch.randn(labels.shape, generator=torch.Generator().manual_seed(10)) * 0.3
    kw = {"top_k_percent": 30} if objective == "sekd_topk" else {}
    check(s, t, labels, objective, path, "cross_entropy", offset=offset, **kw)
    check(s, t, labels, objective, path, "kl", offset=offset, **kw)


def test_offset_meaning_with_a_sampled_teacher():
    """sekd.teacher.store: for a sampled ỹ̂, offset = Σ ỹ log ỹ - Σ ỹ̂ log ỹ̂ makes the KL form's
    d = KL(ỹ̂||q) + offset = Σ ỹ log ỹ - Σ ỹ̂ log q unbiased. The CE form's d must equal the
    corrected KL plus the exact H(ỹ) (from the store's H(p) and p[label]), which is
    -Σ ỹ̂ log q: linear in ỹ̂, so unbiased too (its mean over samples is the exact teacher's)."""
    torch.manual_seed(0)
    V, lam = 30, 0.5
    g = torch.Generator().manual_seed(4)
    log_p = torch.log_softmax(torch.randn(4, V, generator=g), -1)
    s = torch.randn(1, 4, V, generator=g) * 2
    labels = torch.tensor([[1, 7, 29, 4]])
    fields = {
        "entropy": -(log_p.exp() * log_p).sum(-1),
        "label_logprob": log_p.gather(-1, labels[0][:, None])[:, 0],
    }
    exact_entropy = -ts.target_negentropy(
        fields["entropy"], fields["label_logprob"].double().exp(), lam
    )
    kw = {"lam": lam, "gamma": 2.0}
    exact = distill_loss(s, log_p[None], labels, "sekd", difficulty="cross_entropy", **kw)
    mean, rounds = torch.zeros(4, dtype=torch.float64), 500
    for r in range(rounds):
        ids, w = ts.sample_sparse(log_p, 8, 1.0, torch.Generator().manual_seed(r))
        teacher = ts.dense_log_probs(ids, w, V)[None]
        offset = ts.difficulty_offset({**fields, "ids": ids, "weights": w}, labels[0], lam)[None]
        for path in (None, 3):
            both = {**kw, "chunk_size": path, "difficulty_offset": offset}
            kl = distill_loss(s, teacher, labels, "sekd", **both)
            ce = distill_loss(s, teacher, labels, "sekd", difficulty="cross_entropy", **both)
            expected = kl.difficulty[0].double() + exact_entropy
            assert torch.allclose(ce.difficulty[0].double(), expected, rtol=1e-5, atol=1e-5)
            assert torch.equal(ce.hard_mask, ce.difficulty > kw["gamma"])
        mean += ce.difficulty[0].double()
    assert torch.allclose(mean / rounds, exact.difficulty[0].double(), atol=0.1)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("objective", ["sekd", "sekd_topk"])
def test_fully_masked_rows(path, objective):
    s, t, labels = make_batch((3, 6, 30), seed=11)
    labels[1] = -100
    kw = {"top_k_percent": 30} if objective == "sekd_topk" else {}
    check(s, t, labels, objective, path, "cross_entropy", **kw)
    check(s, t, labels, objective, path, "kl", hard_tokens="all", **kw)
    labels[:] = -100
    for extra in ({"difficulty": "cross_entropy"}, {"hard_tokens": "all"}):
        out, grad = run(s, t, labels, objective, chunk_size=path, **kw, **extra)
        assert out.loss.item() == 0.0 and out.num_tokens == 0
        assert torch.count_nonzero(grad) == 0 and not out.hard_mask.any()


# --- betatokens: the tokens a progressive β skews ------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("objective", ["sekd", "sekd_topk"])
@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
def test_all_tokens_hard_is_skew_kd(path, objective, beta):
    """hard_tokens="all": β(t) on every token (eq. 7), i.e. skew_kd at the same β, whatever Γ,
    K or the difficulty form; d is still reported (KL form as in skew_kd)."""
    s, t, labels = make_batch((3, 7, 50), seed=13)
    kw = {"top_k_percent": 20} if objective == "sekd_topk" else {"gamma": 0.4}
    ref, g_ref = run(s, t, labels, "skew_kd", chunk_size=path, beta=beta)
    for form in ("kl", "cross_entropy"):
        out, grad = run(
            s, t, labels, objective, chunk_size=path, beta=beta, hard_tokens="all",
            difficulty=form, **kw,
        )  # fmt: skip
        assert torch.allclose(out.loss, ref.loss, rtol=1e-6, atol=0)
        assert rel(grad, g_ref) <= 1e-6
        assert torch.equal(out.hard_mask, labels != -100)
        if form == "kl":
            assert torch.equal(out.loss, ref.loss) and torch.equal(grad, g_ref)
            assert torch.equal(out.difficulty, ref.difficulty)
    check(s, t, labels, objective, path, "kl", beta=beta, hard_tokens="all", **kw)


@pytest.mark.parametrize("path", PATHS)
def test_selected_hard_tokens_is_not_skew_kd(path):
    """The default keeps SE-KD's split: some tokens easy, a different loss from skew_kd."""
    s, t, labels = make_batch((3, 7, 50), seed=13)
    d = distill_loss(s, t, labels, "noevo_kd").difficulty[labels != -100]
    kw = {"chunk_size": path, "gamma": middle_gamma(d)}
    out, _ = run(s, t, labels, "sekd", hard_tokens="selected", **kw)
    skew, _ = run(s, t, labels, "skew_kd", chunk_size=path)
    assert not out.hard_mask[labels != -100].all()
    assert out.loss.item() != skew.loss.item()


# --- defaults: bit-identical ---------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("objective", ["noevo_kd", "skew_kd", "sekd", "sekd_topk", "forward_kd"])
def test_defaults_are_bit_identical(path, objective):
    s, t, labels = make_batch((3, 7, 50), seed=17)
    offset = torch.randn(labels.shape, generator=torch.Generator().manual_seed(18)) * 0.3
    kw = {"top_k_percent": 30, "chunk_size": path, "difficulty_offset": offset}
    plain, g_plain = run(s, t, labels, objective, **kw)
    explicit, g_explicit = run(
        s, t, labels, objective, difficulty="kl", hard_tokens="selected", **kw
    )
    assert torch.equal(plain.loss, explicit.loss) and torch.equal(g_plain, g_explicit)
    for a, b in ((plain.hard_mask, explicit.hard_mask), (plain.difficulty, explicit.difficulty)):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("objective", ["noevo_kd", "skew_kd", "forward_kd", "sft", "gkd"])
def test_other_objectives_ignore_the_switches(path, objective):
    s, t, labels = make_batch((2, 5, 20), seed=19)
    plain, g_plain = run(s, t, labels, objective, chunk_size=path)
    other, g_other = run(
        s, t, labels, objective, chunk_size=path, difficulty="cross_entropy", hard_tokens="all"
    )
    assert torch.equal(plain.loss, other.loss) and torch.equal(g_plain, g_other)
    for a, b in ((plain.hard_mask, other.hard_mask), (plain.difficulty, other.difficulty)):
        assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, name", [({"difficulty": "ce"}, "difficulty"), ({"hard_tokens": "hard"}, "hard_tokens")]
)
def test_bad_values_are_refused(kwargs, name):
    s, t, labels = make_batch((2, 5, 20), seed=21)
    with pytest.raises(ValueError, match=name):
        distill_loss(s, t, labels, "sekd", **kwargs)


# --- Variant.loss_kwargs: the run options the loss reads ----------------------------------------


def test_loss_kwargs_of_the_papers_runs_are_unchanged():
    for objective in ("sekd", "sekd_topk", "forward_kd", "skew_kd", "noevo_kd"):
        for beta in (0.5, (0.5, 0.0)):
            variant = make_variant(objective, {**KD, "beta": beta})
            assert variant.loss_kwargs() == variant.hparams_for("loss")


def test_loss_kwargs_carry_the_difficulty_form():
    options = {"difficulty": "cross_entropy"}
    for objective in ("sekd", "sekd_topk"):
        variant = make_variant(objective, KD, options)
        assert variant.loss_kwargs() == {
            **variant.hparams_for("loss"),
            **{"difficulty": "cross_entropy"},
        }
        assert Variant.from_values(variant.values()).loss_kwargs() == variant.loss_kwargs()
    for objective in ("forward_kd", "noevo_kd", "skew_kd"):
        variant = make_variant(objective, KD, options)
        assert "difficulty" not in variant.loss_kwargs()
    # an option on a run it does not apply to (built directly) is not read either
    direct = Variant("forward_kd", {"lam": 0.5}, {"difficulty": "cross_entropy"})
    assert direct.loss_kwargs() == {"lam": 0.5}


def test_loss_kwargs_carry_the_progressive_beta_tokens():
    options = {"betatokens": "all"}
    scheduled = make_variant("sekd", {**KD, "beta": (0.5, 0.0)}, options)
    assert scheduled.loss_kwargs()["hard_tokens"] == "all"
    assert scheduled.loss_kwargs()["beta"] == 0.5
    assert Variant.from_values(scheduled.values()).loss_kwargs() == scheduled.loss_kwargs()
    # only runs with a β schedule carry it
    assert "hard_tokens" not in make_variant("sekd", KD, options).loss_kwargs()
    assert "hard_tokens" not in Variant("sekd", {**KD}, options).loss_kwargs()
    # both options together
    both = make_variant(
        "sekd", {**KD, "beta": (0.5, 0.0)}, {"betatokens": "all", "difficulty": "cross_entropy"}
    )
    assert both.loss_kwargs()["hard_tokens"] == "all"
    assert both.loss_kwargs()["difficulty"] == "cross_entropy"


def test_loss_kwargs_reach_distill_loss():
    """As the trainer calls it: distill_loss(..., **variant.loss_kwargs())."""
    s, t, labels = make_batch((2, 6, 30), seed=23)
    scheduled = make_variant("sekd", {**KD, "beta": (0.5, 0.0)}, {"betatokens": "all"})
    out = distill_loss(s, t, labels, "sekd", **scheduled.loss_kwargs())
    ref = distill_loss(s, t, labels, "skew_kd", lam=0.5, beta=0.5)
    assert torch.equal(out.loss, ref.loss)
    ce = make_variant("sekd", KD, {"difficulty": "cross_entropy"})
    out = distill_loss(s, t, labels, "sekd", **ce.loss_kwargs())
    assert out.hard_mask.sum() >= distill_loss(s, t, labels, "sekd", lam=0.5).hard_mask.sum()
