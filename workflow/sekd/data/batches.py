"""Training examples and batches: ParroT-formatted records tokenised with the prompt masked, and
the collator that right-pads them (§4.2).

An example is ``{"input_ids": [T], "attention_mask": [T], "labels": [T]}`` with the prompt's
labels -100, so that eq. 2 (and every KD objective) reads the target tokens only; a batch is the
same fields as int64 tensors [B, T_max].
"""

from __future__ import annotations

import logging

import torch
from tqdm import tqdm

from sekd.data import alma as data
from sekd.data import prompts
from sekd.data.prompts import DEFAULT_TRUNCATION

log = logging.getLogger("sekd.data.batches")


def encode_records(
    records: list[dict],
    tokenizer,
    languages: dict,
    max_length: int,
    kept: list[int] | None = None,
    *,
    response_newline: bool = prompts.RESPONSE_NEWLINE,
    truncation: str = DEFAULT_TRUNCATION,
    counts: dict | None = None,
) -> list[dict]:
    """Tokenize {direction, source, target} records into masked examples (prompt labels = -100).
    `kept`, when given, receives the position in `records` of each example returned (records
    whose prompt alone fills `max_length` are dropped). `response_newline` (prompt.*) and
    `truncation` (training.*): the open choices of sekd.data.prompts, defaults as first built.
    `counts`, when given, receives {"examples": records read, "dropped", "truncated"}: what the
    log line says, for a caller that must not drop examples silently."""
    examples, truncated, dropped = [], 0, 0
    for position, rec in enumerate(tqdm(records, desc="tokenize", mininterval=5)):
        prompt = prompts.build_prompt(rec["source"], rec["direction"], languages, response_newline)
        ex = prompts.encode_example(tokenizer, prompt, rec["target"], max_length, truncation)
        if ex is None:
            dropped += 1
            continue
        truncated += bool(ex.pop("truncated", False))
        examples.append(ex)
        if kept is not None:
            kept.append(position)
    if counts is not None:
        counts.update(examples=len(records), dropped=dropped, truncated=truncated)
    log.info(
        "%d examples (%d truncated to %d tokens, %d dropped: prompt too long)",
        len(examples),
        truncated,
        max_length,
        dropped,
    )
    return examples


def read_records(files: list[str]) -> list[dict]:
    """The records of the JSONL `files`, in order (what `encode_files` encodes)."""
    return [r for path in files for r in data.read_jsonl(path)]


def encode_files(
    files: list[str], tokenizer, languages: dict, max_length: int, **formatting
) -> list[dict]:
    """The records of the JSONL `files`, in order, as masked examples (`encode_records`;
    `formatting`: its response_newline and truncation)."""
    return encode_records(read_records(files), tokenizer, languages, max_length, **formatting)


class PadCollator:
    """Right-pad a batch of examples; labels are padded with -100. With a teacher store, the
    batch also gets the store's rows of its examples (`store_*` fields; examples carry their
    position in the training set as "index"). With `prompt_fields` (on-policy runs,
    sekd.train.onpolicy), it also gets ``example_index`` [B] (each example's "index") and
    ``prompt_length`` [B] (its leading -100 labels: the prompt), int64."""

    def __init__(self, pad_id: int, store=None, prompt_fields: bool = False):
        self.pad_id = pad_id
        self.store = store
        self.prompt_fields = prompt_fields

    def __call__(self, batch: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(ex["input_ids"]) for ex in batch)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([ex[key] + [value] * (width - len(ex[key])) for ex in batch])

        out = {
            "input_ids": pad("input_ids", self.pad_id),
            "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", -100),
        }
        if self.store is not None:
            out.update(self.store.rows([ex["index"] for ex in batch]))
        if self.prompt_fields:
            out["example_index"] = torch.tensor([_index(ex) for ex in batch])
            out["prompt_length"] = torch.tensor([prompt_length(ex["labels"]) for ex in batch])
        return out


def _index(example: dict) -> int:
    if "index" not in example:
        raise KeyError(
            'a training example without its position "index" (sekd.train.job._train sets it); '
            "on-policy sampling seeds each sample by it"
        )
    return example["index"]


def prompt_length(labels: list[int]) -> int:
    """The prompt's length in an example: its leading -100 labels."""
    n = 0
    while n < len(labels) and labels[n] == -100:
        n += 1
    return n
