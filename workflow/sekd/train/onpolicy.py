"""On-policy training sequences: the student's own samples as training targets (issue 10).

Objectives whose sequences end in "student" (`sekd.plan.objectives.SEQUENCE_SOURCES`) train on what
the current student samples for the batch's prompts (f-DISTILL's RKL/JS/TVD, Wen et al. 2023;
GKD's on-policy batches, Agarwal et al. 2024). This module holds the trainer's arithmetic:

- `onpolicy_step`: whether an optimizer step trains on student samples (GKD's λ), drawn from
  ``row_seed(seed, "onpolicy", global_step)``: the same on every rank, under any gradient
  accumulation, and after a resume;
- `sample_seeds`: a sample's seed ``row_seed(seed, example index, epoch)``, so that a resumed or
  a 2-rank run draws the samples a one-process run draws (`sekd.train.sampling` makes a draw depend
  on its seed only);
- `repack`: prompt + sample as a right-padded batch like the gold ones (labels -100 on the
  prompt and the padding, the sample's EOS kept, cut at ``training.max_length``), counting empty
  (EOS first) and truncated (no EOS) samples;
- `draw`: sample with the student in eval mode, then back to its mode, and repack.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor

from sekd.train.sampling import row_seed, sample

IGNORE_INDEX = -100


@dataclass(frozen=True)
class OnPolicy:
    """How a run samples its on-policy sequences (built by `sekd.train.job` from the plan's values,
    the config's `sequences` and `training` sections and the tokenizer)."""

    sequences: str  # the objective's source: "student", "gold+student" or "teacher+student"
    fraction: float  # probability that an optimizer step is on-policy (Variant.onpolicy_fraction)
    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int  # sequences.max_new_tokens
    max_length: int  # training.max_length: prompt + sample are cut there
    # the tokenizer's EOS, or it then the student's generation_config end ids (decode.end_ids)
    eos_token_id: int | tuple[int, ...]
    pad_token_id: int
    seed: int  # the run's seed
    vocab_limit: int | None = None  # the tokenizer's size: no sampled id at or above it

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"onpolicy_fraction must be in [0, 1], got {self.fraction!r}")
        if self.max_new_tokens < 1 or self.max_length < 2:
            raise ValueError(
                f"sequences.max_new_tokens ({self.max_new_tokens}) must be >= 1 and "
                f"training.max_length ({self.max_length}) >= 2"
            )


