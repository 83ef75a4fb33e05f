"""Run names for KD variants: the objective plus only the hyper-parameters it reads.

A name like ``sekd-lam0.5-beta0.5-gamma0.4`` is an identifier computed from the run's values in one
place (`Variant.name`): the output directory of the run and the wildcard Snakemake matches. It is
never read back for a value: the plan (`sekd.plan.study.planned_variant`) hands each KD job its
`Variant`, values included. The name is injective (lossless numbers, every value the objective
reads, the run options off their defaults), so changing Γ creates new paths (new jobs) for the runs
that read Γ and leaves every other run untouched. A progressive β (Fig. 3) is written
``beta0.5to0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from sekd.plan.objectives import HPARAMS, OBJECTIVES, RUN_OPTIONS

# Wildcard constraint for Snakemake: objective, then -tag<value> parts, then -option.value parts.
NAME_PATTERN = r"[a-z_]+(?:-[a-z]+[0-9.]+(?:to[0-9.]+)?)*(?:-[a-z][a-z_]*\.[a-z][a-z_]*)*"
# The run options the loss reads: option -> (`sekd.train.losses.distill_loss` keyword, {option
# value: keyword value}) (issue 11: eq. 5's d, the tokens a progressive β skews, Fig. 3).
LOSS_OPTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "difficulty": ("difficulty", {"kl": "kl", "cross_entropy": "cross_entropy"}),
    "betatokens": ("hard_tokens", {"hard": "selected", "all": "all"}),
}


def format_number(x: float) -> str:
    """The shortest text that reads back as exactly `x`, without an exponent (run names join
    their parts with '-'): 0.5 -> '0.5', 1.0 -> '1', 20 -> '20', 1e-07 -> '0.0000001'.

    Lossless, so that two different values never share a run (a rounded name once made Γ = 1e-7
    and Γ = 0 one run)."""
    if x < 0 or not math.isfinite(x):
        raise ValueError(f"hyper-parameter values are finite and non-negative, got {x}")
    text = format(Decimal(repr(float(x))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class Variant:
    """One KD configuration. ``hparams`` maps each hyper-parameter the objective reads to a float,
    or for β to a (begin, end) pair for the progressive schedule."""

    objective: str
    hparams: dict = field(default_factory=dict)
    # run options (sekd.plan.objectives.RUN_OPTIONS) set to other values than their defaults
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        parts = [self.objective]
        for key in OBJECTIVES[self.objective].hparams:
            value = self.hparams[key]
            if isinstance(value, (tuple, list)):
                text = f"{format_number(value[0])}to{format_number(value[1])}"
            else:
                text = format_number(value)
            parts.append(f"{HPARAMS[key].tag}{text}")
        parts += [f"{name}.{self.options[name]}" for name in RUN_OPTIONS if name in self.options]
        return "-".join(parts)

    def option(self, name: str) -> str:
        """The value of run option `name` for this run (its default when not set)."""
        return self.options.get(name, RUN_OPTIONS[name].default)

    def values(self) -> dict:
        """The run as plain values (a rule param, a JSON field); `from_values` inverts it."""
        return {
            "objective": self.objective,
            "hparams": dict(self.hparams),
            "options": dict(self.options),
        }

    @classmethod
    def from_values(cls, values: dict) -> Variant:
        """The Variant of `values` (`Variant.values`, or its JSON: a β schedule as a list)."""
        hparams = {
            k: tuple(v) if isinstance(v, (tuple, list)) else v for k, v in values["hparams"].items()
        }
        return cls(values["objective"], hparams, dict(values["options"]))

    @property
    def label(self) -> str:
        return OBJECTIVES[self.objective].label

    def loss_kwargs(self) -> dict:
        """Keyword arguments for `sekd.train.losses.distill_loss` (a progressive β: its start): the
        hyper-parameters the loss reads, and the loss's run options (LOSS_OPTIONS) where they
        apply to this run and are not at their defaults (so the paper's runs get none)."""
        out = self.hparams_for("loss")
        scheduled = self.beta_schedule is not None
        for name, (keyword, values) in LOSS_OPTIONS.items():
            value = self.option(name)
            if value != RUN_OPTIONS[name].default and RUN_OPTIONS[name].applies_to(
                self.objective, scheduled
            ):
                out[keyword] = values[value]
        return out

    def hparams_for(self, use: str) -> dict:
        """{name: value} of the hyper-parameters that `use` reads
        (sekd.plan.objectives.HPARAM_USES): whole numbers as int, a progressive β as its start."""
        out = {}
        for key in OBJECTIVES[self.objective].hparams_for(use):
            value = self.hparams[key]
            value = value[0] if isinstance(value, (tuple, list)) else value
            out[key] = int(value) if HPARAMS[key].integer else value
        return out

    @property
    def teacher_generation(self) -> dict:
        """The teacher's generation setting of its training sequences ({} if none):
        {"num_beams": K} or {"teacher_temperature": τ, "teacher_top_k": k, "teacher_top_p": p}."""
        return self.hparams_for("teacher_generation")

    @property
    def student_sampling(self) -> dict:
        """The student's on-policy sampling setting ({} if it samples nothing)."""
        return self.hparams_for("student_sampling")

    @property
    def onpolicy_fraction(self) -> float:
        """The probability that an optimizer step trains on student samples: 1 for "student",
        0 for "gold"/"teacher", the hyper-parameter for "gold+student"; "teacher+student" trains
        on both in every step (1)."""
        sequences = OBJECTIVES[self.objective].sequences
        if sequences == "gold+student":
            return float(self.hparams["onpolicy_fraction"])
        return 1.0 if sequences.endswith("student") else 0.0

    @property
    def beta_schedule(self) -> tuple[float, float] | None:
        beta = self.hparams.get("beta")
        return tuple(beta) if isinstance(beta, (tuple, list)) else None


def make_variant(
    objective: str, defaults: dict, options: dict | None = None, **overrides
) -> Variant:
    """The variant of `objective` with hyper-parameters from `defaults` (the config's `kd`
    section) and `overrides`, and run `options` ({name: value}, sekd.plan.objectives.RUN_OPTIONS);
    hyper-parameters and options the objective does not read are dropped, and so are options at
    their defaults."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; known: {sorted(OBJECTIVES)}")
    values = {**defaults, **overrides}
    hparams = {}
    for key in OBJECTIVES[objective].hparams:
        if values.get(key) is None:
            raise ValueError(f"objective {objective!r} needs kd.{key}")
        value = values[key]
        if isinstance(value, (tuple, list)):
            hparams[key] = tuple(float(v) for v in value)
        else:
            hparams[key] = float(value)
        _check_integer(key, hparams[key])
    scheduled = isinstance(hparams.get("beta"), tuple)
    return Variant(objective, hparams, _options(objective, scheduled, options or {}))


def _options(objective: str, scheduled: bool, options: dict) -> dict:
    """The non-default run options of a run of `objective`, checked; others dropped."""
    out = {}
    for name, value in options.items():
        if name not in RUN_OPTIONS:
            raise ValueError(f"unknown run option {name!r}; known: {', '.join(RUN_OPTIONS)}")
        option = RUN_OPTIONS[name]
        if value not in option.values:
            raise ValueError(f"{option.key}: {value!r} is not one of {option.values}")
        if option.applies_to(objective, scheduled) and value != option.default:
            out[name] = value
    return out


def _check_integer(key: str, value: float | tuple) -> None:
    """ValueError if hyper-parameter `key` is a whole number (HParam.integer) and `value` not."""
    if HPARAMS[key].integer and (isinstance(value, tuple) or value != int(value)):
        raise ValueError(f"kd.{key}: {key} must be a whole number, got {value!r}")
