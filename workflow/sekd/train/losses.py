"""Token-level distillation losses of Self-Evolution KD (Song et al., COLING 2025, §3 and §4).

Per target token i: q = softmax(student logits), p = softmax(teacher logits), y = one-hot(label),
ỹ = (1-λ)·y + λ·p (eq. 4), and KL(a||b) = Σ_v a_v (log a_v - log b_v) with 0·log 0 = 0: the true
KL, the target's entropy included (never the cross-entropy form, except in word_kd, whose
definition is one). Every objective is a per-token loss averaged over the N non-ignored tokens of
the whole batch (the 1/N of eqs. 1, 2 and 9).

    sft              -log q[label]                                              eq. 2
    forward_kd       (1-λ)·SFT + λ·KL(p||q)                                     eq. 3
    reverse_kd       (1-λ)·SFT + λ·KL(q||p)                                     §4 Baselines
    noevo_kd         KL(ỹ||q) on every token (all "easy")                       eq. 8, §4
    skew_kd          KL(ỹ||βq + (1-β)ỹ) on every token (all "hard")             eqs. 6-7, §4
    sekd             d = KL(ỹ||q) (eq. 5); d > Γ: eq. 7, else eq. 8; eq. 9      eqs. 4-9
    sekd_topk        as sekd, hard = the ⌈K%·N⌉ tokens of the batch with largest d   §5.2.1
    skew_teacher_kd  (1-λ)·SFT + λ·KL(p||βq + (1-β)p)                           eq. 10

The seeds' baselines (issue 10, Table 3); `sekd.plan.objectives` declares which sequences each
trains on (gold, the teacher's outputs, the student's samples, or a mixture):

    word_kd          (1-λ)·SFT + λ·(-Σ_v p_v log q_v): forward_kd's gradient,
                     its value + λ·H(p)                                         Kim & Rush 2016
    seq_kd           -log q[y] on the teacher's best beam (reads no teacher logits)  Kim & Rush
    seq_inter        -log q[y] on the teacher's beam closest to the reference (idem) Kim & Rush
    fd_kl            KL(p||q) on teacher samples                                Wen et al. 2023
    fd_rkl           KL(q||p) on student samples                                Wen et al. 2023
    fd_js            m = (p+q)/2: KL(p||m) on teacher samples (on_policy=False),
                     KL(q||m) on student samples (on_policy=True)               Wen et al. 2023
    fd_tvd           ½·Σ_v |p_v - q_v| on either                                Wen et al. 2023
    gkd              m = βp + (1-β)q: β·KL(p||m) + (1-β)·KL(q||m), β = jsd_beta;
                     KL(p||q) at β = 0, KL(q||p) at β = 1                       GKD (TRL)

Gradients flow through q only: the teacher logits are detached on entry, and ỹ, d and the
hard/easy split are constants.

Two open choices of the paper are keywords of `distill_loss` (run options, issue 11; the defaults
are the paper's reading and leave every result bit-identical):
- `difficulty` ("kl" | "cross_entropy"): the d of eq. 5 that sekd and sekd_topk split on, the true
  KL(ỹ||q), or the cross-entropy CE(ỹ, q) = -Σ_v ỹ_v log q_v = KL(ỹ||q) + H(ỹ) of
  DistiLLM/MiniLLM-style code. Only the split (and the reported d) changes: each token's loss is
  still eq. 7 or eq. 8, with the true KL.
- `hard_tokens` ("selected" | "all"): with "all" every token of sekd and sekd_topk is hard (β_i = β
  on all tokens, eq. 7), i.e. skew_kd's loss; for a progressive β (Fig. 3) that skews every token.

Adding an objective is one declaration and one function:

    sekd.plan.objectives.declare(Objective("half_kd", "Half KD", ("lam",), needs_teacher=True))

    @register_objective("half_kd")
    def _half_kd(log_q, log_p, labels, *, lam):  # [n,V], [n,V], [n] -> loss [n], None, None
        return (1 - lam) * _nll(log_q, labels) + lam / 2 * _kl(log_p, log_q), None, None

The declaration (label, hyper-parameters, teacher, sequences) is all the workflow reads: config
validation, run names and tables follow from it. A chunked kernel
(`sekd.train.chunked.register_kernel`) is optional; without one the objective takes the reference
path below.

Conventions:
- Logits come aligned with the labels (position t predicts labels[:, t]; the caller shifts);
  label -100 is ignored. "The batch" of sekd_topk is the batch given to one call.
- Everything is computed in fp32 log space from `log_softmax` (bf16/fp16 inputs are upcast), on
  the [N, V] rows of the non-ignored tokens only. KL terms are taken only where the target is > 0,
  and every unselected `torch.where` branch is kept finite so no NaN reaches the backward pass.
  The skewed proxy is log(βq + (1-β)t) = logaddexp(log β + log q, log(1-β) + log t), exact for
  β = 0 (proxy = target: loss 0, gradient 0) and β = 1 (proxy = q).
- Two implementations give the same results: by default `distill_loss` runs the memory-flat
  chunked one of `sekd.train.chunked` (analytic gradients, computed chunk by chunk of tokens in the
  forward pass); `chunk_size=None` (or `distill_loss_reference`) runs the autograd one below, the
  reference, which materialises fp32 [N, V] intermediates. Objectives without a kernel
  registered in `sekd.train.chunked` always take the reference path.
- Teacher vocabulary: student and teacher must share the tokenizer. If the teacher has more
  logits than the student (embedding rows padded, e.g. to a multiple of 64), they are cut to the
  student's first V before the softmax, i.e. p is renormalised over the shared ids; fewer is an
  error.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from sekd.plan import objectives
from sekd.plan.objectives import Objective, get_objective
from sekd.train.chunked import ChunkedObjective, auto_chunk_size, chunked_distill, kernel_of

IGNORE_INDEX = -100
DIFFICULTY_FORMS = objectives.RUN_OPTIONS["difficulty"].values  # d of eq. 5 (values[0]: default)
HARD_TOKENS = ("selected", "all")  # sekd's hard tokens (`distill_loss(hard_tokens=...)`)

# A reference loss: fn(log_q [n,V], log_p [n,V] | None, labels [n], *, <its keywords>) ->
# (per-token loss [n], hard [n] bool | None, difficulty d [n] | None). log_p is None for the
# objectives that read no teacher logits (`Objective.reads_teacher_logits`). It takes by keyword
# only its objective's own loss hyper-parameters (`Objective.hparams`) and any of
# CONTEXT_KEYWORDS it reads (no **kwargs).
PerToken = tuple[Tensor, Tensor | None, Tensor | None]
ObjectiveFn = Callable[..., PerToken]


@dataclass(frozen=True)
class DistillOutput:
    loss: Tensor  # 0-dim fp32: loss_sum / num_tokens (0, still in the graph, if no tokens)
    loss_sum: Tensor  # 0-dim fp32: sum of the per-token losses
    num_tokens: int  # N, the non-ignored tokens
    hard_mask: Tensor | None  # bool [B,T] hard-to-learn tokens, False where ignored
    difficulty: Tensor | None  # detached fp32 [B,T], d_i of eq. 5, 0 where ignored


CONTEXT_KEYWORDS = ("on_policy", "d_offset", "difficulty", "hard_tokens", "hard")
"""What `distill_loss` hands an objective's function besides its hyper-parameters, each only to
the functions that name it: the sequences' side (fd_js), d's offset, d's form and which tokens
are hard (the self-evolution objectives), hard tokens chosen beforehand (sekd_topk)."""


@functools.cache
def _keywords(fn: ObjectiveFn) -> tuple[str, ...]:
    """The keyword-only parameters of an objective's function: what it reads."""
    parameters = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


