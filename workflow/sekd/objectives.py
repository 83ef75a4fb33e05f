"""The distillation objectives by name: what each is called in tables and which hyper-parameters
it reads. Torch-free, so the Snakefile can name runs without importing torch; the loss functions
themselves live in `sekd.losses` (one function each, registered under the same names).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectiveInfo:
    name: str
    label: str  # row label in the paper's tables
    needs_teacher: bool
    hparams: tuple[str, ...]  # the hyper-parameters the loss reads, in run-name order
    # True if the loss needs p on the whole vocabulary (KL(q||p) is infinite wherever a sampled
    # estimate of p is 0): a sparse teacher store cannot serve it (sekd.teacher_store).
    needs_full_teacher: bool = False


OBJECTIVES: dict[str, ObjectiveInfo] = {
    o.name: o
    for o in [
        ObjectiveInfo("sft", "SFT", False, ()),  # eq. 2
        ObjectiveInfo("forward_kd", "Forward KD", True, ("lam",)),  # eq. 3
        ObjectiveInfo("reverse_kd", "Reverse KD", True, ("lam",), True),  # §4.3
        ObjectiveInfo("noevo_kd", "NoEvo KD", True, ("lam",)),  # §4.3, eq. 8 on all tokens
        ObjectiveInfo("skew_kd", "SKEW KD", True, ("lam", "beta")),  # §4.3, eq. 7 on all tokens
        ObjectiveInfo("sekd", "Self-Evolution KD", True, ("lam", "beta", "gamma")),  # eqs. 4-9
        ObjectiveInfo(
            "sekd_topk", "Self-Evolution KD w/ top-K", True, ("lam", "beta", "top_k_percent")
        ),  # §5.2.1
        ObjectiveInfo("skew_teacher_kd", "SKEW KD (teacher)", True, ("lam", "beta")),  # eq. 10
    ]
}

KD_OBJECTIVES = [name for name, o in OBJECTIVES.items() if o.needs_teacher]
