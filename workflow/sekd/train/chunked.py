"""Memory-flat distillation losses: the `sekd.train.losses` objectives computed chunk by chunk of
token rows, with the gradient w.r.t. the student logits derived analytically in the forward pass
(Liger-Kernel style) instead of by autograd.

Each kernel registers beside its objective's reference loss, `@register_kernel(name, teacher)`
(the declaration is in `sekd.plan.objectives`); an objective without one takes the reference path.

`chunked_distill` walks the N non-ignored tokens in chunks of at most `chunk_size` rows, read one
chunk at a time from the [B,T,V] logits (views such as `logits[:, :-1]` are read in place; the
teacher's columns beyond V are never read). Per chunk, in fp32: log q and q = softmax(student),
log p and p = softmax(teacher[..., :V]) (or the target ỹ); the per-token losses; and the gradient
of the mean loss w.r.t. the student logits, written into one [B,T,V] buffer in the student
logits' dtype (zero on ignored rows). Backward only rescales that buffer, in place, by the
incoming gradient. Memory beyond the inputs: that buffer (F.cross_entropy's backward allocates
one too), O(N) per-token vectors and up to six fp32 [chunk, V] work buffers reused by every chunk.

Gradients. With ℓ = log q = log_softmax(s) and g_v = ∂L/∂ℓ_v for one token, the log-softmax
backward gives ∂L/∂s_v = g_v - q_v·Σ_u g_u. Per term (e_y the one-hot label, t the KL target,
m = βq + (1-β)t the skewed proxy, so ∂log m_v/∂ℓ_v = β·q_v/m_v):

    -log q_y            g = -e_y                          (SFT, eq. 2)
    KL(t||q)            g = -t                            (eqs. 3, 8; forward KD: t = p)
    KL(t||m)            g = -t·β·q/m                      (eqs. 6-7 with t = ỹ, eq. 10 with t = p)
    KL(q||p)            g_v = q_v·(log q_v - log p_v + 1)  (reverse KD)

weighted (1-λ) and λ as in `sekd.train.losses`. The difficulty d = KL(ỹ||q) (or, with
difficulty="cross_entropy", CE(ỹ, q) = -Σ ỹ log q), the hard/easy split and the teacher carry no
gradient. sekd_topk first runs a gradient-free chunked pass computing d for every token (O(N)
memory), takes the top-k of the whole batch, then runs the loss pass (no first pass with
hard_tokens="all": every token is hard).

Numerics (equal to the reference up to fp32 rounding; tests/test_losses_chunked.py):
- Logs are kept in base 2 internally (torch's exp2 is ~3x faster than exp on CPU); log values
  are converted to nats by one scalar factor in the per-row sums.
- Logits are clamped below at -1e30, so that -inf logits give probability 0 and a finite log,
  and λ = 0 gives log ỹ ≈ -1e30 off the label rather than -inf: every term of a KL whose target
  is 0 is then 0·finite = 0, which is what the reference's `t > 0` masks compute, without a mask
  pass.
- The skewed proxy is m = lerp(t, q, β), clamped below at the smallest normal fp32 (it only
  changes entries with t < 1e-38, whose terms are below fp32 resolution); β = 1 uses log q itself
  (proxy = q exactly, also where q underflows), and β = 0 gives exactly 0 loss and gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from sekd.plan import objectives

# Default rows per chunk: ~CHUNK_ELEMENTS fp32 entries per work buffer (six of them). On CPU 1 MiB
# buffers, so that a chunk's working set stays in cache (fastest of 2^17..2^20 on the benchmark's
# CPU); on GPUs 32 MiB ones, so that the ~45 kernels of a chunk are not launch-bound (untested).
CHUNK_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 23}
LN2 = math.log(2.0)
LOG2E = 1.0 / LN2
_FLOOR = -1e30  # lower clamp of logits and of log2 λ
_TINY = torch.finfo(torch.float32).tiny  # smallest normal fp32


def auto_chunk_size(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk for a vocabulary of `vocab_size` on `device`: ~CHUNK_ELEMENTS entries."""
    elements = CHUNK_ELEMENTS.get(torch.device(device).type, CHUNK_ELEMENTS["cuda"])
    return max(1, elements // max(vocab_size, 1))


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else -math.inf


# --- one chunk ----------------------------------------------------------------------------------


@dataclass
class Chunk:
    """c token rows: fp32 [c, V] tensors (views of the work buffers), base-2 logs."""

    lq: Tensor  # log2 q
    q: Tensor
    lt: Tensor | None  # log2 p, or log2 ỹ (self-evolution); None for sft
    t: Tensor | None  # p, or ỹ
    y: Tensor  # labels [c, 1], int64
    a: Tensor  # scratch
    b: Tensor  # scratch
    d_offset: Tensor | None = None  # [c] added to d (sekd.train.losses._self_evolution)

    def nll(self) -> Tensor:
        """-log q[label], nats."""
        return self.lq.gather(-1, self.y).squeeze(-1).mul_(-LN2)


def _softmax2(src: Tensor, log_out: Tensor, prob_out: Tensor, lam: float = 1.0) -> None:
    """log_out <- log2 softmax(src) + log2 λ, prob_out <- λ·softmax(src); src: logits [c, V].
    As log_softmax: the row max is subtracted first (in nats: the rounding of the base change
    then scales with s - max, small where q is not), the log-normaliser after."""
    if src.dtype == torch.float32:
        torch.clamp(src, min=_FLOOR, out=log_out)
    else:
        log_out.copy_(src).clamp_min_(_FLOOR)
    log_out.sub_(log_out.amax(-1, keepdim=True)).mul_(LOG2E)
    z = torch.exp2(log_out, out=prob_out).sum(-1, keepdim=True)
    log_out.sub_(z.log2().sub_(max(_log2(lam), _FLOOR)))
    if lam == 1:
        prob_out.div_(z)
    else:
        prob_out.mul_(z.reciprocal_().mul_(lam))


def _rowdot(a: Tensor, b: Tensor, scratch: Tensor) -> Tensor:
    """Σ_v a·b per row."""
    return torch.mul(a, b, out=scratch).sum(-1)


def _kl(t: Tensor, lt: Tensor, lm: Tensor, scratch: Tensor) -> Tensor:
    """KL(t||m) per row in nats from base-2 logs; terms with t = 0 are 0·finite = 0."""
    return _rowdot(t, torch.sub(lt, lm, out=scratch), scratch).mul_(LN2)


def _skew(ch: Chunk, beta: float, want_grad: bool) -> tuple[Tensor, Tensor | None]:
    """(KL(t || m) per row, t·q/m or None), m = βq + (1-β)t, 0 < β < 1. Uses a and b."""
    m = torch.lerp(ch.t, ch.q, beta, out=ch.a).clamp_min_(_TINY)
    tw = torch.mul(ch.q, ch.t, out=ch.b).div_(m) if want_grad else None
    kl = _kl(ch.t, ch.lt, m.log2_(), ch.a)
    return kl, tw


def _grad(ch: Chunk, a: Tensor, tw: Tensor | None, b: float, c: float) -> Tensor:
    """∂L/∂s = a·q - b·tw - c·e_y (a per row), in place of q."""
    ds = ch.q.mul_(a[:, None])
    if tw is not None and b != 0:
        ds.sub_(tw, alpha=b)
    if c != 0:
        ds.scatter_add_(-1, ch.y, torch.full(ch.y.shape, -c, dtype=ds.dtype, device=ds.device))
    return ds


@dataclass(frozen=True)
class Hyper:
    """What a kernel reads besides its chunk: every loss hyper-parameter declared in
    `sekd.plan.objectives.HPARAMS` as an attribute (``h.lam``, ``h.beta``, ``h.gamma``, ...; from
    `hparams`, so a newly declared one needs no edit here) and the call's settings."""

    hparams: Mapping[str, float]  # {name: value} of every loss hyper-parameter (distill_loss)
    scale: float  # 1/N: the gradient is that of the mean over the batch's tokens
    want_grad: bool
    difficulty: str  # d of sekd/sekd_topk: "kl" or "cross_entropy" (sekd.train.losses)
    all_hard: bool  # hard_tokens="all": every token of sekd/sekd_topk is hard
    on_policy: bool = False  # the tokens are the student's samples (fd_js's student half)

    def __getattr__(self, name: str) -> float:
        hparams = self.__dict__.get("hparams", {})
        if name in hparams:
            return hparams[name]
        raise AttributeError(f"Hyper has no {name!r} (not a declared loss hyper-parameter)")


# A kernel: (chunk, hyper, hard [c] | None, d [c] | None) -> (loss [c], ∂(mean loss)/∂s [c, V]
# or None, hard [c] | None, d [c] | None).
KernelOut = tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]
Kernel = Callable[..., KernelOut]