def _own(fn: ObjectiveFn, values: dict[str, float], context: dict) -> dict:
    """The keywords `fn` names, from the hyper-parameter `values` and the call's `context`."""
    available = {**values, **context}
    return {name: available[name] for name in _keywords(fn) if name in available}


def _check_signature(name: str, fn: ObjectiveFn) -> None:
    """ValueError unless objective `name`'s function takes (log_q, log_p, labels) and, by
    keyword only, exactly the loss hyper-parameters its declaration reads plus any of
    CONTEXT_KEYWORDS: each objective function takes only its own hyper-parameters."""
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        raise ValueError(f"objective {name!r}: its function takes **kwargs; name what it reads")
    own = set(get_objective(name).hparams_for("loss"))
    named = set(_keywords(fn))
    if own - named or named - own - set(CONTEXT_KEYWORDS):
        raise ValueError(
            f"objective {name!r}: its function's keywords {sorted(named)} must be its declared "
            f"loss hyper-parameters {sorted(own)} plus any of {CONTEXT_KEYWORDS}"
        )


def register_objective(name: str) -> Callable[[ObjectiveFn], ObjectiveFn]:
    """Register `fn` as the reference per-token loss of objective `name`, which must be declared
    first (`sekd.plan.objectives.declare`); once per objective. `fn` takes by keyword only the loss
    hyper-parameters the declaration reads, plus any of CONTEXT_KEYWORDS (`_check_signature`)."""

    def decorator(fn: ObjectiveFn) -> ObjectiveFn:
        if name in objectives.OBJECTIVES and objectives.implementation(name, "reference") is None:
            _check_signature(name, fn)
        objectives.attach(name, "reference", fn)
        return fn

    return decorator


