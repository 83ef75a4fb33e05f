"""sekd.data.prompts: the ParroT template, label masking and truncation with a tiny local
tokenizer."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from sekd.data import prompts

LANGS = {"en": "English", "de": "German", "cs": "Czech"}
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>"]


@pytest.fixture(scope="module")
def tokenizer():
    """A WordLevel tokenizer trained on a few prompts, with BOS added by the post-processor."""
    transformers = pytest.importorskip("transformers")
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [
        prompts.build_prompt(s, d, LANGS)
        for s, d in [("Guten Morgen", "de-en"), ("Good morning", "en-de"), ("Dobré ráno", "cs-en")]
    ]
    tok.train_from_iterator(
        [*corpus, "Good morning Guten Morgen"], trainers.WordLevelTrainer(special_tokens=SPECIALS)
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def test_template_de_en() -> None:
    assert prompts.build_prompt("Guten Morgen", "de-en", LANGS) == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate the following sentences from German to English.\n\n"
        "### Input:\nGuten Morgen\n\n### Response:\n"
    )
    assert "from English to Czech." in prompts.build_prompt("x", "en-cs", LANGS)


def test_unknown_language() -> None:
    with pytest.raises(ValueError, match=r"'fr'.*`languages`"):
        prompts.build_prompt("x", "fr-en", LANGS)


def test_encode_masks_prompt(tokenizer) -> None:
    prompt = prompts.build_prompt("Guten Morgen", "de-en", LANGS)
    p_ids = prompts.encode_prompt(tokenizer, prompt)
    assert p_ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in p_ids
    ex = prompts.encode_example(tokenizer, prompt, "Good morning", max_length=512)
    assert ex is not None and not ex["truncated"]
    n = len(p_ids)
    target = tokenizer("Good morning", add_special_tokens=False)["input_ids"]
    assert ex["input_ids"] == [*p_ids, *target, tokenizer.eos_token_id]
    assert ex["labels"][:n] == [-100] * n
    assert ex["labels"][n:] == ex["input_ids"][n:] == [*target, tokenizer.eos_token_id]
    assert ex["labels"][-1] == tokenizer.eos_token_id
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])
    assert all(type(i) is int for i in ex["input_ids"] + ex["labels"])


def test_encode_truncation(tokenizer) -> None:
    prompt = prompts.build_prompt("Guten Morgen", "de-en", LANGS)
    n = len(prompts.encode_prompt(tokenizer, prompt))
    full = prompts.encode_example(tokenizer, prompt, "Good morning", max_length=10_000)
    assert len(full["input_ids"]) == n + 3  # two words + EOS

    exact = prompts.encode_example(tokenizer, prompt, "Good morning", max_length=n + 3)
    assert exact == full

    cut = prompts.encode_example(tokenizer, prompt, "Good morning", max_length=n + 1)
    assert cut["truncated"] and len(cut["input_ids"]) == len(cut["labels"]) == n + 1
    assert cut["input_ids"] == full["input_ids"][: n + 1]
    assert cut["labels"] == full["labels"][: n + 1] and cut["labels"][-1] != -100

    assert prompts.encode_example(tokenizer, prompt, "Good morning", max_length=n) is None
    assert prompts.encode_example(tokenizer, prompt, "Good morning", max_length=n - 5) is None


def test_extract_response() -> None:
    assert prompts.extract_response("  Good\n\nmorning \t all \n") == "Good morning all"
    assert prompts.extract_response("\n") == ""
