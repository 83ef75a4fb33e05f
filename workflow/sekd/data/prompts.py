"""ParroT-style translation prompts (paper §4.1) and causal-LM example encoding.

No torch import: tokenizers are duck-typed (anything callable like a Hugging Face tokenizer
returning ``{"input_ids": [...]}`` and with ``eos_token_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sekd.data.alma import split_direction
from sekd.plan.schema import choices, default

TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{source}\n\n### Response:\n"
)
# prompt.response_newline: false gives ParroT's own ending (`### Response:` with no newline).
RESPONSE_NEWLINE: bool = default("prompt.response_newline")
# training.truncation: which tokens an example longer than training.max_length loses.
#   target_tail: the end of the target, its EOS included (the default; what was done first).
#   keep_eos: the end of the target but not its EOS (the last label kept is EOS), so that every
#     example still teaches the model to stop; the prompt is never cut, as the source is the
#     condition the target translates (cutting it would train on a target the prompt lacks).
# Values and default as the schema declares them (sekd.plan.schema).
TRUNCATIONS: tuple[str, ...] = choices("training.truncation")
DEFAULT_TRUNCATION: str = default("training.truncation")
INSTRUCTION = "Translate the following sentences from {src} to {tgt}."
IGNORE_INDEX = -100


def language_name(code: str, languages: Mapping[str, str]) -> str:
    """Name of a language code from the config's ``languages`` mapping."""
    if code not in languages:
        raise ValueError(
            f"unknown language code {code!r}: add it to the config key `languages` "
            f"(known: {', '.join(sorted(languages)) or 'none'})"
        )
    return languages[code]


def build_prompt(
    source: str,
    direction: str,
    languages: Mapping[str, str],
    response_newline: bool = RESPONSE_NEWLINE,
) -> str:
    """The full prompt for translating ``source`` in ``direction`` (e.g. ``"de-en"``).

    ``response_newline`` (config key ``prompt.response_newline``): whether the prompt ends
    ``### Response:\\n`` (the default) or ``### Response:`` as ParroT's template does (§4.1
    names ParroT's format without printing it).
    """
    src, tgt = split_direction(direction)
    instruction = INSTRUCTION.format(
        src=language_name(src, languages), tgt=language_name(tgt, languages)
    )
    prompt = TEMPLATE.format(instruction=instruction, source=source)
    return prompt if response_newline else prompt.removesuffix("\n")


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt token ids for generation (with BOS where the tokenizer adds one)."""
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def encode_example(
    tokenizer: Any,
    prompt: str,
    target: str,
    max_length: int,
    truncation: str = DEFAULT_TRUNCATION,
) -> dict[str, Any] | None:
    """``input_ids``/``labels``/``attention_mask`` for prompt + target + EOS.

    Labels are ``-100`` over the prompt and equal ``input_ids`` over target + EOS. The
    sequence is cut to ``max_length`` (``"truncated"`` says whether it was): with
    ``truncation="target_tail"`` its last tokens go (the EOS first), with ``"keep_eos"`` the
    target's last tokens before the EOS go and the EOS stays (``TRUNCATIONS``). Returns None
    when the prompt alone fills ``max_length`` (no label left).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    if truncation not in TRUNCATIONS:
        raise ValueError(
            f"training.truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no eos_token_id")
    prompt_ids = encode_prompt(tokenizer, prompt)
    if len(prompt_ids) >= max_length:
        return None
    target_ids = [*tokenizer(target, add_special_tokens=False)["input_ids"], eos]
    input_ids = prompt_ids + target_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + target_ids
    truncated = len(input_ids) > max_length
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if truncated and truncation == "keep_eos":
        input_ids[-1] = labels[-1] = eos
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": [1] * len(input_ids),
        "truncated": truncated,
    }


def extract_response(text: str) -> str:
    """One-line hypothesis: whitespace runs (newlines included) become single spaces."""
    return " ".join(text.split())