def reference_loss(name: str) -> ObjectiveFn:
    """The reference per-token loss registered for objective `name`."""
    fn = objectives.implementation(name, "reference")
    if fn is None:
        raise ValueError(
            f"objective {name!r} has no loss function: register one with "
            "@sekd.train.losses.register_objective(name)"
        )
    return fn


# --- numerics: log-probabilities [n, V] in fp32 ------------------------------------------------


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _nll(log_q: Tensor, labels: Tensor) -> Tensor:
    """-log q[label] (eq. 2)."""
    return -log_q.gather(-1, labels[:, None]).squeeze(-1)


def _kl(log_t: Tensor, log_m: Tensor) -> Tensor:
    """KL(t||m) per row, terms only where t > 0; forward and backward finite where t = 0."""
    t = log_t.exp()
    pos = t > 0
    log_t = torch.where(pos, log_t, 0.0)
    log_m = torch.where(pos, log_m, 0.0)  # t = 0 terms are 0·(0 - 0), even if log m = -inf
    return (t * (log_t - log_m)).sum(-1)


def _log_target(log_p: Tensor, labels: Tensor, lam: float) -> Tensor:
    """log ỹ, ỹ = (1-λ)·y + λ·p (eq. 4); -inf where ỹ = 0 (λ = 0 off the label)."""
    log_t = log_p + _log(lam)
    at_label = log_t.gather(-1, labels[:, None])
    at_label = torch.logaddexp(at_label, torch.full_like(at_label, _log(1 - lam)))
    return log_t.scatter(-1, labels[:, None], at_label)


def _skew_kl(log_t: Tensor, log_q: Tensor, beta: float | Tensor) -> Tensor:
    """KL(t || βq + (1-β)t) per row (eqs. 6-7, 10); β a float or a per-row [n] tensor."""
    beta = torch.as_tensor(beta, dtype=log_q.dtype, device=log_q.device)
    if beta.dim() == 1:
        beta = beta[:, None]
    # log t is replaced by 0 where t = 0 so that the two logaddexp terms are never both -inf
    # (β = 0 and t = 0), whose backward would be NaN; those entries are dropped by _kl anyway.
    log_t_safe = torch.where(log_t.exp() > 0, log_t, 0.0)
    log_m = torch.logaddexp(log_q + beta.log(), log_t_safe + torch.log1p(-beta))
    return _kl(log_t, log_m)


# --- objectives ---------------------------------------------------------------------------------
# Each gets log_q, log_p (None for sft), labels [n] and, by keyword, what it names: its own
# hyper-parameters and any of CONTEXT_KEYWORDS.


@register_objective("sft")
def _sft(log_q: Tensor, log_p: None, labels: Tensor) -> PerToken:
    """Eq. 2."""
    return _nll(log_q, labels), None, None


@register_objective("forward_kd")
def _forward_kd(log_q: Tensor, log_p: Tensor, labels: Tensor, *, lam: float) -> PerToken:
    """Eq. 3: (1-λ)·SFT + λ·KL(p||q)."""
    return (1 - lam) * _nll(log_q, labels) + lam * _kl(log_p, log_q), None, None


@register_objective("reverse_kd")
def _reverse_kd(log_q: Tensor, log_p: Tensor, labels: Tensor, *, lam: float) -> PerToken:
    """§4 Baselines: (1-λ)·SFT + λ·KL(q||p); the gradient flows through both q's."""
    return (1 - lam) * _nll(log_q, labels) + lam * _kl(log_q, log_p), None, None


