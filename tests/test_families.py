"""Model families beyond Llama-1 (issue 21): tiny Llama, Qwen2, Mistral, Gemma-2 and Gemma-3 models
built here (no hub) decode as `model.generate` does, sliding windows included, and no generation
path (greedy decoding, beam search, seeded sampling) emits an id outside the tokenizer when the
model's vocabulary is padded above it (as Qwen2.5's)."""

from __future__ import annotations

import pytest
import torch
from conftest import LANGUAGES, SENTENCES
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LogitsProcessorList,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sekd.evaluate import decode
from sekd.teacher import outputs
from sekd.train import sampling

PADDED = 24  # vocabulary rows above the tokenizer (Qwen2.5 rounds its vocabulary up)
WINDOW = 8  # shorter than any prompt: every decoded token is past the window
FAMILIES = {
    "llama": (LlamaConfig, LlamaForCausalLM, {}),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
    "mistral": (MistralConfig, MistralForCausalLM, {"sliding_window": WINDOW}),
    "gemma2": (Gemma2Config, Gemma2ForCausalLM, {"sliding_window": WINDOW}),
    "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM, {"sliding_window": WINDOW}),
}


def _model(family: str, tokenizer, **overrides):
    config_class, model_class, extra = FAMILIES[family]
    config = config_class(
        vocab_size=len(tokenizer) + PADDED,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **{**extra, **overrides},
    )
    torch.manual_seed(7)
    model = model_class(config).eval()
    with torch.no_grad():  # larger weights: varied greedy outputs, not one token repeated
        for p in model.parameters():
            p.mul_(4.0) if p.dim() > 1 else None
    return model


def _reference(model, tokenizer, sources: list[str], max_new_tokens: int, ends=None) -> list[str]:
    """One prompt at a time (no padding), Hugging Face greedy `generate` (ending at `ends`)."""
    hypotheses = []
    for ids in decode.encode_prompts(tokenizer, sources, "de-en", LANGUAGES):
        out = model.generate(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            eos_token_id=ends or tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([sampling.WithinTokenizer(len(tokenizer))]),
        )
        hypotheses.append(decode.hypothesis(tokenizer, out[0, len(ids) :].tolist(), ends or []))
    return hypotheses


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_decoding_equals_generate_sliding_windows_included(family, tiny_tokenizer):
    model = _model(family, tiny_tokenizer)
    sources = [de for de, _ in SENTENCES[:5]]
    prompts = decode.encode_prompts(tiny_tokenizer, sources, "de-en", LANGUAGES)
    if family in ("mistral", "gemma2", "gemma3"):
        assert decode.sliding_window(model) == WINDOW < min(len(p) for p in prompts)
    else:
        assert decode.sliding_window(model) is None
    got = decode.translate(
        model, tiny_tokenizer, sources, "de-en", LANGUAGES, max_new_tokens=10, batch_size=3
    )
    assert got == _reference(model, tiny_tokenizer, sources, 10)
    assert len(set(got)) > 1  # varied outputs: the comparison says something


def test_a_window_wider_than_the_sequence_keeps_the_lean_loop_and_equals_generate(
    tiny_tokenizer, monkeypatch
):
    model = _model("mistral", tiny_tokenizer, sliding_window=4096)
    sources = [de for de, _ in SENTENCES[:4]]
    called = []
    monkeypatch.setattr(decode, "_generate_batch", lambda *a, **k: called.append(a) or [])
    got = decode.translate(
        model, tiny_tokenizer, sources, "de-en", LANGUAGES, max_new_tokens=10, batch_size=2
    )
    assert not called  # the lean loop decoded every batch
    assert got == _reference(model, tiny_tokenizer, sources, 10)


def _favouring_padded_rows(model, size: int):
    """Make the padded rows (ids >= `size`) the most likely at every position."""
    bias = torch.zeros(model.config.vocab_size)
    bias[size:] = 1e4
    model.lm_head.register_forward_hook(lambda module, args, out: out + bias)
    return model