@dataclass(frozen=True)
class ChunkedObjective:
    kernel: Kernel
    teacher: str | None  # None (sft), "p" (the chunk holds p) or "target" (it holds ỹ)
    topk: bool = False  # hard = the top-k d of the batch: a first pass computes d


def register_kernel(
    name: str, teacher: str | None, topk: bool = False
) -> Callable[[Kernel], Kernel]:
    """Register `kernel` as the chunked implementation of declared objective `name`, beside its
    reference in `sekd.train.losses`. `teacher`: what each chunk holds besides q -- None (no
    teacher), "p" (the teacher's distribution) or "target" (ỹ of eq. 4); `topk`: the hard tokens are
    the top-k d of the whole batch, found by a first pass. Optional: an objective without a kernel
    takes the reference path."""
    if teacher not in (None, "p", "target"):
        raise ValueError(f"kernel of {name!r}: teacher must be None, 'p' or 'target'")

    def decorator(kernel: Kernel) -> Kernel:
        objectives.attach(name, "chunked", ChunkedObjective(kernel, teacher, topk))
        return kernel

    return decorator


def kernel_of(name: str) -> ChunkedObjective | None:
    """The chunked kernel registered for objective `name`, None if it has none."""
    return objectives.implementation(name, "chunked")


@register_kernel("sft", None)
def _sft(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    """Eq. 2: ∂/∂s = q - e_y."""
    loss = ch.nll()
    ds = _grad(ch, torch.full_like(loss, h.scale), None, 0.0, h.scale) if h.want_grad else None
    return loss, ds, None, None


def _teacher_mix(ch: Chunk, h: Hyper, beta: float, lam: float | None = None) -> KernelOut:
    """(1-λ)·SFT + λ·KL(p || βq + (1-β)p): forward KD (β = 1, eq. 3) and eq. 10; λ = h.lam
    unless given (λ = 1: f-DISTILL's KL(p||q), and JS's teacher half at β = ½)."""
    lam = h.lam if lam is None else lam
    if lam == 0:
        return _sft(ch, h)
    nll = ch.nll()
    if beta == 1:  # proxy = q
        kl, tw = _kl(ch.t, ch.lt, ch.lq, ch.a), ch.t
    elif beta == 0:  # proxy = p: KL 0, no gradient
        kl, tw = torch.zeros_like(nll), None
    else:
        kl, tw = _skew(ch, beta, h.want_grad)
    loss = kl if lam == 1 else nll.mul_(1 - lam).add_(kl, alpha=lam)
    ds = None
    if h.want_grad:
        bw = lam * (1.0 if beta == 1 else beta)  # g = -λ·(β)·tw - (1-λ)·e_y
        stw = tw.sum(-1) if tw is not None else torch.zeros_like(loss)
        a = stw.mul_(bw).add_(1 - lam).mul_(h.scale)  # -Σ_v g_v, scaled
        ds = _grad(ch, a, tw, bw * h.scale, (1 - lam) * h.scale)
    return loss, ds, None, None


@register_kernel("forward_kd", "p")
def _forward_kd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _teacher_mix(ch, h, 1.0)


@register_kernel("skew_teacher_kd", "p")
def _skew_teacher_kd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _teacher_mix(ch, h, h.beta)


@register_kernel("reverse_kd", "p")
def _reverse_kd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _reverse(ch, h, h.lam)


def _reverse(ch: Chunk, h: Hyper, lam: float) -> KernelOut:
    """(1-λ)·SFT + λ·KL(q||p); ∂/∂s = q·(λ(ℓ + 1) - Σg) - (1-λ)·e_y, ℓ = ln q - ln p, with
    Σg = λ(KL + Σq) - (1-λ), computed as q·(λ(ℓ - KL) + λ(1 - Σq) + 1 - λ): ℓ in nats before the
    sum that gives KL, so that ℓ - KL is exactly 0 where q is one-hot (saturated logits), as the
    reference's is."""
    if lam == 0:
        return _sft(ch, h)
    nll, q = ch.nll(), ch.q
    ell = torch.sub(ch.lq, ch.lt, out=ch.b).mul_(LN2)  # nats; q = 0 terms: 0·finite
    kl = _rowdot(q, ell, ch.a)
    loss = kl if lam == 1 else nll.mul_(1 - lam).add_(kl, alpha=lam)
    ds = None
    if h.want_grad:
        rest = q.sum(-1).neg_().add_(1).mul_(lam).add_(1 - lam)  # λ(1 - Σq) + 1 - λ
        ds = ell.sub_(kl[:, None]).mul_(lam).add_(rest[:, None]).mul_(q).mul_(h.scale)
        if lam != 1:
            c = (1 - lam) * h.scale
            ds.scatter_add_(-1, ch.y, torch.full(ch.y.shape, -c, dtype=ds.dtype, device=ds.device))
    return loss, ds, None, None


def _label_target(ch: Chunk, lam: float) -> None:
    """Set the label entries of (log2 ỹ, ỹ) = (log2 p + log2 λ, λ·p) to ỹ_y = (1-λ) + λ·p_y."""
    at_label = ch.lt.gather(-1, ch.y)  # log2 p_y + log2 λ (-1e30 if λ = 0)
    at_label = torch.logaddexp2(at_label, torch.full_like(at_label, _log2(1 - lam)))
    ch.lt.scatter_(-1, ch.y, at_label)
    ch.t.scatter_(-1, ch.y, at_label.exp2())


def _target_kl(ch: Chunk) -> Tensor:
    """KL(ỹ||q) per row (eq. 5), plus the chunk's d_offset if any. Uses a."""
    d = _kl(ch.t, ch.lt, ch.lq, ch.a)
    return d if ch.d_offset is None else d.add_(ch.d_offset)


def _difficulty(ch: Chunk, form: str = "kl") -> Tensor:
    """d per row (eq. 5): KL(ỹ||q) + d_offset (form "kl"), or CE(ỹ, q) = -Σ ỹ log q
    (form "cross_entropy", which needs no offset: `sekd.train.losses._self_evolution`). Uses a."""
    if form == "kl":
        return _target_kl(ch)
    return _rowdot(ch.t, ch.lq, ch.a).mul_(-LN2)


def _self_evolution(
    ch: Chunk,
    h: Hyper,
    mode: str,
    hard: Tensor | None = None,
    d: Tensor | None = None,
    form: str = "kl",
) -> KernelOut:
    """Eqs. 4-9 (the chunk holds ỹ). mode: "easy" (every token), "hard" (every token), "gamma"
    (d > Γ) or "given" (`hard` and `d` precomputed: sekd_topk). `form`: the d of the split
    ("kl" or "cross_entropy"); the loss of an easy token is KL(ỹ||q) (+ d_offset) either way."""
    if form == "kl":
        if d is None:
            d = _target_kl(ch)
        kl = d
    else:
        kl = _target_kl(ch)
        if d is None:
            d = _difficulty(ch, form)
    if mode == "given" and hard is not None:  # one kind only: skip the other's work
        mode = "hard" if bool(hard.all()) else "easy" if not bool(hard.any()) else mode
    if mode == "easy":
        hard = torch.zeros_like(d, dtype=torch.bool)
    elif mode == "hard":
        hard = torch.ones_like(d, dtype=torch.bool)
    elif mode == "gamma":
        hard = d > h.gamma
    beta, t = h.beta, ch.t
    bw = 1.0  # g = -bw·tw
    if mode == "easy" or beta == 1:  # KL(ỹ||q) on every token
        loss, tw = kl, t
    elif beta == 0:  # hard tokens: proxy = ỹ, loss 0, no gradient
        loss = kl.masked_fill(hard, 0.0)
        tw = t.mul_((~hard)[:, None])
    else:
        kl_h, tw = _skew(ch, beta, h.want_grad)  # tw = t·q/m
        if mode == "hard":
            loss, bw = kl_h, beta
        else:
            loss = torch.where(hard, kl_h, kl)
            if tw is not None:  # hard rows β·t·q/m, easy rows t (lerp by 0 or 1 is exact)
                tw = torch.lerp(t, tw.mul_(beta), hard[:, None].to(t.dtype), out=ch.b)
    ds = None
    if h.want_grad:
        a = tw.sum(-1).mul_(bw * h.scale)
        ds = _grad(ch, a, tw, bw * h.scale, 0.0)
    return loss, ds, hard, d


@register_kernel("noevo_kd", "target")
def _noevo_kd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _self_evolution(ch, h, "easy")


@register_kernel("skew_kd", "target")
def _skew_kd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _self_evolution(ch, h, "hard")


@register_kernel("sekd", "target")
def _sekd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _self_evolution(ch, h, "hard" if h.all_hard else "gamma", form=h.difficulty)


@register_kernel("sekd_topk", "target", topk=True)
def _sekd_topk(
    ch: Chunk, h: Hyper, hard: Tensor | None = None, d: Tensor | None = None
) -> KernelOut:
    if h.all_hard:  # no first pass (chunked_distill): every token is hard
        return _self_evolution(ch, h, "hard", form=h.difficulty)
    return _self_evolution(ch, h, "given", hard, d, form=h.difficulty)


# --- the seeds' baselines (Table 3; sekd.train.losses) ---------------------------------------

register_kernel("seq_kd", None)(_sft)  # -log q[y] on the teacher's best beam
register_kernel("seq_inter", None)(_sft)  # and on its beam closest to the reference


@register_kernel("word_kd", "p")
def _word_kd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    """(1-λ)·SFT + λ·CE(p, q): forward KD's loss and gradient, its value + λ·H(p)."""
    loss, ds, _, _ = _teacher_mix(ch, h, 1.0)
    if h.lam != 0:  # H(p) = -Σ p log p; p and log p are untouched by forward KD's kernel
        loss = loss.add_(_rowdot(ch.t, ch.lt, ch.a), alpha=-h.lam * LN2)
    return loss, ds, None, None


@register_kernel("fd_kl", "p")
def _fd_kl(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _teacher_mix(ch, h, 1.0, lam=1.0)  # KL(p||q)


@register_kernel("fd_rkl", "p")
def _fd_rkl(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    return _reverse(ch, h, 1.0)


@register_kernel("fd_tvd", "p")
def _fd_tvd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    """½·Σ|p - q|: with σ = ½·sign(q - p) (0 where equal, as torch.abs's subgradient),
    ∂/∂s = q·(σ - Σ q·σ)."""
    diff = torch.sub(ch.q, ch.t, out=ch.b)
    loss = torch.abs(diff, out=ch.a).sum(-1).mul_(0.5)
    ds = None
    if h.want_grad:
        sigma = diff.sign_().mul_(0.5)
        mean = _rowdot(ch.q, sigma, ch.a)
        ds = ch.q.mul_(sigma.sub_(mean[:, None])).mul_(h.scale)
    return loss, ds, None, None


@register_kernel("gkd", "p")
def _gkd(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    """β·KL(p||m) + (1-β)·KL(q||m), m = βp + (1-β)q (β = jsd_beta; KL(p||q) at 0, KL(q||p) at
    1, as the reference): ∂L/∂q = (1-β)·ln(q/m), so ∂/∂s = (1-β)·q·(ln(q/m) - KL(q||m))."""
    beta = h.jsd_beta
    if beta == 0:
        return _teacher_mix(ch, h, 1.0, lam=1.0)  # KL(p||q)
    if beta == 1:
        return _reverse(ch, h, 1.0)
    m = torch.lerp(ch.q, ch.t, beta, out=ch.a).clamp_min_(_TINY).log2_()  # log2 m
    kl_p = _rowdot(ch.t, torch.sub(ch.lt, m, out=ch.b), ch.b).mul_(LN2)
    ell = torch.sub(ch.lq, m, out=ch.a).mul_(LN2)  # ln q - ln m; q = 0 terms: 0·finite
    kl_q = _rowdot(ch.q, ell, ch.b)
    loss = kl_p.mul_(beta).add_(kl_q, alpha=1 - beta)
    ds = None
    if h.want_grad:
        w = (1 - beta) * h.scale
        ds = ch.q.mul_(ell.sub_(kl_q[:, None])).mul_(w)
    return loss, ds, None, None


@register_kernel("fd_js", "p")
def _fd_js(ch: Chunk, h: Hyper, *_: Tensor | None) -> KernelOut:
    """One half of JS per call, m = (p+q)/2. The teacher's sequences: KL(p||m), skew_teacher_kd's
    KL(p||βq + (1-β)p) at β = ½ (g = -½·p·q/m). The student's samples (on_policy): KL(q||m),
    ∂L/∂q = ln(q/m) + 1 - ½·q/m =: G, ∂/∂s = q·(G - Σ q·G)."""
    if not h.on_policy:
        return _teacher_mix(ch, h, 0.5, lam=1.0)
    m = torch.lerp(ch.q, ch.t, 0.5, out=ch.a).clamp_min_(_TINY)
    g = torch.div(ch.q, m, out=ch.b).mul_(-0.5).add_(1.0)  # 1 - ½·q/m
    ell = torch.sub(ch.lq, m.log2_(), out=ch.a).mul_(LN2)  # ln q - ln m
    kl = _rowdot(ch.q, ell, ch.t)  # p is no longer needed
    ds = None
    if h.want_grad:
        g.add_(ell)  # G
        mean = _rowdot(ch.q, g, ch.a)
        ds = ch.q.mul_(g.sub_(mean[:, None])).mul_(h.scale)
    return kl, ds, None, None


# --- reading rows -------------------------------------------------------------------------------


def _rows_view(x: Tensor, V: int) -> tuple[Tensor, int] | None:
    """(a 2-D view [R, V] of x [B,T,V_x] whose row b·k + t is x[b, t, :V], k); None if x's
    strides don't allow one (the vocabulary dim not contiguous)."""
    B, T, _ = x.shape
    s0, s1, s2 = x.stride()
    if s2 != 1 or s1 < V or (B > 1 and s0 % s1):
        return None
    k = s0 // s1 if B > 1 else T
    return x.as_strided(((B - 1) * k + T, V), (s1, 1), x.storage_offset()), k


class _Rows:
    """Rows (b, t), columns :V of a [B,T,V_x] tensor, read or written by chunk."""

    def __init__(self, x: Tensor, V: int):
        self.x, self.V = x, V
        view = _rows_view(x, V)
        self.view, self.k = view if view is not None else (None, 0)

    def span(self, b: int, t: int, c: int) -> Tensor:
        """Rows (b, t..t+c-1) as a view."""
        return self.view.narrow(0, b * self.k + t, c)

    def gather(self, b: Tensor, t: Tensor) -> Tensor:
        if self.view is None:
            return self.x[b, t, : self.V]
        return self.view.index_select(0, b * self.k + t)


def _plan(pos: Tensor, n: int, chunk: int) -> tuple[list[tuple[int, int, int, int]], bool]:
    """Chunks as (i, j, b, t): tokens i..j-1 of the row-major order. Contiguous mode (True): each
    chunk is a run of consecutive positions (b, t..t+j-i-1) of one sequence, read and written as
    views; used unless the ignored tokens fragment the runs so much that it would take more than
    twice the chunks of the gather mode (False: any j - i tokens, gathered by index)."""
    gather = [(i, min(i + chunk, n), 0, 0) for i in range(0, n, chunk)]
    if n == 0:
        return gather, False
    b, t = pos[:, 0], pos[:, 1]
    breaks = ((b[1:] != b[:-1]) | (t[1:] != t[:-1] + 1)).nonzero().squeeze(1) + 1
    starts = [0, *breaks.tolist()]
    if len(starts) > 2 * len(gather):
        return gather, False
    first = pos[starts].tolist()
    spans = []
    for r, (i0, (b0, t0)) in enumerate(zip(starts, first, strict=True)):
        i1 = starts[r + 1] if r + 1 < len(starts) else n
        spans += [(i, min(i + chunk, i1), b0, t0 + i - i0) for i in range(i0, i1, chunk)]
    if len(spans) > 2 * len(gather):
        return gather, False
    return spans, True


# --- driver -------------------------------------------------------------------------------------


class _ChunkedLossFn(torch.autograd.Function):
    """Outputs (mean loss, loss sum) computed by `compute`, whose stored gradient of the mean loss
    w.r.t. `student` is returned, rescaled, in backward."""

    @staticmethod
    def forward(ctx, student: Tensor, compute: Callable):  # type: ignore[override]
        loss, loss_sum, grad, n = compute()
        ctx.n = n
        ctx.save_for_backward(grad)
        return loss, loss_sum

    @staticmethod
    @once_differentiable
    def backward(ctx, g_loss: Tensor, g_sum: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        scale = g_loss + g_sum * ctx.n
        # In place: a second backward through the same graph (retain_graph) is then refused by
        # autograd's saved-tensor version check, unless the scale was 1.
        if bool(scale != 1):
            grad.mul_(scale)
        return grad, None


def chunked_distill(
    obj: ChunkedObjective,
    student: Tensor,
    teacher: Tensor | None,
    mask: Tensor,
    targets: Tensor,
    *,
    hparams: Mapping[str, float],
    num_hard: Callable[[int], int] | None,
    chunk_size: int,
    d_offset: Tensor | None,
    hard: Tensor | None,
    difficulty: str,
    hard_tokens: str,
    on_policy: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """(mean loss, loss sum, hard [N] | None, d [N] | None) of the objective of kernel `obj` on
    the tokens where `mask` [B,T] is True (row-major order), `targets` [N] their labels, with
    the loss hyper-parameters `hparams` (every declared one: the kernels read them as `Hyper`
    attributes). The arguments are assumed validated (`sekd.train.losses.distill_loss`).
    `num_hard(N)` is the number of hard tokens of sekd_topk; `d_offset` [N] (fp32) is added to d of
    the self-evolution objectives (see `sekd.train.losses._self_evolution`); `difficulty` and
    `hard_tokens` as in `sekd.train.losses.distill_loss` (read by the sekd and sekd_topk kernels
    only). `hard` [N] (bool, top-k kernels): the hard tokens chosen beforehand; the first pass is
    then skipped and `num_hard` unused."""
    n = targets.numel()
    want_grad = torch.is_grad_enabled() and student.requires_grad
    h = Hyper(hparams, 1.0 / max(n, 1), want_grad, difficulty, hard_tokens == "all", on_policy)
    aux: dict[str, Tensor | None] = {}

    def compute() -> tuple[Tensor, Tensor, Tensor | None, int]:
        reader = _Reader(obj, student, teacher, mask, targets, h, chunk_size, d_offset)
        selection = _select_hard(reader, hard, num_hard)
        grad = _grad_buffer(student, mask) if want_grad else None
        if selection.first_pass:
            per_token = _topk_passes(reader, selection, grad, num_hard)
        else:
            per_token = _loss_pass(reader, selection, grad)
        aux["hard"], aux["d"] = selection.hard, selection.d
        loss_sum = per_token.sum()
        return loss_sum / max(n, 1), loss_sum, grad, n

    loss, loss_sum = _ChunkedLossFn.apply(student, compute)
    return loss, loss_sum, aux["hard"], aux["d"]


class _Reader:
    """The chunks of one `chunked_distill` call: the spans of its N tokens (contiguous runs of
    the [B,T] grid when the logits allow, else gathered rows), the fp32 work buffers they share,
    and `load`, which fills them for one span (log q, q; log p, p or ỹ of eq. 4)."""

    def __init__(
        self,
        obj: ChunkedObjective,
        student: Tensor,
        teacher: Tensor | None,
        mask: Tensor,
        targets: Tensor,
        h: Hyper,
        chunk_size: int,
        d_offset: Tensor | None,
    ):
        V, n = student.shape[-1], targets.numel()
        self.obj, self.h, self.n, self.d_offset = obj, h, n, d_offset
        self.device = student.device
        self.pos = mask.nonzero()
        self.s_rows = _Rows(student, V)
        self.t_rows = _Rows(teacher.detach(), V) if obj.teacher else None
        spans, contiguous = _plan(self.pos, n, chunk_size)
        contiguous = contiguous and self.s_rows.view is not None
        contiguous = contiguous and (self.t_rows is None or self.t_rows.view is not None)
        if not contiguous:
            spans = [(i, min(i + chunk_size, n), 0, 0) for i in range(0, n, chunk_size)]
        self.spans, self.contiguous = spans, contiguous
        width = max((j - i for i, j, _, _ in spans), default=0)
        names = ("lq", "q", "lt", "t", "a", "b") if obj.teacher else ("lq", "q", "a", "b")
        dev = student.device
        self.work = {k: torch.empty(width, V, dtype=torch.float32, device=dev) for k in names}
        self.y_all = targets.long()[:, None]
        self.lam_t = h.lam if obj.teacher == "target" else 1.0

    def load(self, i: int, j: int, b: int, t: int) -> Chunk:
        """The chunk of tokens i..j (at [b, t] on the grid when contiguous)."""
        if not self.contiguous:
            return self.load_rows(slice(i, j))
        return self._fill(j - i, lambda rows: rows.span(b, t, j - i), slice(i, j))

    def load_rows(self, tokens: Tensor | slice) -> Chunk:
        """The chunk of `tokens` (indices in the row-major order, or a slice), gathered."""
        bi, ti = self.pos[tokens, 0], self.pos[tokens, 1]
        return self._fill(bi.numel(), lambda rows: rows.gather(bi, ti), tokens)

    def _fill(self, c: int, read: Callable[[_Rows], Tensor], tokens: Tensor | slice) -> Chunk:
        """The work buffers' first `c` rows filled from `read` (log q, q; log p, p or ỹ)."""
        obj = self.obj
        w = {k: v[:c] for k, v in self.work.items()}
        _softmax2(read(self.s_rows), w["lq"], w["q"])
        ch = Chunk(w["lq"], w["q"], w.get("lt"), w.get("t"), self.y_all[tokens], w["a"], w["b"])
        if self.d_offset is not None and obj.teacher == "target":
            ch.d_offset = self.d_offset[tokens]
        if self.t_rows is not None:
            _softmax2(read(self.t_rows), ch.lt, ch.t, self.lam_t)
            if obj.teacher == "target":
                _label_target(ch, self.h.lam)
        return ch


@dataclass
class _Selection:
    """The hard tokens and d of a call's N tokens (objectives whose chunk holds ỹ), and how
    the loss pass gets them: chosen beforehand (`given`), by a first pass (`first_pass`), or by
    each chunk's kernel."""

    hard: Tensor | None
    d: Tensor | None
    given: bool = False
    first_pass: bool = False


def _select_hard(
    reader: _Reader, hard: Tensor | None, num_hard: Callable[[int], int] | None
) -> _Selection:
    """sekd_topk: the hard tokens given (a larger pool, sekd.train.pool), or none yet when they are
    the top-k d of the batch (`_topk_passes` finds them); neither when every token is hard (or for
    other kernels)."""
    obj, h, n = reader.obj, reader.h, reader.n
    given = obj.topk and hard is not None and not h.all_hard
    first_pass = obj.topk and not h.all_hard and not given
    if obj.teacher != "target":
        return _Selection(None, None, given, first_pass)
    dev = reader.device
    selection = _Selection(
        torch.zeros(n, dtype=torch.bool, device=dev),
        torch.zeros(n, dtype=torch.float32, device=dev),
        given,
        first_pass,
    )
    if given:  # chosen beforehand: d comes with the loss pass
        selection.hard.copy_(hard)
    return selection


def _topk_passes(
    reader: _Reader, selection: _Selection, grad: Tensor | None, num_hard: Callable[[int], int]
) -> Tensor:
    """sekd_topk's hard tokens are the top-k d of the whole batch, known only once every token's
    d is: a first pass runs every token as easy (its loss KL(ỹ||q), its gradient row and d), then
    the k hard tokens alone are read again (gathered, in order) and their losses and gradient rows
    replaced by the hard ones (eq. 7). About 1 + K% passes over the logits, where a d-only pass
    followed by the loss pass took 2."""
    easy = _Selection(selection.hard, selection.d, given=True)  # all False: every token easy
    per_token = _loss_pass(reader, easy, grad)
    hard = torch.topk(selection.d, num_hard(reader.n)).indices.sort().values
    selection.hard[hard] = True
    g_rows = _Rows(grad, grad.shape[-1]) if grad is not None else None
    width, pos = reader.work["lq"].shape[0], reader.pos
    for a in range(0, hard.numel(), max(width, 1)):
        rows = hard[a : a + width]
        ch = reader.load_rows(rows)
        loss, ds, _, _ = reader.obj.kernel(ch, reader.h, selection.hard[rows], selection.d[rows])
        per_token[rows] = loss
        if g_rows is not None:
            g_rows.view.index_copy_(0, pos[rows, 0] * g_rows.k + pos[rows, 1], ds.to(grad))
    return per_token


def _grad_buffer(student: Tensor, mask: Tensor) -> Tensor:
    """The [B,T,V] gradient of the mean loss w.r.t. the student logits, zero on ignored rows
    (the loss pass writes the others)."""
    grad = torch.empty(student.shape, dtype=student.dtype, device=student.device)
    ignored = (~mask).nonzero()
    if ignored.numel():
        grad[ignored[:, 0], ignored[:, 1]] = 0
    return grad


def _loss_pass(reader: _Reader, selection: _Selection, grad: Tensor | None) -> Tensor:
    """The per-token losses [N] of every chunk (the kernel's), writing its gradient rows into
    `grad` and, unless chosen beforehand, its hard tokens and d into `selection`."""
    g_rows = _Rows(grad, grad.shape[-1]) if grad is not None else None
    hard_all, d_all, pos = selection.hard, selection.d, reader.pos
    per_token = torch.empty(reader.n, dtype=torch.float32, device=reader.device)
    for i, j, b, t in reader.spans:
        if selection.given:
            given = (hard_all[i:j], None)
        else:
            given = (hard_all[i:j], d_all[i:j]) if selection.first_pass else ()
        loss, ds, chunk_hard, d = reader.obj.kernel(reader.load(i, j, b, t), reader.h, *given)
        per_token[i:j] = loss
        if chunk_hard is not None and not selection.first_pass:
            hard_all[i:j], d_all[i:j] = chunk_hard, d
        if g_rows is not None:
            if reader.contiguous:
                g_rows.span(b, t, j - i).copy_(ds)
            else:
                g_rows.view.index_copy_(0, pos[i:j, 0] * g_rows.k + pos[i:j, 1], ds.to(grad))
    return per_token