def _self_evolution(
    log_q: Tensor,
    log_p: Tensor,
    labels: Tensor,
    lam: float,
    beta: float,
    select: Callable,
    d_offset: Tensor | None = None,
    difficulty: str = objectives.RUN_OPTIONS["difficulty"].default,
) -> tuple[Tensor, Tensor, Tensor]:
    """Eqs. 4-9: d = KL(ỹ||q) without gradient, hard = select(d); hard tokens get
    KL(ỹ||βq + (1-β)ỹ) (eq. 7), easy ones KL(ỹ||q) (eq. 8) -- written as the skewed KL with a
    per-token β_i = β (hard) or 1 (easy), for which the proxy is exactly q.

    `difficulty` "cross_entropy": d = CE(ỹ, q) = -Σ ỹ log q = KL(ỹ||q) + H(ỹ) instead (the split
    and the returned d change, not the losses).

    `d_offset` [n]: a per-token constant added to the KL -- d of the "kl" form, hence the
    hard/easy split, and the loss value of the tokens whose loss is KL(ỹ||q) (β_i = 1); never
    to a gradient. `sekd.teacher.store` uses it to put the exact Σ ỹ log ỹ into the KL when the
    teacher distribution is a sampled estimate ỹ̂: offset = Σ ỹ log ỹ - Σ ỹ̂ log ỹ̂. The
    cross-entropy form needs none: with the exact H(ỹ) = H(ỹ̂) - offset,
    (KL(ỹ̂||q) + offset) + H(ỹ) = -Σ ỹ̂ log q, linear in ỹ̂, hence already unbiased."""
    log_t = _log_target(log_p, labels, lam)
    d = _kl(log_t, log_q.detach())
    if d_offset is not None:
        d = d + d_offset
    if difficulty == "cross_entropy":
        d = _cross_entropy(log_t, log_q.detach())
    hard = select(d)
    beta_i = torch.where(hard, beta, 1.0)
    kl = _skew_kl(log_t, log_q, beta_i)
    if d_offset is not None:
        kl = kl + torch.where(beta_i == 1, d_offset, 0.0)
    return kl, hard, d


def _no_token(d: Tensor) -> Tensor:
    return torch.zeros_like(d, dtype=torch.bool)


def _every_token(d: Tensor) -> Tensor:
    return torch.ones_like(d, dtype=torch.bool)


@register_objective("noevo_kd")
def _noevo_kd(
    log_q: Tensor, log_p: Tensor, labels: Tensor, *, lam: float, d_offset: Tensor | None
) -> PerToken:
    """§4 Baselines: KL(ỹ||q), every token easy (eq. 8)."""
    return _self_evolution(log_q, log_p, labels, lam, 1.0, _no_token, d_offset)


@register_objective("skew_kd")
def _skew_kd(
    log_q: Tensor,
    log_p: Tensor,
    labels: Tensor,
    *,
    lam: float,
    beta: float,
    d_offset: Tensor | None,
) -> PerToken:
    """§4 Baselines: KL(ỹ||βq + (1-β)ỹ), every token hard (eq. 7)."""
    return _self_evolution(log_q, log_p, labels, lam, beta, _every_token, d_offset)


@register_objective("sekd")
def _sekd(
    log_q: Tensor,
    log_p: Tensor,
    labels: Tensor,
    *,
    lam: float,
    beta: float,
    gamma: float,
    d_offset: Tensor | None,
    difficulty: str,
    hard_tokens: str,
) -> PerToken:
    """Eqs. 4-9: the hard-to-learn tokens are T_h = {i | d_i > Γ} (strict); every token with
    hard_tokens="all"."""
    select = _every_token if hard_tokens == "all" else (lambda d: d > gamma)
    return _self_evolution(log_q, log_p, labels, lam, beta, select, d_offset, difficulty)


def _topk_count(top_k_percent: float, n: int) -> int:
    """k = ⌈K/100·N⌉ hard tokens of sekd_topk."""
    # 1e-9: 20% of 5 is 1, not 2
    return min(max(math.ceil(top_k_percent * n / 100 - 1e-9), 0), n)


