"""Batched greedy decoding: same hypotheses as one-by-one, one line each, original order."""

from __future__ import annotations

from conftest import LANGUAGES, SENTENCES

from sekd import decode, models


def test_batched_equals_one_by_one(tiny_model_dir, tiny_tokenizer):
    model = models.load_causal_lm(tiny_model_dir)
    sources = [de for de, _ in SENTENCES] + ["Ja."]
    kwargs = {"num_beams": 1, "max_new_tokens": 12}
    batched = decode.translate(
        model, tiny_tokenizer, sources, "de-en", LANGUAGES, batch_size=3, **kwargs
    )
    single = decode.translate(
        model, tiny_tokenizer, sources, "de-en", LANGUAGES, batch_size=1, **kwargs
    )
    assert batched == single
    assert len(batched) == len(sources)
    assert all("\n" not in h for h in batched)
    assert any(h for h in batched)  # a random model still emits tokens before EOS


def test_order_follows_the_sources(tiny_model_dir, tiny_tokenizer):
    model = models.load_causal_lm(tiny_model_dir)
    sources = [de for de, _ in SENTENCES]
    kwargs = {"num_beams": 1, "max_new_tokens": 8, "batch_size": 4}
    forward = decode.translate(model, tiny_tokenizer, sources, "de-en", LANGUAGES, **kwargs)
    backward = decode.translate(model, tiny_tokenizer, sources[::-1], "de-en", LANGUAGES, **kwargs)
    assert forward == backward[::-1]


def test_beam_search_runs(tiny_model_dir, tiny_tokenizer):
    model = models.load_causal_lm(tiny_model_dir)
    out = decode.translate(
        model, tiny_tokenizer, ["Das Haus."], "de-en", LANGUAGES, num_beams=3, max_new_tokens=6
    )
    assert len(out) == 1
