"""The tokenizer shared by teachers and student: the pretrained model's (the paper's Llama
tokenizer), or, for the miniature, a byte-level BPE trained on the training slice."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from sekd.plan.schema import default

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
}


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    min_frequency: int = default("tokenizer.train.min_frequency"),
) -> PreTrainedTokenizerFast:
    """Byte-level BPE over `texts` (deterministic for the same texts in the same order)."""
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [SPECIAL_TOKENS[k] for k in ("unk_token", "bos_token", "eos_token", "pad_token")]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def load_pretrained(
    name_or_path: str, trust_remote_code: bool = False, revision: str | None = None
):
    """The tokenizer of a hub id or local model directory, with a pad token for batching;
    `revision` (a commit hash or tag) pins a hub model, None = the hub's default."""
    tok = AutoTokenizer.from_pretrained(
        name_or_path, trust_remote_code=trust_remote_code, revision=revision
    )
    if tok.pad_token is None:
        # Llama has none; padded positions are masked, so any id works. unk keeps eos distinct.
        tok.pad_token = tok.unk_token or tok.eos_token
    if tok.eos_token is None:
        raise ValueError(f"tokenizer of {name_or_path!r} has no EOS token")
    return tok


def load(path: str | Path):
    """The tokenizer a workflow run saved (results/tokenizer)."""
    return AutoTokenizer.from_pretrained(str(path))
