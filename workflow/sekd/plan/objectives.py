"""The distillation objectives and their hyper-parameters, each declared once.

An objective is one `Objective` declaration here (name, table label, the hyper-parameters it
reads, whether it needs the teacher, which sequences it trains on) plus one reference per-token
loss function in `sekd.train.losses` under ``@register_objective(name)``; a chunked kernel
(`sekd.train.chunked`, ``@register_kernel(name, ...)``) is optional. Everything else reads this
registry when it runs: the config schema's objective enum (`sekd.plan.config.load_schema`), run
names (`sekd.plan.variants`), the loss (`sekd.train.losses.distill_loss`), the teacher store and the
tables. So an objective declared later, e.g. in a test, is seen everywhere.

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

SEQUENCE_SOURCES = ("gold", "teacher", "student", "gold+student", "teacher+student")
"""Where an objective's training sequences (the targets after each prompt) come from:

- ``gold``: the reference translations of the training set (every objective of the paper);
- ``teacher``: the teacher's outputs for the training prompts, generated once per teacher and
  generation setting by the rule ``teacher_outputs`` (beam search with ``num_beams``, or sampling
  with ``teacher_temperature``/``teacher_top_k``/``teacher_top_p``; `sekd.plan.sequences`);
- ``student``: sampled from the current student during training (on-policy;
  ``student_temperature``/``student_top_k``/``student_top_p``);
