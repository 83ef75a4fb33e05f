"""`Objective.same_gradient_as` (the tables' ‡): NoEvo KD and Forward KD have the same gradient at
the same λ, their losses differing by a per-token term that does not depend on the student:

    KL(ỹ||q)   = (1-λ)·NLL + λ·CE(p,q) - H(ỹ),       ỹ = (1-λ)·onehot(y) + λ·p   (eqs. 4, 8)
    forward_kd = (1-λ)·NLL + λ·CE(p,q) - λ·H(p)                                 (eq. 3)

so noevo_kd - forward_kd = λ·H(p) - H(ỹ) per token, checked here in float64 on small tensors.
(word_kd's declaration says the same of it; its loss is tested with the objective itself.)"""

from __future__ import annotations

import pytest
import torch

from sekd.train.losses import IGNORE_INDEX, distill_loss


def _inputs(seed: int, B: int = 2, T: int = 5, V: int = 11):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(B, T, V, generator=g) * 3).requires_grad_(True)
    teacher = torch.randn(B, T, V, generator=g) * 3
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, 0] = labels[1, -2:] = IGNORE_INDEX  # masked positions
    return student, teacher, labels


def _constant(teacher: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
    """Σ over the non-ignored tokens of λ·H(p) - H(ỹ), in float64."""
    mask = labels != IGNORE_INDEX
    p = teacher[mask].double().softmax(-1)
    y = torch.nn.functional.one_hot(labels[mask], p.shape[-1]).double()
    target = (1 - lam) * y + lam * p

    def entropy(t: torch.Tensor) -> torch.Tensor:
        return -(t * t.clamp_min(1e-300).log()).sum(-1)

    return (lam * entropy(p) - entropy(target)).sum()


@pytest.mark.parametrize("lam", [0.3, 0.5])
@pytest.mark.parametrize("chunk_size", [None, "auto"])
def test_noevo_kd_has_forward_kds_gradient_and_a_constant_offset(lam, chunk_size):
    for seed in (0, 1):
        student, teacher, labels = _inputs(seed)
        losses, grads = {}, {}
        for objective in ("forward_kd", "noevo_kd"):
            out = distill_loss(student, teacher, labels, objective, lam=lam, chunk_size=chunk_size)
            (grads[objective],) = torch.autograd.grad(out.loss_sum, student)
            losses[objective] = out.loss_sum.double()
        torch.testing.assert_close(grads["noevo_kd"], grads["forward_kd"], atol=1e-5, rtol=1e-5)
        offset = losses["noevo_kd"] - losses["forward_kd"]
        assert offset.item() == pytest.approx(_constant(teacher, labels, lam).item(), abs=1e-4)
        assert abs(offset.item()) > 0.1  # the values differ: the constant is not 0 here


def test_the_offset_does_not_depend_on_the_student():
    _, teacher, labels = _inputs(0)
    offsets = []
    for seed in (2, 3):
        student = torch.randn(teacher.shape, generator=torch.Generator().manual_seed(seed)) * 5
        values = [
            distill_loss(student, teacher, labels, o, lam=0.5, chunk_size=None).loss_sum.item()
            for o in ("noevo_kd", "forward_kd")
        ]
        offsets.append(values[0] - values[1])
    assert offsets[0] == pytest.approx(offsets[1], abs=1e-4)
