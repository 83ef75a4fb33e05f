"""The distillation objectives and their hyper-parameters, each declared once.

An objective is one `Objective` declaration here (name, table label, the hyper-parameters it
reads, whether it needs the teacher, which sequences it trains on) plus one reference per-token
loss function in `sekd.losses` under ``@register_objective(name)``; a chunked kernel
(`sekd.chunked`, ``@register_kernel(name, ...)``) is optional. Everything else reads this
registry when it runs: the config schema's objective enum (`sekd.config.load_schema`), run names
(`sekd.variants`), the loss (`sekd.losses.distill_loss`), the teacher store and the tables. So an
objective declared later, e.g. in a test, is seen everywhere.

Torch-free: the Snakefile imports this module at parse time. The compute layer's functions are
kept here only as opaque callables attached to their declaration (`attach`), so that
`undeclare` removes an objective completely.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SEQUENCE_SOURCES = ("gold",)
"""The sequences an objective can train on: "gold" = the reference translations of the training
set (every objective of the paper)."""

NAME_RE = re.compile(r"^[a-z_]+$")
"""An objective name: it starts run names, whose parts are joined by "-" (`sekd.variants`)."""

IMPLEMENTATION_KINDS = ("reference", "chunked")
"""What the compute layer attaches to a declaration: the reference per-token loss
(`sekd.losses`), optionally a chunked kernel (`sekd.chunked`)."""


@dataclass(frozen=True)
class HParam:
    """A hyper-parameter an objective can read (a key of the config's `kd` section and a keyword
    of `sekd.losses.distill_loss`)."""

    name: str
    tag: str  # its prefix in run names: ``lam0.5``, ``k20`` (sekd.variants)
    description: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z]+", self.tag):
            raise ValueError(f"hyper-parameter {self.name!r}: tag {self.tag!r} must be a-z only")


HPARAMS: dict[str, HParam] = {
    h.name: h
    for h in [
        HParam("lam", "lam", "λ, the teacher's weight: eq. 3, and ỹ = (1-λ)·y + λ·p (eq. 4)"),
        HParam("beta", "beta", "β, the skew of the proxy βq + (1-β)ỹ (eqs. 6-7, 10)"),
        HParam("gamma", "gamma", "Γ, the difficulty threshold of the hard tokens d > Γ (eq. 5)"),
        HParam("top_k_percent", "k", "K, the percent of tokens taken as hard (§5.2.1)"),
    ]
}


@dataclass(frozen=True)
class Objective:
    """One distillation objective, as the workflow sees it (its loss is in `sekd.losses`)."""

    name: str  # run names, config values, the losses registry
    label: str  # row label in the paper's tables
    hparams: tuple[str, ...]  # the hyper-parameters the loss reads, in run-name order
    needs_teacher: bool
    sequences: str = "gold"  # the sequences it trains on, one of SEQUENCE_SOURCES
    # True if the loss needs p on the whole vocabulary (KL(q||p) is infinite wherever a sampled
    # estimate of p is 0): a sparse teacher store cannot serve it (sekd.teacher_store).
    needs_full_teacher: bool = False
    doc: str = ""  # one line: the loss and the paper's equation

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise ValueError(
                f"objective name {self.name!r}: use lower-case letters and '_' only "
                f"({NAME_RE.pattern}); '-' separates the parts of a run name"
            )
        if not self.label:
            raise ValueError(f"objective {self.name!r}: its table label is empty")
        if not isinstance(self.hparams, tuple):
            raise ValueError(f"objective {self.name!r}: hparams must be a tuple of names")
        unknown = [h for h in self.hparams if h not in HPARAMS]
        if unknown:
            raise ValueError(
                f"objective {self.name!r}: unknown hyper-parameters {unknown}; "
                f"known: {list(HPARAMS)}"
            )
        if len(set(self.hparams)) != len(self.hparams):
            raise ValueError(f"objective {self.name!r}: repeated hyper-parameter in {self.hparams}")
        if self.sequences not in SEQUENCE_SOURCES:
            raise ValueError(
                f"objective {self.name!r}: sequences {self.sequences!r} is not one of "
                f"{SEQUENCE_SOURCES}"
            )
        if self.needs_full_teacher and not self.needs_teacher:
            raise ValueError(f"objective {self.name!r}: needs_full_teacher without a teacher")


OBJECTIVES: dict[str, Objective] = {}
_IMPLEMENTATIONS: dict[str, dict[str, Any]] = {}  # name -> kind -> callable (compute layer)


def declare(objective: Objective) -> Objective:
    """Add `objective` to the registry; an error if its name is taken."""
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is already declared")
    OBJECTIVES[objective.name] = objective
    _IMPLEMENTATIONS[objective.name] = {}
    return objective


def undeclare(name: str) -> None:
    """Remove objective `name` and every implementation attached to it (for tests)."""
    get_objective(name)
    del OBJECTIVES[name]
    del _IMPLEMENTATIONS[name]


@contextmanager
def declared(*objectives: Objective) -> Iterator[tuple[Objective, ...]]:
    """Declare `objectives` for the duration of a ``with`` block, then undeclare them."""
    done: list[str] = []
    try:
        for objective in objectives:
            declare(objective)
            done.append(objective.name)
        yield objectives
    finally:
        for name in reversed(done):
            undeclare(name)


def get_objective(name: str) -> Objective:
    """The declaration of `name`; a ValueError naming the declared ones if there is none."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; declared: {', '.join(OBJECTIVES)}") from None