def test_no_generation_path_emits_an_id_outside_the_tokenizer(tiny_tokenizer):
    size = len(tiny_tokenizer)
    model = _favouring_padded_rows(_model("qwen2", tiny_tokenizer), size)
    prompts = decode.encode_prompts(
        tiny_tokenizer, [de for de, _ in SENTENCES[:3]], "de-en", LANGUAGES
    )
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    # without the limit the padded rows win: the checks below could fail
    unlimited = decode.greedy_batch(model, prompts, 4, eos, pad)
    assert min(min(ids) for ids in unlimited) >= size
    greedy = decode.greedy_batch(model, prompts, 6, eos, pad, vocab_limit=size)
    beams = outputs.beam_search(model, prompts, 2, 6, eos, pad, vocab_limit=size)
    drawn = sampling.sample(
        model,
        prompts,
        [1, 2, 3],
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=6,
        eos_token_id=eos,
        pad_token_id=pad,
        vocab_limit=size,
    )
    generated = decode._generate_batch(model, tiny_tokenizer, prompts, 2, 6)
    every = [*greedy, *(ids for b in beams for ids, _ in b), *(ids for ids, _ in drawn), *generated]
    assert every and all(ids for ids in every)
    assert max(max(ids) for ids in every) < size


@pytest.mark.parametrize("family", ["llama", "mistral"])  # the lean loop, and generate
def test_the_generation_configs_end_ids_end_a_hypothesis(family, tiny_tokenizer):
    """Llama-3 and Gemma list more end ids in generation_config than the tokenizer's EOS."""
    model = _model(family, tiny_tokenizer)
    sources = [de for de, _ in SENTENCES[:3]]
    prompts = decode.encode_prompts(tiny_tokenizer, sources, "de-en", LANGUAGES)
    first = decode._generate_batch(model, tiny_tokenizer, prompts[:1], 1, 10)[0]
    k = next(k for k in range(1, len(first)) if first[k] not in first[:k])  # a new id, not first
    eos = tiny_tokenizer.eos_token_id
    model.generation_config.eos_token_id = [eos, first[k]]
    assert decode.end_ids(model, tiny_tokenizer) == [eos, first[k]]
    got = decode.translate(
        model, tiny_tokenizer, sources, "de-en", LANGUAGES, max_new_tokens=10, batch_size=3
    )
    assert (
        got[0]
        == decode.hypothesis(tiny_tokenizer, first[:k])
        != decode.hypothesis(tiny_tokenizer, first)
    )
    assert got == _reference(model, tiny_tokenizer, sources, 10, ends=[eos, first[k]])
    model.generation_config.eos_token_id = eos  # one id, as most configs
    assert decode.end_ids(model, tiny_tokenizer) == [eos]


def test_sampled_and_beam_sequences_end_at_an_end_id_written_as_the_eos(tiny_tokenizer):
    """The teacher's outputs and the on-policy samples (seeded sampling, beam search) stop at
    any end id (generation_config's, as Llama-3's <|eot_id|>) and keep the tokenizer's EOS in
    its place, so every training target ends as SFT's do."""
    model = _model("llama", tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    prompts = decode.encode_prompts(tiny_tokenizer, [SENTENCES[0][0]], "de-en", LANGUAGES)
    options = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 12}
    options["pad_token_id"] = tiny_tokenizer.pad_token_id
    ((first, _),) = sampling.sample(model, prompts, [5], eos_token_id=eos, **options)
    k = next(k for k in range(1, len(first)) if first[k] not in (*first[:k], eos))
    ends = [eos, first[k]]
    ((ended, finished),) = sampling.sample(model, prompts, [5], eos_token_id=ends, **options)
    assert finished and ended == [*first[:k], eos]
    beams = outputs.beam_search(model, prompts, 2, 12, ends, tiny_tokenizer.pad_token_id)
    for ids, done in beams[0]:
        assert first[k] not in ids and (not done or ids[-1] == eos)
    assert sampling.split_at_end([3, 9, 4, 9], [7, 4]) == ([3, 9, 7], True)
    assert sampling.split_at_end([3, 9], 7) == ([3, 9], False)