@register_objective("sekd_topk")
def _sekd_topk(
    log_q: Tensor,
    log_p: Tensor,
    labels: Tensor,
    *,
    lam: float,
    beta: float,
    top_k_percent: float,
    d_offset: Tensor | None,
    hard: Tensor | None,
    difficulty: str,
    hard_tokens: str,
) -> PerToken:
    """§5.2.1: the k = ⌈K/100·N⌉ tokens of the batch with the largest d are hard; ties are
    broken as torch.topk breaks them. `hard` [n] (bool): the hard tokens chosen beforehand
    (a pool larger than this batch: sekd.train.pool), used instead of the batch's top-k. Every token
    with hard_tokens="all"."""
    k = _topk_count(top_k_percent, labels.numel())

    def select(d: Tensor) -> Tensor:
        if hard is not None:
            return hard
        top = torch.zeros_like(d, dtype=torch.bool)
        top[torch.topk(d, k).indices] = True
        return top

    if hard_tokens == "all":
        select = _every_token
    return _self_evolution(log_q, log_p, labels, lam, beta, select, d_offset, difficulty)


@register_objective("skew_teacher_kd")
def _skew_teacher_kd(
    log_q: Tensor, log_p: Tensor, labels: Tensor, *, lam: float, beta: float
) -> PerToken:
    """Eq. 10: (1-λ)·SFT + λ·KL(p||βq + (1-β)p)."""
    return (1 - lam) * _nll(log_q, labels) + lam * _skew_kl(log_p, log_q, beta), None, None


# --- the seeds' baselines (issue 10, Table 3) ---------------------------------------------------


def _cross_entropy(log_t: Tensor, log_m: Tensor) -> Tensor:
    """-Σ_v t_v log m_v per row, terms only where t > 0 (0 there even if log m = -inf)."""
    t = log_t.exp()
    pos = t > 0
    return -(t * torch.where(pos, log_m, 0.0)).sum(-1)