def attach(name: str, kind: str, implementation: Callable) -> None:
    """Attach the compute layer's `implementation` of `kind` (IMPLEMENTATION_KINDS) to declared
    objective `name`; once per kind. Used by `sekd.losses.register_objective` and
    `sekd.chunked.register_kernel`."""
    if kind not in IMPLEMENTATION_KINDS:
        raise ValueError(f"implementation kind {kind!r} is not one of {IMPLEMENTATION_KINDS}")
    if name not in OBJECTIVES:
        raise ValueError(
            f"objective {name!r}: declare it in sekd.objectives first "
            "(sekd.objectives.declare(Objective(...)))"
        )
    if kind in _IMPLEMENTATIONS[name]:
        raise ValueError(f"objective {name!r} is already registered ({kind})")
    _IMPLEMENTATIONS[name][kind] = implementation


def implementation(name: str, kind: str) -> Any | None:
    """The `kind` implementation attached to objective `name`, None if there is none."""
    get_objective(name)
    return _IMPLEMENTATIONS[name].get(kind)


def kd_objectives() -> list[str]:
    """The declared objectives that learn from a teacher (every one but sft), in order."""
    return [name for name, o in OBJECTIVES.items() if o.needs_teacher]


def hparam_tags() -> dict[str, str]:
    """Run-name tag of each hyper-parameter: {"lam": "lam", ..., "top_k_percent": "k"}."""
    return {name: h.tag for name, h in HPARAMS.items()}


for _objective in [
    Objective("sft", "SFT", (), False, doc="-log q[y] (eq. 2)"),
    Objective("forward_kd", "Forward KD", ("lam",), True, doc="(1-λ)·SFT + λ·KL(p||q) (eq. 3)"),
    Objective(
        "reverse_kd",
        "Reverse KD",
        ("lam",),
        True,
        needs_full_teacher=True,
        doc="(1-λ)·SFT + λ·KL(q||p) (§4 Baselines)",
    ),
    Objective("noevo_kd", "NoEvo KD", ("lam",), True, doc="KL(ỹ||q) on every token (eq. 8, §4)"),
    Objective(
        "skew_kd",
        "SKEW KD",
        ("lam", "beta"),
        True,
        doc="KL(ỹ||βq + (1-β)ỹ) on every token (eq. 7, §4)",
    ),
    Objective(
        "sekd",
        "Self-Evolution KD",
        ("lam", "beta", "gamma"),
        True,
        doc="d = KL(ỹ||q); d > Γ: eq. 7, else eq. 8 (eqs. 4-9)",
    ),
    Objective(
        "sekd_topk",
        "Self-Evolution KD w/ top-K",
        ("lam", "beta", "top_k_percent"),
        True,
        doc="as sekd, hard = the ⌈K%·N⌉ tokens with the largest d (§5.2.1)",
    ),
    Objective(
        "skew_teacher_kd",
        "SKEW KD (teacher)",
        ("lam", "beta"),
        True,
        doc="(1-λ)·SFT + λ·KL(p||βq + (1-β)p) (eq. 10)",
    ),
]:
    declare(_objective)
del _objective
