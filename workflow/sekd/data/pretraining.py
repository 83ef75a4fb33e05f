"""The miniature's pretraining text and its blocks (rules prepare_pretrain and pretrain).

The paper's student and teachers are pretrained LLMs; the miniature's are built from random
weights (`models.<name>.init`), so each is first pretrained as a causal language model (config
`pretrain`, `models.<name>.init.pretrain_steps`) on monolingual text larger than the SFT slice:
both sides of every ALMA training pair of `data.pairs`.

* Text (`pretraining_sentences`): of each language pair, a seeded sample of `max_pairs` pairs (or
  all), in a seeded random order. With `adjacent`, each pair's two sentences stay next to each
  other (in a random order of their languages), as translations often stand side by side in the
  web text LLMs are pretrained on: the models then learn some translation before SFT, the larger
  one more. Without, every sentence is placed on its own (monolingual text only).
* Blocks (`pack_blocks`): every sentence tokenised without special tokens and followed by EOS, the
  whole text concatenated and cut into blocks of `block_size` tokens (the last, shorter one
  dropped). An example is ``{"input_ids": [block_size], "attention_mask": [block_size],
  "labels": [block_size]}`` with labels = input_ids: every token is predicted (the causal LM loss
  of eq. 2 with no prompt masked), so sekd.train.job trains it as SFT's cross-entropy.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

from sekd.data.alma import take_slice

log = logging.getLogger("sekd.data.pretraining")


def pretraining_sentences(
    pairs: Sequence[Sequence[tuple[str, str]]], max_pairs: int | None, seed: int, adjacent: bool
) -> list[str]:
    """The pretraining text (module docstring), one sentence per line: `pairs` holds each
    language pair's (source, target) pairs."""
    rng = random.Random(seed)
    units = []
    for index, corpus in enumerate(pairs):
        for pair in take_slice(corpus, max_pairs, seed + index):
            sentences = [s.strip() for s in pair if s.strip()]
            rng.shuffle(sentences)  # which language comes first
            units += [sentences] if adjacent else [[s] for s in sentences]
    rng.shuffle(units)
    return [s for unit in units for s in unit]


def pack_blocks(sentences: Sequence[str], tokenizer, block_size: int) -> list[dict]:
    """`sentences` as causal-LM examples of exactly `block_size` tokens each (module docstring);
    a ValueError when the text is shorter than one block."""
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for ids in tokenizer(list(sentences), add_special_tokens=False)["input_ids"]:
        stream += ids
        stream.append(eos)
    blocks = len(stream) // block_size
    if not blocks:
        raise ValueError(
            f"the pretraining text is {len(stream)} tokens, shorter than one block of "
            f"pretrain.block_size={block_size}"
        )
    log.info(
        "%d sentences, %d tokens: %d blocks of %d tokens (%d tokens dropped)",
        len(sentences),
        len(stream),
        blocks,
        block_size,
        len(stream) - blocks * block_size,
    )
    examples = []
    for start in range(0, blocks * block_size, block_size):
        ids = stream[start : start + block_size]
        examples.append({"input_ids": ids, "attention_mask": [1] * block_size, "labels": list(ids)})
    return examples


def read_text(path: str) -> list[str]:
    """The sentences of a pretraining text file (rule prepare_pretrain's output)."""
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()