@dataclass
class OnPolicyStats:
    """Counters of on-policy sampling (a logging interval's, or a run's totals)."""

    steps: int = 0  # optimizer steps decided
    onpolicy_steps: int = 0  # of which trained on student samples
    samples: int = 0
    empty_samples: int = 0  # EOS first: the target is EOS alone
    truncated_samples: int = 0  # no EOS in the target (max_new_tokens or max_length reached)
    generation_seconds: float = 0.0  # wall time spent sampling
    step_seconds: float = 0.0  # wall time of the optimizer steps

    def add(self, other: OnPolicyStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def report(self) -> dict:
        """The counters plus the realised ``onpolicy_fraction`` (on-policy steps / steps) and
        ``generation_share`` (generation seconds / step seconds); None where undefined."""
        out = asdict(self)
        out["generation_seconds"] = round(self.generation_seconds, 4)
        out["step_seconds"] = round(self.step_seconds, 4)
        fraction = self.onpolicy_steps / self.steps if self.steps else None
        share = self.generation_seconds / self.step_seconds if self.step_seconds > 0 else None
        out["onpolicy_fraction"] = None if fraction is None else round(fraction, 4)
        out["generation_share"] = None if share is None else round(share, 4)
        return out


def onpolicy_step(seed: int, global_step: int, fraction: float) -> bool:
    """Whether optimizer step `global_step` (0-based: the steps completed before it) trains on
    student samples: u = row_seed(seed, "onpolicy", global_step) / 2^63 in [0, 1), on-policy
    iff u < fraction (0: never, 1: always). A function of the run's seed and the step only, so
    every rank and every micro-batch of the step agree, whatever the world size."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"onpolicy_fraction must be in [0, 1], got {fraction!r}")
    return row_seed(seed, "onpolicy", global_step) / 2**63 < fraction


def sample_seeds(seed: int, indices: list[int], epoch: int) -> list[int]:
    """The seed of each example's sample: row_seed(run seed, example index, epoch)."""
    return [row_seed(seed, int(index), int(epoch)) for index in indices]


def prompts_of(input_ids: Tensor, prompt_length: Tensor) -> list[list[int]]:
    """The prompts (token-id lists) of a right-padded batch: input_ids [B, T], prompt_length
    [B] (the leading -100 labels of each row, `sekd.data.batches.PadCollator`)."""
    lengths = prompt_length.tolist()
    if any(n < 1 or n > input_ids.shape[1] for n in lengths):
        raise ValueError(f"prompt lengths {lengths} must be in [1, {input_ids.shape[1]}]")
    return [row[:n] for row, n in zip(input_ids.tolist(), lengths, strict=True)]


def new_token_budget(prompts: list[list[int]], max_new_tokens: int, max_length: int) -> int:
    """Tokens to sample: `max_new_tokens`, but no more than the shortest prompt leaves under
    `max_length` (what lies past max_length is cut by `repack` anyway; a draw depends on its
    seed and position only, so the budget changes no kept token)."""
    room = max_length - min(len(p) for p in prompts)
    if room < 1:
        raise ValueError(f"a prompt fills training.max_length={max_length}: no room to sample")
    return min(max_new_tokens, room)


@dataclass(frozen=True)
class Repacked:
    """The on-policy batch: input_ids, attention_mask, labels [B, T] (int64), and counts."""

    batch: dict[str, Tensor]
    empty: int  # samples that are EOS alone
    truncated: int  # samples without EOS in their target


def repack(
    prompts: list[list[int]],
    samples: list[tuple[list[int], bool]],
    *,
    max_length: int,
    pad_token_id: int,
) -> Repacked:
    """Prompt + sample per row, right-padded to the longest: input_ids (pad_token_id past the
    end), attention_mask (1 on prompt and sample), labels (-100 on prompt and padding, the
    sample's tokens, EOS included, elsewhere), each row cut at `max_length`. `samples` are
    `sekd.train.sampling.sample`'s (new tokens, finished). A sample is empty when it is EOS alone,
    and truncated when its target keeps no EOS (not finished, or its EOS cut by max_length)."""
    if len(prompts) != len(samples):
        raise ValueError(f"{len(prompts)} prompts but {len(samples)} samples")
    rows, empty, truncated = [], 0, 0
    for prompt, (tokens, finished) in zip(prompts, samples, strict=True):
        if len(prompt) >= max_length:
            raise ValueError(f"a prompt of {len(prompt)} tokens fills max_length={max_length}")
        kept = tokens[: max_length - len(prompt)]
        empty += finished and len(tokens) == 1
        truncated += not finished or len(kept) < len(tokens)
        rows.append((prompt + kept, [IGNORE_INDEX] * len(prompt) + kept))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for b, (ids, row_labels) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention[b, : len(ids)] = 1
        labels[b, : len(ids)] = torch.tensor(row_labels, dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    return Repacked(batch, int(empty), int(truncated))


def draw(
    model: torch.nn.Module,
    prompts: list[list[int]],
    seeds: list[int],
    settings: OnPolicy,
    *,
    synced_gpus: bool = False,
) -> Repacked:
    """Sample one continuation per prompt from `model` (the unwrapped student) in eval mode and
    without gradients, restore its mode, and `repack` prompts + samples (on the CPU)."""
    was_training = model.training
    model.eval()
    try:
        samples = sample(
            model,
            prompts,
            seeds,
            temperature=settings.temperature,
            top_k=settings.top_k,
            top_p=settings.top_p,
            max_new_tokens=new_token_budget(prompts, settings.max_new_tokens, settings.max_length),
            eos_token_id=settings.eos_token_id,
            pad_token_id=settings.pad_token_id,
            synced_gpus=synced_gpus,
            vocab_limit=settings.vocab_limit,
        )
    finally:
        model.train(was_training)
    return repack(
        prompts, samples, max_length=settings.max_length, pad_token_id=settings.pad_token_id
    )


def epoch_of(state_epoch: float | None) -> int:
    """The 0-based epoch of the step in progress from the Trainer's `state.epoch` (epochs done
    so far, fractional: e + k/steps_in_epoch during epoch e)."""
    return math.floor(state_epoch or 0.0)