- ``gold+student``: each optimizer step trains on student samples with probability
  ``onpolicy_fraction``, else on the gold references (GKD's λ);
- ``teacher+student``: every micro-batch trains on both, the loss being ½·(loss on the teacher's
  sequences) + ½·(loss on the student's samples of the same prompts) (f-DISTILL's two-sided
  objectives); the loss function learns which half it computes from ``on_policy``."""

PICKS = ("top", "bleu")
"""Which of the teacher's hypotheses a ``teacher`` objective trains on: ``top`` = the first (the
best beam, or the one sample); ``bleu`` = the one with the highest sentence BLEU to the reference
among the ``num_beams`` beams (Kim & Rush's Seq-Inter)."""

HPARAM_USES = ("loss", "teacher_generation", "student_sampling", "mixture")
"""Who reads a hyper-parameter: the loss (`sekd.train.losses.distill_loss` keyword), the teacher's
generation of training sequences (rule teacher_outputs), the student's on-policy sampling, or
the trainer's choice between sources (onpolicy_fraction)."""

NAME_RE = re.compile(r"^[a-z_]+$")
"""An objective name: it starts run names, whose parts are joined by "-" (`sekd.plan.variants`)."""

IMPLEMENTATION_KINDS = ("reference", "chunked")
"""What the compute layer attaches to a declaration: the reference per-token loss
(`sekd.train.losses`), optionally a chunked kernel (`sekd.train.chunked`)."""


@dataclass(frozen=True)
class HParam:
    """A hyper-parameter an objective can read, declared once: a key of the config's `kd` section
    (its schema entry and config/README.md row are generated from this, `schema`), its run-name
    tag, a keyword of `sekd.train.losses.distill_loss` and of the objectives' functions that read it
    (checked by `check`), a field of the chunked kernels' `sekd.train.chunked.Hyper`, and, with a
    `symbol`, a figure axis (a `figures.<name>` key of swept values; `param_symbols`).
    Which objectives read it: those naming it in `Objective.hparams` (`readers`)."""

    name: str
    tag: str  # its prefix in run names: ``lam0.5``, ``k20`` (sekd.plan.variants)
    description: str  # what it is, with the paper's equation (the schema's description)
    default: float  # the config's value when `kd` does not set it: the only place it is written
    use: str = "loss"  # who reads it, one of HPARAM_USES
    integer: bool = False  # a whole number (beam size, top-k)
    minimum: float | None = 0.0  # its range: [minimum, maximum] (None: unbounded)
    maximum: float | None = None
    # the config excludes the minimum (a degenerate value the loss still defines, e.g. β = 0)
    exclusive_minimum: bool = False
    symbol: str = ""  # how a figure names it on an axis or in a legend; "" = no figure sweeps it

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z_]+", self.name):
            raise ValueError(f"hyper-parameter {self.name!r}: use lower-case letters and '_' only")
        if not re.fullmatch(r"[a-z]+", self.tag):
            raise ValueError(f"hyper-parameter {self.name!r}: tag {self.tag!r} must be a-z only")
        if self.use not in HPARAM_USES:
            raise ValueError(
                f"hyper-parameter {self.name!r}: use {self.use!r} not in {HPARAM_USES}"
            )
        self.check(self.default, config=True)

    def check(self, value: object, config: bool = False) -> None:
        """ValueError unless `value` is a number of this type in range (`config`: the config's
        range, which may exclude the minimum; else the loss's, which includes it)."""
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (self.integer and value != int(value)):  # type: ignore[arg-type]
            kind = "a whole number" if self.integer else "a number"
            raise ValueError(f"{self.name} must be {kind}, got {value!r}")
        low, high = self.minimum, self.maximum
        excluded = config and self.exclusive_minimum
        # written so that NaN is out of every range
        below = low is not None and not (value > low or (value == low and not excluded))
        if value != value or below or (high is not None and not value <= high):
            raise ValueError(f"{self.name} must be in {self.range_text(config)}, got {value!r}")

    def range_text(self, config: bool = False) -> str:
        """Its range as an interval: [0, 1], (0, 1], [0, inf)."""
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        opening = "(" if self.minimum is None or (config and self.exclusive_minimum) else "["
        return f"{opening}{low}, {high}{')' if self.maximum is None else ']'}"

    def readers(self) -> tuple[str, ...]:
        """The declared objectives that read it."""
        return tuple(o.name for o in OBJECTIVES.values() if self.name in o.hparams)

    def schema(self) -> dict:
        """Its entry in the config schema's `kd` section (sekd.plan.config.load_schema)."""
        entry: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.minimum is not None:
            entry["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            entry["maximum"] = self.maximum
        readers = ", ".join(self.readers()) or "no declared objective"
        entry["description"] = f"{self.description} Read by: {readers}."
        entry["default"] = self.default
        return entry


HPARAMS: dict[str, HParam] = {
    h.name: h
    for h in [
        HParam(
            "lam",
            "lam",
            "λ: SFT/KL mix (eq. 3) and the teacher share of ỹ = (1-λ)·y + λ·p (eq. 4).",
            0.5,
            maximum=1,
            symbol="λ",
        ),
        HParam(
            "beta",
            "beta",
            "β: student share of the proxy distribution βq + (1-β)ỹ (eqs. 6-7, 10); 0 would "
            "make the proxy the target itself (SKEW KD and Self-Evolution KD then have loss "
            "and gradient 0).",
            0.5,
            maximum=1,
            exclusive_minimum=True,
            symbol="β",
        ),
        HParam(
            "gamma",
            "gamma",
            "Γ: hard-token threshold on d = KL(ỹ||q), the hard tokens being d > Γ (eq. 5).",
            0.4,
            symbol="Γ",
        ),
        HParam(
            "top_k_percent",
            "k",
            "K for the top-K% selection ablation (§5.2.1, Fig. 2b): the ⌈K%·N⌉ tokens with the "
            "largest d are hard.",
            20,
            maximum=100,
            symbol="K%",
        ),
        HParam(
            "jsd_beta",
            "jsd",
            "β of GKD's generalized JSD, β·KL(p||m) + (1-β)·KL(q||m) with m = β·p + (1-β)·q; 0 "
            "is KL(p||q), 1 is KL(q||p) (TRL's GKD).",
            0.5,
            maximum=1,
        ),
        HParam(
            "onpolicy_fraction",
            "onp",
            "The probability that an optimizer step trains on the student's own samples instead "
            "of the gold references (GKD's λ).",
            0.5,
            use="mixture",
            maximum=1,
        ),
        HParam(
            "num_beams",
            "beam",
            "The teacher's beam size for its training outputs, all beams kept (Kim & Rush used "
            "5); seq_kd trains on the best beam, seq_inter on the beam with the highest sentence "
            "BLEU to the reference.",
            5,
            use="teacher_generation",
            integer=True,
            minimum=1,
        ),
        HParam(
            "teacher_temperature",
            "ttemp",
            "Temperature of the teacher's sampled training sequences.",
            1.0,
            use="teacher_generation",
            exclusive_minimum=True,
        ),
        HParam(
            "teacher_top_k",
            "ttopk",
            "Top-k of the teacher's sampling (0 = the whole vocabulary).",
            0,
            use="teacher_generation",
            integer=True,
        ),
        HParam(
            "teacher_top_p",
            "ttopp",
            "Top-p (nucleus) of the teacher's sampling (1 = the whole vocabulary).",
            1.0,
            use="teacher_generation",
            maximum=1,
            exclusive_minimum=True,
        ),
        HParam(
            "student_temperature",
            "stemp",
            "Temperature of the student's on-policy samples.",
            1.0,
            use="student_sampling",
            exclusive_minimum=True,
        ),
        HParam(
            "student_top_k",
            "stopk",
            "Top-k of the student's sampling (0 = the whole vocabulary).",
            0,
            use="student_sampling",
            integer=True,
        ),
        HParam(
            "student_top_p",
            "stopp",
            "Top-p of the student's sampling (1 = the whole vocabulary).",
            1.0,
            use="student_sampling",
            maximum=1,
            exclusive_minimum=True,
        ),
    ]
}


def declare_hparam(hparam: HParam) -> HParam:
    """Add `hparam` to the registry (e.g. in a test); an error if its name or tag is taken."""
    if hparam.name in HPARAMS or hparam.tag in {h.tag for h in HPARAMS.values()}:
        raise ValueError(f"hyper-parameter {hparam.name!r} (tag {hparam.tag!r}) is taken")
    HPARAMS[hparam.name] = hparam
    return hparam


def undeclare_hparam(name: str) -> None:
    """Remove hyper-parameter `name`; an error while a declared objective reads it."""
    readers = HPARAMS[name].readers()
    if readers:
        raise ValueError(f"hyper-parameter {name!r} is read by {', '.join(readers)}")
    del HPARAMS[name]


def loss_hparams() -> tuple[str, ...]:
    """The hyper-parameters the loss reads (keywords of `sekd.train.losses.distill_loss`, fields of
    `sekd.train.chunked.Hyper`), in declaration order."""
    return tuple(name for name, h in HPARAMS.items() if h.use == "loss")


def param_symbols() -> dict[str, str]:
    """{name: symbol} of the hyper-parameters a figure can sweep (`HParam.symbol`)."""
    return {name: h.symbol for name, h in HPARAMS.items() if h.symbol}


TEACHER_BEAM = ("num_beams",)
TEACHER_SAMPLING = ("teacher_temperature", "teacher_top_k", "teacher_top_p")
STUDENT_SAMPLING = ("student_temperature", "student_top_k", "student_top_p")
PAPER_OBJECTIVES = (
    "sft",
    "forward_kd",
    "reverse_kd",
    "noevo_kd",
    "skew_kd",
    "sekd",
    "sekd_topk",
    "skew_teacher_kd",
)
"""The objectives of the paper (eqs. 2-10, §4 Baselines, §5.2.1), each with a chunked kernel; the
seeds' baselines (Table 3) are declared after them."""
FDISTILL = ("fd_kl", "fd_rkl", "fd_js", "fd_tvd")
"""The f-DISTILL objectives (Wen et al. 2023), whose students start where the config's
`student_init.fdistill` says."""


@dataclass(frozen=True)
class RunOption:
    """A choice the paper leaves open that changes how a KD run trains (docs/reproduction.md):
    its value comes from the config key `key` (the first of `values` is the default) for the runs
    it `applies_to`, and a run name carries it as ``-<name>.<value>`` only when it is not the
    default, so the paper's run names do not change and switching it reruns only those runs."""

    name: str  # in run names
    key: str  # the config key (dotted) that sets it for every run it applies to
    values: tuple[str, ...]  # allowed values; values[0] is the default
    objectives: tuple[str, ...] | None  # the objectives it affects; None = every KD objective
    description: str
    scheduled_only: bool = False  # only runs with a progressive β (Fig. 3)
    # not the objectives that sample their sequences from the student in the step (on-policy)
    offpolicy_only: bool = False

    def __post_init__(self) -> None:
        for word in (self.name, *self.values):
            if not re.fullmatch(r"[a-z][a-z_]*", word):
                raise ValueError(f"run option {self.name!r}: {word!r} must be a-z and '_' only")

    @property
    def default(self) -> str:
        return self.values[0]

    def applies_to(self, objective: str, scheduled: bool = False) -> bool:
        """Whether runs of `objective` (with a β schedule or not) read this option."""
        if self.scheduled_only and not scheduled:
            return False
        if self.offpolicy_only and OBJECTIVES[objective].sequences.endswith("student"):
            return False
        return self.objectives is None or objective in self.objectives


RUN_OPTIONS: dict[str, RunOption] = {
    o.name: o
    for o in [
        RunOption(
            "difficulty",
            "kd.difficulty",
            ("kl", "cross_entropy"),
            ("sekd", "sekd_topk"),
            "d of eq. 5: the true KL(ỹ||q) (default), or the cross-entropy form "
            "CE(ỹ, q) = KL(ỹ||q) + H(ỹ) that DistiLLM/MiniLLM-style code computes",
        ),
        RunOption(
            "init",
            "student_init",
            ("base", "sft_student", "word_kd_student"),
            None,
            "where the student starts: its base model (default, §4.2), the SFT'd student, or "
            "the word_kd run (f-DISTILL only; student_init.kd / student_init.fdistill)",
        ),
        RunOption(
            "pool",
            "kd.topk_pool",
            ("micro_batch", "optimizer_batch"),
            ("sekd_topk",),
            "the tokens among which the top-K% are chosen (§5.2.1): one micro-batch on one rank "
            "(default), or the whole optimizer batch (every accumulation step and rank)",
        ),
        RunOption(
            "betatokens",
            "kd.progressive_beta_tokens",
            ("hard", "all"),
            ("sekd",),
            "the tokens a progressive β (Fig. 3) skews: the hard ones (default), or all tokens",
            scheduled_only=True,
        ),
        RunOption(
            "norm",
            "kd.normalisation",
            ("micro_batch", "optimizer_batch"),
            None,
            "the 1/N of eqs. 1 and 9: the tokens of each micro-batch, averaged over accumulation "
            "and ranks (default), or the tokens of the whole optimizer batch (off-policy "
            "objectives: an on-policy step's tokens are sampled in the step)",
            offpolicy_only=True,
        ),
        RunOption(
            "finetune",
            "training.finetune",
            ("full", "lora"),
            None,
            "what the student trains: every weight (default, §4.2), or a LoRA adapter on its "
            "frozen base model (models.student.lora; sekd.train.lora), merged for decoding",
        ),
    ]
}


@dataclass(frozen=True)
class Objective:
    """One distillation objective, as the workflow sees it (its loss is in `sekd.train.losses`)."""

    name: str  # run names, config values, the losses registry
    label: str  # row label in the paper's tables
    hparams: tuple[str, ...]  # the hyper-parameters the loss reads, in run-name order
    needs_teacher: bool  # a KD run: it learns from a teacher (its logits or its outputs)
    sequences: str = "gold"  # the sequences it trains on, one of SEQUENCE_SOURCES
    # True if the loss needs p on the whole vocabulary (KL(q||p) is infinite wherever a sampled
    # estimate of p is 0): a sparse teacher store cannot serve it (sekd.teacher.store).
    needs_full_teacher: bool = False
    doc: str = ""  # one line: the loss and the paper's equation
    # False if the loss reads no teacher logits (sequence-level KD learns from the teacher's
    # outputs only): the KD job then loads no teacher model.
    teacher_logits: bool = True
    pick: str = "top"  # which teacher hypothesis a "teacher" objective trains on (PICKS)
    # The objective whose gradient this one's equals at the same hyper-parameters (its loss differs
    # by a term constant in the student): the two are one training run up to that constant and
    # floating-point rounding; the tables mark such rows (sekd.plan.study.same_run_groups).
    same_gradient_as: str = ""

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
        for message in _sequence_errors(self):
            raise ValueError(f"objective {self.name!r}: {message}")

    @property
    def reads_teacher_logits(self) -> bool:
        """Whether its loss reads the teacher's distribution p (then the KD job runs the teacher
        or reads its store)."""
        return self.needs_teacher and self.teacher_logits

    @property
    def teacher_sequences(self) -> bool:
        """Whether it trains on the teacher's outputs (rule teacher_outputs)."""
        return self.sequences in ("teacher", "teacher+student")

    @property
    def student_sequences(self) -> bool:
        """Whether it samples training sequences from the student (on-policy)."""
        return self.sequences.endswith("student")

    def hparams_for(self, use: str) -> tuple[str, ...]:
        """Its hyper-parameters that `use` (HPARAM_USES) reads, in run-name order."""
        return tuple(h for h in self.hparams if HPARAMS[h].use == use)


def _sequence_errors(o: Objective) -> list[str]:
    """What is inconsistent between an objective's sequences and its hyper-parameters."""
    errors = []
    beam, sampled = set(TEACHER_BEAM) <= set(o.hparams), set(TEACHER_SAMPLING) <= set(o.hparams)
    generation = set(o.hparams) & {*TEACHER_BEAM, *TEACHER_SAMPLING}
    if o.teacher_sequences:
        if not o.needs_teacher:
            errors.append(f"sequences {o.sequences!r} without a teacher (needs_teacher=False)")
        if beam == sampled or generation - set(TEACHER_BEAM if beam else TEACHER_SAMPLING):
            errors.append(
                f"sequences {o.sequences!r} needs either {TEACHER_BEAM} (beam search) or all of "
                f"{TEACHER_SAMPLING} (sampling) among its hparams, not both"
            )
    elif generation:
        errors.append(f"{sorted(generation)} without teacher sequences")
    sampling = set(o.hparams) & set(STUDENT_SAMPLING)
    if o.student_sequences and sampling != set(STUDENT_SAMPLING):
        errors.append(f"sequences {o.sequences!r} needs all of {STUDENT_SAMPLING} in its hparams")
    if not o.student_sequences and sampling:
        errors.append(f"{sorted(sampling)} without student sequences")
    if (o.sequences == "gold+student") != ("onpolicy_fraction" in o.hparams):
        errors.append("onpolicy_fraction goes with sequences 'gold+student', and only with it")
    if o.pick not in PICKS:
        errors.append(f"pick {o.pick!r} is not one of {PICKS}")
    if o.pick == "bleu" and not (o.teacher_sequences and beam):
        errors.append("pick 'bleu' chooses among the teacher's beams: it needs num_beams")
    if not o.teacher_logits and not o.teacher_sequences:
        errors.append("teacher_logits=False: it learns nothing from the teacher")
    return errors


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
def declared(*declarations: Objective | HParam) -> Iterator[tuple[Objective | HParam, ...]]:
    """Declare `declarations` (hyper-parameters first, then the objectives reading them) for
    the duration of a ``with`` block, then undeclare them."""
    done: list[Objective | HParam] = []
    try:
        for item in declarations:
            declare_hparam(item) if isinstance(item, HParam) else declare(item)
            done.append(item)
        yield declarations
    finally:
        for item in reversed(done):
            undeclare_hparam(item.name) if isinstance(item, HParam) else undeclare(item.name)


def get_objective(name: str) -> Objective:
    """The declaration of `name`; a ValueError naming the declared ones if there is none."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; declared: {', '.join(OBJECTIVES)}") from None


def attach(name: str, kind: str, implementation: Callable) -> None:
    """Attach the compute layer's `implementation` of `kind` (IMPLEMENTATION_KINDS) to declared
    objective `name`; once per kind. Used by `sekd.train.losses.register_objective` and
    `sekd.train.chunked.register_kernel`."""
    if kind not in IMPLEMENTATION_KINDS:
        raise ValueError(f"implementation kind {kind!r} is not one of {IMPLEMENTATION_KINDS}")
    if name not in OBJECTIVES:
        raise ValueError(
            f"objective {name!r}: declare it in sekd.plan.objectives first "
            "(sekd.plan.objectives.declare(Objective(...)))"
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
    Objective(
        "noevo_kd",
        "NoEvo KD",
        ("lam",),
        True,
        doc="KL(ỹ||q) on every token (eq. 8, §4)",
        same_gradient_as="forward_kd",
    ),
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
    # The baselines the study descends from, on the same protocol (Table 3).
    Objective(
        "word_kd",
        "Word-KD",
        ("lam",),
        True,
        doc="(1-λ)·SFT + λ·(-Σ_v p_v log q_v) (Kim & Rush 2016); forward_kd's gradient, "
        "value + λ·H(p)",
        same_gradient_as="forward_kd",
    ),
    Objective(
        "seq_kd",
        "SeqKD",
        ("num_beams",),
        True,
        sequences="teacher",
        teacher_logits=False,
        doc="-log q[y'] on the teacher's best beam y' (Kim & Rush 2016)",
    ),
    Objective(
        "seq_inter",
        "Seq-Inter",
        ("num_beams",),
        True,
        sequences="teacher",
        teacher_logits=False,
        pick="bleu",
        doc="-log q[y'] on the teacher's beam with the highest sentence BLEU (Kim & Rush 2016)",
    ),
    Objective(
        "fd_kl",
        "f-DISTILL KL",
        TEACHER_SAMPLING,
        True,
        sequences="teacher",
        doc="KL(p||q) per token on teacher-sampled sequences (Wen et al. 2023)",
    ),
    Objective(
        "fd_rkl",
        "f-DISTILL RKL",
        STUDENT_SAMPLING,
        True,
        sequences="student",
        needs_full_teacher=True,
        doc="KL(q||p) per token on student-sampled sequences (Wen et al. 2023)",
    ),
    Objective(
        "fd_js",
        "f-DISTILL JS",
        TEACHER_SAMPLING + STUDENT_SAMPLING,
        True,
        sequences="teacher+student",
        needs_full_teacher=True,
        doc="KL(p||m) on teacher samples + KL(q||m) on student samples, m = (p+q)/2, halved "
        "(Wen et al. 2023)",
    ),
    Objective(
        "fd_tvd",
        "f-DISTILL TVD",
        TEACHER_SAMPLING + STUDENT_SAMPLING,
        True,
        sequences="teacher+student",
        needs_full_teacher=True,
        doc="½Σ_v|p_v - q_v| per token on teacher and on student samples, halved (Wen et al. 2023)",
    ),
    Objective(
        "gkd",
        "GKD",
        ("jsd_beta", "onpolicy_fraction", *STUDENT_SAMPLING),
        True,
        sequences="gold+student",
        needs_full_teacher=True,
        doc="generalized JSD_β(p||q) on gold or, with probability λ, student samples "
        "(Agarwal et al. 2024, TRL's GKD)",
    ),
]:
    declare(_objective)
del _objective
