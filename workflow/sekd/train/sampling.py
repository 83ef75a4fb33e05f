"""Sampling whose draws do not depend on the batch: the teacher's sampled training sequences
(rule teacher_outputs) and the student's on-policy samples (sekd.train.trainer).

A row draws its next token as argmax(log π + G), π the temperature-, top-k- and top-p-warped
distribution and G Gumbel noise from a generator seeded by the row's own seed and the token's
position (the Gumbel-max trick: an exact sample from π). So a sequence depends on its seed, not on
which other sequences share its batch, how the batch is padded, or how many ranks split it: a
2-rank run samples what a one-process run samples. Hugging Face `generate` runs it as greedy
decoding with `SeededSampling` as the last logits processor, so ``synced_gpus`` (ZeRO-3) and the
KV cache work as for any greedy decoding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList


def row_seed(*parts: int | str) -> int:
    """A 63-bit seed from `parts` (run seed, example index, epoch, ...), the same in every
    process and Python run (no `hash()` randomisation)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def warp(scores: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """log π up to a constant [B, V]: scores / temperature, then -inf outside the `top_k` largest
    (0 = all) and outside the smallest set whose probability reaches `top_p` (1 = all; the most
    likely token is always kept)."""
    if temperature <= 0 or top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(
            f"temperature > 0, top_k >= 0, top_p in (0, 1]; got {temperature}, {top_k}, {top_p}"
        )
    scores = scores.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -torch.inf)
    if top_p < 1:
        ordered, order = torch.sort(scores, dim=-1, descending=True)
        probs = ordered.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens ranked above
        drop = before >= top_p
        drop[..., 0] = False
        scores = scores.masked_fill(drop.scatter(-1, order, drop), -torch.inf)
    return scores


def gumbel(seeds: list[int], position: int, vocab_size: int) -> Tensor:
    """Gumbel(0, 1) noise [B, V] (fp32, CPU); row b from a generator seeded with
    ``row_seed(seeds[b], position)``."""
    rows = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(row_seed(seed, position))
        u = torch.rand(vocab_size, generator=generator, dtype=torch.float64)
        rows.append(-torch.log(-torch.log(u.clamp_min(1e-300))))
    return torch.stack(rows).float()


def within_tokenizer(scores: Tensor, size: int | None) -> Tensor:
    """`scores` [B, V] with -inf at every id >= `size` (the tokenizer's entries; None = all kept):
    a model whose vocabulary is padded above its tokenizer (Qwen2.5's, rounded up for the GPU)
    has rows no text can hold, and generation must never pick one."""
    if size is None or scores.shape[-1] <= size:
        return scores
    scores = scores.clone()
    scores[..., size:] = -torch.inf
    return scores


class WithinTokenizer(LogitsProcessor):
    """`within_tokenizer` as a logits processor of `generate` (before any other of ours)."""

    def __init__(self, size: int | None):
        self.size = size

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        return within_tokenizer(scores, self.size)


class SeededSampling(LogitsProcessor):
    """The last logits processor of a greedy `generate`: warped scores plus per-row Gumbel
    noise, so that greedy picks an exact sample of the warped distribution (module docstring).
    `prompt_width` is the padded prompt length: position = generated tokens so far."""

    def __init__(
        self, seeds: list[int], temperature: float, top_k: int, top_p: float, prompt_width: int
    ):
        self.seeds, self.prompt_width = list(seeds), prompt_width
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if input_ids.shape[0] != len(self.seeds):
            raise ValueError(
                f"{input_ids.shape[0]} rows but {len(self.seeds)} seeds (beam search?)"
            )
        warped = warp(scores, self.temperature, self.top_k, self.top_p)
        noise = gumbel(self.seeds, input_ids.shape[1] - self.prompt_width, scores.shape[-1])
        return warped + noise.to(warped.device)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask) [B, P] of token-id lists, left-padded for generation."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[row, width - len(ids) :] = 1
    return input_ids, attention


def sample(
    model,
    prompts: list[list[int]],
    seeds: list[int],
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    synced_gpus: bool = False,
    vocab_limit: int | None = None,
) -> list[tuple[list[int], bool]]:
    """One sample per prompt (token-id lists) from `model`: [(new tokens, finished)], the tokens
    up to and including the first end id when `finished` (`split_at_end`: the tokenizer's EOS, or
    another of `eos_token_id`'s, written as that EOS), else the `max_new_tokens` drawn (cut: no
    EOS). Row b is drawn with seed `seeds[b]` (module docstring); ``synced_gpus``: every ZeRO-3
    rank keeps stepping until all are done; `vocab_limit`: the tokenizer's size, no id at or above
    it is drawn (`within_tokenizer`)."""
    input_ids, attention = left_pad(prompts, pad_token_id)
    device = next(model.parameters()).device
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=end_ids(eos_token_id),
        pad_token_id=pad_token_id,
    )
    processor = SeededSampling(seeds, temperature, top_k, top_p, input_ids.shape[1])
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            generation_config=config,
            logits_processor=LogitsProcessorList([WithinTokenizer(vocab_limit), processor]),
            synced_gpus=synced_gpus,
        )
    return [split_at_end(row, eos_token_id) for row in output[:, input_ids.shape[1] :].tolist()]


def end_ids(eos: int | Sequence[int]) -> list[int]:
    """The ids that end a generated sequence: the tokenizer's EOS alone (an int), or it followed
    by the model's other end ids (generation_config's, sekd.evaluate.decode.end_ids)."""
    return [eos] if isinstance(eos, int) else list(eos)


def split_at_end(row: Sequence[int], eos: int | Sequence[int]) -> tuple[list[int], bool]:
    """(the ids up to and including the first end id, True), that id written as the tokenizer's
    EOS (the first of `end_ids(eos)`): a sequence a model ended with its own end-of-turn id ends
    as the workflow's training targets do; else (all of `row`, False)."""
    ends = end_ids(eos)
    row, stops = [int(token) for token in row], set(ends)  # ints, also from a tensor
    first = next((i for i, token in enumerate(row) if token in stops), None)
    if first is None:
        return row, False
    return [*row[:first], ends[0]], True