def _log_mixture(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """log(w·a + (1-w)·b) = logaddexp(log w + log a, log(1-w) + log b), for 0 < w < 1.

    Finite forward and backward wherever a > 0 or b > 0; log q (the student) is always finite
    here, so the two terms are never both -inf."""
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


@register_objective("word_kd")
def _word_kd(log_q: Tensor, log_p: Tensor, labels: Tensor, *, lam: float) -> PerToken:
    """Kim & Rush (2016) word-level KD, in its cross-entropy form on purpose:
    (1-λ)·(-log q[y]) + λ·(-Σ_v p_v log q_v).

    Since -Σ_v p_v log q_v = KL(p||q) + H(p) and p is a constant, it has exactly forward_kd's
    gradient (eq. 3, same λ); its value is forward_kd's + λ·H(p), H(p) = -Σ_v p_v log p_v."""
    return (1 - lam) * _nll(log_q, labels) + lam * _cross_entropy(log_p, log_q), None, None


@register_objective("seq_kd")
def _seq_kd(log_q: Tensor, log_p: None, labels: Tensor) -> PerToken:
    """Kim & Rush (2016) SeqKD: -log q[y] (eq. 2) where y is the teacher's best beam (the
    sequences are the trainer's business; the loss reads no teacher logits)."""
    return _nll(log_q, labels), None, None


@register_objective("seq_inter")
def _seq_inter(log_q: Tensor, log_p: None, labels: Tensor) -> PerToken:
    """Kim & Rush (2016) Seq-Inter: -log q[y] (eq. 2) where y is the teacher's beam with the
    highest sentence BLEU to the reference; no teacher logits."""
    return _nll(log_q, labels), None, None


@register_objective("fd_kl")
def _fd_kl(log_q: Tensor, log_p: Tensor, labels: Tensor) -> PerToken:
    """f-DISTILL KL (Wen et al. 2023), step-wise: KL(p||q) per token."""
    return _kl(log_p, log_q), None, None


@register_objective("fd_rkl")
def _fd_rkl(log_q: Tensor, log_p: Tensor, labels: Tensor) -> PerToken:
    """f-DISTILL RKL (Wen et al. 2023), step-wise: KL(q||p) per token; the gradient flows
    through both q's."""
    return _kl(log_q, log_p), None, None


@register_objective("fd_js")
def _fd_js(log_q: Tensor, log_p: Tensor, labels: Tensor, *, on_policy: bool) -> PerToken:
    """f-DISTILL JS (Wen et al. 2023), step-wise, one half per call: m = (p+q)/2, KL(p||m) per
    token on the teacher's sequences (on_policy=False), KL(q||m) on the student's samples
    (on_policy=True); the trainer weighs each half ½. The gradient flows through q in m (and in
    the second half's q)."""
    log_m = _log_mixture(log_p, log_q, 0.5)
    return (_kl(log_q, log_m) if on_policy else _kl(log_p, log_m)), None, None


@register_objective("fd_tvd")
def _fd_tvd(log_q: Tensor, log_p: Tensor, labels: Tensor) -> PerToken:
    """f-DISTILL TVD (Wen et al. 2023), step-wise: ½·Σ_v |p_v - q_v| per token, the same on the
    teacher's and on the student's sequences. Gradient ½·sign(q_v - p_v) through q, with
    torch.abs's subgradient 0 where q_v = p_v (finite everywhere)."""
    return 0.5 * (log_p.exp() - log_q.exp()).abs().sum(-1), None, None


@register_objective("gkd")
def _gkd(log_q: Tensor, log_p: Tensor, labels: Tensor, *, jsd_beta: float) -> PerToken:
    """GKD's generalized JSD (Agarwal et al. 2024; TRL's generalized_jsd_loss) with β = jsd_beta:
    m = β·p + (1-β)·q, loss = β·KL(p||m) + (1-β)·KL(q||m) per token. Its limits at β = 0 and 1
    are 0; as TRL does, β = 0 is KL(p||q) and β = 1 is KL(q||p) exactly."""
    if jsd_beta == 0:
        return _kl(log_p, log_q), None, None
    if jsd_beta == 1:
        return _kl(log_q, log_p), None, None
    log_m = _log_mixture(log_p, log_q, jsd_beta)
    loss = jsd_beta * _kl(log_p, log_m) + (1 - jsd_beta) * _kl(log_q, log_m)
    return loss, None, None


# --- entry point --------------------------------------------------------------------------------


def _hparam_values(given: dict[str, float]) -> dict[str, float]:
    """Every loss hyper-parameter's value (`sekd.plan.objectives.loss_hparams`): `given`, else its
    declared default (`HParam.default`), each checked against its declaration (`HParam.check`:
    type and range); a TypeError for a keyword that is no loss hyper-parameter."""
    names = objectives.loss_hparams()
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TypeError(
            f"distill_loss() got unexpected keyword arguments {unknown}; the loss's "
            f"hyper-parameters are {list(names)} (sekd.plan.objectives.HPARAMS)"
        )
    values = {name: given.get(name, objectives.HPARAMS[name].default) for name in names}
    for name, value in values.items():
        objectives.HPARAMS[name].check(value)
    return values


def _check_options(on_policy: bool, difficulty: str, hard_tokens: str) -> None:
    """ValueError unless the loss's run options and on_policy are ones it knows."""
    if difficulty not in DIFFICULTY_FORMS:
        raise ValueError(f"difficulty must be one of {DIFFICULTY_FORMS}, got {difficulty!r}")
    if hard_tokens not in HARD_TOKENS:
        raise ValueError(f"hard_tokens must be one of {HARD_TOKENS}, got {hard_tokens!r}")
    if not isinstance(on_policy, bool):
        raise ValueError(f"on_policy must be True or False, got {on_policy!r}")


def _scatter(values: Tensor | None, mask: Tensor) -> Tensor | None:
    """Per-token values [n] back onto the [B,T] grid, zeros (False) where ignored."""
    if values is None:
        return None
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    out[mask] = values.detach()
    return out


def _check_inputs(
    declaration: Objective,
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    labels: Tensor,
    chunk_size: int | str | None,
) -> None:
    """ValueError unless student [B,T,V], teacher [B,T,V_t >= V] (when the objective reads
    teacher logits), labels [B,T] and chunk_size fit `distill_loss`."""
    if chunk_size not in (None, "auto") and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be an int >= 1, 'auto' or None; got {chunk_size!r}")
    if student_logits.dim() != 3 or labels.shape != student_logits.shape[:2]:
        raise ValueError(
            f"student_logits must be [B,T,V] and labels [B,T]; got student_logits "
            f"{tuple(student_logits.shape)} and labels {tuple(labels.shape)}"
        )
    if not declaration.reads_teacher_logits:
        return
    if teacher_logits is None:
        raise ValueError(f"objective {declaration.name!r} needs teacher_logits, got None")
    if teacher_logits.dim() != 3 or teacher_logits.shape[:2] != student_logits.shape[:2]:
        raise ValueError(
            f"teacher_logits {tuple(teacher_logits.shape)} must be [B,T,V_t] with the "
            f"[B,T] of student_logits {tuple(student_logits.shape)}"
        )
    if teacher_logits.shape[-1] < student_logits.shape[-1]:
        raise ValueError(
            f"teacher vocabulary ({teacher_logits.shape[-1]}) is smaller than the student's "
            f"({student_logits.shape[-1]}); student and teacher must share the tokenizer"
        )


def distill_loss(
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    labels: Tensor,
    objective: str,
    *,
    chunk_size: int | Literal["auto"] | None = "auto",
    difficulty_offset: Tensor | None = None,
    on_policy: bool = False,
    hard_mask: Tensor | None = None,
    difficulty: str = DIFFICULTY_FORMS[0],
    hard_tokens: str = HARD_TOKENS[0],
    **hparams: float,
) -> DistillOutput:
    """The `objective` loss of student logits [B,T,V] against teacher logits [B,T,V_t] and
    labels [B,T] (-100 ignored), averaged over the non-ignored tokens (eqs. 1-10). The teacher
    logits may be None for the objectives that read none (`Objective.reads_teacher_logits`).

    `hparams`: the loss's hyper-parameters by name (every `sekd.plan.objectives.HParam` of use
    "loss": lam, beta, gamma, top_k_percent, jsd_beta, ...), each checked against its
    declaration and defaulting to its declared default; the objective's function gets its own.

    `chunk_size`: rows per chunk of the memory-flat path (`sekd.train.chunked`, analytic gradients);
    "auto" picks it from V; None runs the reference autograd path (also that of objectives
    without a kernel). Both give the same DistillOutput up to fp32 rounding.

    Handed to the functions that name them (CONTEXT_KEYWORDS): `on_policy` (the sequences are
    the student's samples: fd_js's student half KL(q||m), else its teacher half KL(p||m));
    `difficulty_offset` [B,T], a per-token constant added to d of eq. 5 of the self-evolution
    objectives and to the loss of their tokens whose loss is KL(ỹ||q), never to a gradient
    (`sekd.teacher.store`, a sampled teacher; the "cross_entropy" d, linear in ỹ, needs none);
    `difficulty` (kd.difficulty) "kl" or "cross_entropy", the d of eq. 5 sekd and sekd_topk
    split on, CE(ỹ, q) = KL(ỹ||q) + H(ỹ); `hard_tokens` (kd.progressive_beta_tokens) "selected"
    (Γ or top-K) or "all" (every token hard, eq. 7); `hard_mask` [B,T] (sekd_topk): the hard
    tokens chosen beforehand from a larger pool (sekd.train.pool), the ignored entries False."""
    declaration = get_objective(objective)
    fn = reference_loss(objective)  # an error for an objective without one, on either path
    values = _hparam_values(hparams)
    _check_options(on_policy, difficulty, hard_tokens)
    _check_inputs(declaration, student_logits, teacher_logits, labels, chunk_size)
    mask = labels != IGNORE_INDEX
    targets = _targets(labels, mask, student_logits.shape[-1])
    offset = _difficulty_offset(difficulty_offset, labels, mask)
    hard_given = _given_hard(objective, hard_mask, mask)
    context = dict(on_policy=on_policy, d_offset=offset, difficulty=difficulty)
    context.update(hard_tokens=hard_tokens, hard=hard_given)
    teacher = teacher_logits if declaration.reads_teacher_logits else None
    kernel = kernel_of(objective)
    if chunk_size is not None and kernel is not None and targets.numel() > 0:  # no token: no chunk
        size = auto_chunk_size(student_logits.shape[-1], student_logits.device)
        size = size if chunk_size == "auto" else chunk_size
        result = _chunked(kernel, student_logits, teacher, mask, targets, values, size, context)
    else:  # the reference: autograd through fp32 [N, V] log-probabilities
        result = _reference(fn, student_logits, teacher, mask, targets, values, context)
    loss, loss_sum, hard, d = result
    n, hard_mask, d = targets.numel(), _scatter(hard, mask), _scatter(d, mask)
    return DistillOutput(loss, loss_sum, num_tokens=n, hard_mask=hard_mask, difficulty=d)


Result = tuple[Tensor, Tensor, Tensor | None, Tensor | None]  # loss, loss sum, hard [N], d [N]


def _targets(labels: Tensor, mask: Tensor, vocab_size: int) -> Tensor:
    """The labels [N] of the non-ignored tokens; a ValueError for one outside the vocabulary."""
    targets = labels[mask].long()
    if ((targets < 0) | (targets >= vocab_size)).any():
        raise ValueError(f"labels must be -100 or in [0, {vocab_size}) (the student vocabulary)")
    return targets


def _difficulty_offset(offset: Tensor | None, labels: Tensor, mask: Tensor) -> Tensor | None:
    """`difficulty_offset` [B,T] on the non-ignored tokens [N] (detached fp32), checked."""
    if offset is None:
        return None
    if offset.shape != labels.shape:
        raise ValueError(
            f"difficulty_offset {tuple(offset.shape)} must be [B,T] like labels "
            f"{tuple(labels.shape)}"
        )
    return offset.detach()[mask].float()


def _reference(
    fn: ObjectiveFn,
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    mask: Tensor,
    targets: Tensor,
    values: dict[str, float],
    context: dict,
) -> Result:
    """The reference path: `fn` on fp32 [N, V] log-probabilities, autograd for the gradient."""
    V = student_logits.shape[-1]
    log_q = student_logits[mask].float().log_softmax(-1)
    log_p = None
    if teacher_logits is not None:
        log_p = teacher_logits.detach()[mask][:, :V].float().log_softmax(-1)
    per_token, hard, d = fn(log_q, log_p, targets, **_own(fn, values, context))
    loss_sum = per_token.sum()  # an empty sum (no tokens) is 0 with zero gradients
    return loss_sum / max(targets.numel(), 1), loss_sum, hard, d


def _chunked(
    kernel: ChunkedObjective,
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    mask: Tensor,
    targets: Tensor,
    values: dict[str, float],
    chunk_size: int,
    context: dict,
) -> Result:
    """The memory-flat path (`sekd.train.chunked.chunked_distill`) of an objective with a kernel."""
    top_k_percent = values.get("top_k_percent")
    return chunked_distill(
        kernel,
        student_logits,
        teacher_logits,
        mask,
        targets,
        hparams=values,
        num_hard=lambda count: _topk_count(top_k_percent, count),
        chunk_size=chunk_size,
        d_offset=context["d_offset"],
        hard=context["hard"],
        difficulty=context["difficulty"],
        hard_tokens=context["hard_tokens"],
        on_policy=context["on_policy"],
    )


def _given_hard(objective: str, hard_mask: Tensor | None, mask: Tensor) -> Tensor | None:
    """The hard tokens [N] of `hard_mask` [B,T] on the non-ignored positions `mask`, checked;
    None if not given."""
    if hard_mask is None:
        return None
    if objective != "sekd_topk":
        raise ValueError(f"hard_mask is for objective 'sekd_topk', not {objective!r}")
    if hard_mask.shape != mask.shape or hard_mask.dtype != torch.bool:
        raise ValueError(
            f"hard_mask must be bool [B,T] like labels {tuple(mask.shape)}; got "
            f"{hard_mask.dtype} {tuple(hard_mask.shape)}"
        )
    if (hard_mask & ~mask).any():
        raise ValueError("hard_mask marks ignored tokens (label -100) as hard")
    return hard_mask.to(mask.device)[mask]


def distill_loss_reference(*args, **kwargs) -> DistillOutput:
    """`distill_loss` through the reference autograd implementation (chunk_size=None)."""
    return distill_loss(*args, **kwargs, chunk_size=None)


def progressive_beta(beta_begin: float, beta_end: float, step: int, total_steps: int) -> float:
    """β at `step` of the progressive strategy (§5.2.2, Fig. 3): linear from β_b at step 0 to
    β_e at `total_steps`, constant outside; β_e if total_steps <= 0."""
    if total_steps <= 0:
        return float(beta_end)
    frac = min(max(step / total_steps, 0.0), 1.0)
    return (1 - frac) * beta_begin + frac * beta_end
