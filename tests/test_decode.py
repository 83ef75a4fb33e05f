"""Batched greedy decoding: same hypotheses as one-by-one (rows stopping at EOS at different
steps included), one line each, original order; the optional vLLM engine's mapping."""

from __future__ import annotations

import copy
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from conftest import LANGUAGES, SENTENCES

from sekd import models
from sekd.errors import ConfigError
from sekd.evaluate import decode
from sekd.plan.config import validate_config

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [de for de, _ in SENTENCES] + ["Ja.", "Das ist ein sehr langer Satz mit vielen Wörtern."]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return models.load_causal_lm(tiny_model_dir).eval()


EOS_EVERY = 11  # the crafted model emits EOS after each position divisible by this


@pytest.fixture(scope="module")
def sharp_model(tiny_tokenizer):
    """Two layers with weights scaled up: greedy output depends on the whole prompt, so masking
    or position errors change hypotheses (the saved tiny model answers every prompt alike)."""
    init = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    model = models.build_tiny_llama({**init, "num_attention_heads": 2}, tiny_tokenizer, seed=0)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.mul_(5.0)
    return model.eval()


@pytest.fixture(scope="module")
def eos_model(sharp_model, tiny_tokenizer):
    """The sharp model with EOS forced after every position p with p % EOS_EVERY == 0: prompts
    of different lengths hit EOS after different numbers of steps (or not within the limit)."""
    model = copy.deepcopy(sharp_model)
    eos = tiny_tokenizer.eos_token_id
    seen: dict[str, torch.Tensor] = {}

    def keep_positions(module, args, kwargs):
        seen["positions"] = kwargs["position_ids"]

    def force_eos(module, args, logits):
        positions = seen["positions"][:, -logits.shape[1] :]
        logits[..., eos] += 1e4 * (positions % EOS_EVERY == 0)
        return logits

    model.register_forward_pre_hook(keep_positions, with_kwargs=True)
    model.get_output_embeddings().register_forward_hook(force_eos)
    return model


def _generate_one_by_one(model, tokenizer, prompts, max_new_tokens):
    """Reference: Hugging Face generate, one prompt at a time (no padding)."""
    with torch.inference_mode():
        return [
            decode._generate_batch(model, tokenizer, [p], 1, max_new_tokens)[0] for p in prompts
        ]


def test_batched_equals_one_by_one(sharp_model, tiny_tokenizer):
    model = sharp_model
    kwargs = {"num_beams": 1, "max_new_tokens": 12}
    batched = decode.translate(
        model, tiny_tokenizer, SOURCES, "de-en", LANGUAGES, batch_size=3, **kwargs
    )
    single = decode.translate(
        model, tiny_tokenizer, SOURCES, "de-en", LANGUAGES, batch_size=1, **kwargs
    )
    assert batched == single
    assert len(batched) == len(SOURCES)
    assert all("\n" not in h for h in batched)
    assert any(h for h in batched)  # a random model still emits tokens before EOS


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_rows_stop_at_eos_at_different_steps(eos_model, tiny_tokenizer, attention):
    eos_model.set_attn_implementation(attention)
    assert eos_model.config._attn_implementation == attention
    prompts = decode.encode_prompts(tiny_tokenizer, SOURCES, "de-en", LANGUAGES)
    eos, pad, steps = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id, 10
    reference = _generate_one_by_one(eos_model, tiny_tokenizer, prompts, steps)
    lengths = sorted({len(r) for r in reference})
    # EOS after different numbers of steps, and a row that runs to the limit: the test bites.
    assert len(lengths) >= 3 and lengths[0] < steps and lengths[-1] == steps
    with torch.inference_mode():
        single = [decode.greedy_batch(eos_model, [p], steps, eos, pad)[0] for p in prompts]
        batched = decode.greedy_batch(eos_model, prompts, steps, eos, pad)
    assert single == reference  # the lean loop reproduces generate
    assert batched == reference  # and batching (left padding, rows leaving) changes nothing
    eos_model.set_attn_implementation("sdpa")


def test_batch_ends_when_every_row_has_hit_eos(eos_model, tiny_tokenizer, monkeypatch):
    prompts = decode.encode_prompts(tiny_tokenizer, SOURCES, "de-en", LANGUAGES)
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    with torch.inference_mode():
        reference = [decode.greedy_batch(eos_model, [p], 64, eos, pad)[0] for p in prompts]
    stopped = [p for p, r in zip(prompts, reference, strict=True) if len(r) < 64]
    assert len(stopped) >= 2
    calls: list[int] = []
    forward = eos_model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(eos_model, "forward", counting)
    with torch.inference_mode():
        decode.greedy_batch(eos_model, stopped, 64, eos, pad)
    longest = max(len(r) for p, r in zip(prompts, reference, strict=True) if p in stopped)
    assert len(calls) == 1 + longest  # prefill + one step per token of the longest row
    assert calls == sorted(calls, reverse=True) and calls[-1] < calls[0]  # finished rows left


def test_order_follows_the_sources(model, tiny_tokenizer):
    sources = [de for de, _ in SENTENCES]
    kwargs = {"num_beams": 1, "max_new_tokens": 8, "batch_size": 4}
    forward = decode.translate(model, tiny_tokenizer, sources, "de-en", LANGUAGES, **kwargs)
    backward = decode.translate(model, tiny_tokenizer, sources[::-1], "de-en", LANGUAGES, **kwargs)
    assert forward == backward[::-1]


def test_length_sorted_batches():
    assert decode.length_sorted_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]
    with pytest.raises(ValueError, match="batch_size"):
        decode.length_sorted_batches([1], 0)


def test_throughput_is_reported(model, tiny_tokenizer, caplog):
    stats: dict[str, float] = {}
    with caplog.at_level("INFO", logger="sekd.evaluate.decode"):
        decode.translate(
            model, tiny_tokenizer, SOURCES[:3], "de-en", LANGUAGES, max_new_tokens=5, stats=stats
        )
    assert stats["sentences"] == 3 and 0 < stats["generated_tokens"] <= 15
    assert "sentences/s" in caplog.text and "tokens/s" in caplog.text


def test_beam_search_runs(model, tiny_tokenizer):
    out = decode.translate(
        model, tiny_tokenizer, ["Das Haus."], "de-en", LANGUAGES, num_beams=3, max_new_tokens=6
    )
    assert len(out) == 1


# ----------------------------------------------------------------------------- vLLM engine


class _FakeLLM:
    """Stands in for vllm.LLM: greedy continuations come from the tiny HF model."""

    instances: ClassVar[list[_FakeLLM]] = []

    def __init__(self, hf_model, eos: int, pad: int, **kwargs) -> None:
        self.kwargs, self.hf_model, self.eos, self.pad = kwargs, hf_model, eos, pad
        self.calls: list[tuple[str, list, object]] = []
        _FakeLLM.instances.append(self)

    def _continuation(self, ids: list[int], max_tokens: int) -> list[int]:
        with torch.inference_mode():
            out = decode.greedy_batch(self.hf_model, [ids], max_tokens, self.eos, self.pad)[0]
        return [*out, self.eos] if len(out) < max_tokens else out  # vLLM keeps the stop id

    def generate(self, requests, params):
        self.calls.append(("generate", requests, params))
        return [
            types.SimpleNamespace(
                outputs=[
                    types.SimpleNamespace(
                        token_ids=self._continuation(r["prompt_token_ids"], params.max_tokens)
                    )
                ]
            )
            for r in requests
        ]

    def beam_search(self, requests, params):
        self.calls.append(("beam_search", requests, params))
        out = []
        for r in requests:
            ids = r["prompt_token_ids"]
            best = ids + self._continuation(ids, params.max_tokens)
            worse = [*ids, self.pad]
            out.append(
                types.SimpleNamespace(
                    sequences=[types.SimpleNamespace(tokens=t) for t in (best, worse)]
                )
            )
        return out


@pytest.fixture
def fake_vllm(monkeypatch, model, tiny_tokenizer):
    """A fake `vllm` package in sys.modules recording how decode.py calls it."""
    _FakeLLM.instances.clear()
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: _FakeLLM(
        model, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id, **kwargs
    )
    module.SamplingParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.BeamSearchParams = lambda **kwargs: types.SimpleNamespace(**kwargs)
    module.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    return module


def test_vllm_greedy_maps_onto_sampling_params(fake_vllm, model, tiny_tokenizer):
    out = decode.translate_vllm(
        "some/model",
        tiny_tokenizer,
        SOURCES,
        "de-en",
        LANGUAGES,
        max_new_tokens=12,
        dtype="bfloat16",
    )
    (llm,) = _FakeLLM.instances
    assert llm.kwargs["model"] == "some/model" and llm.kwargs["dtype"] == "bfloat16"
    ((kind, requests, params),) = llm.calls
    assert kind == "generate"
    assert vars(params) == {
        "n": 1,
        "temperature": 0.0,
        "max_tokens": 12,
        "stop_token_ids": [tiny_tokenizer.eos_token_id],
    }
    prompts = decode.encode_prompts(tiny_tokenizer, SOURCES, "de-en", LANGUAGES)
    assert [r["prompt_token_ids"] for r in requests] == prompts  # the HF path's prompts
    hf = decode.translate(model, tiny_tokenizer, SOURCES, "de-en", LANGUAGES, max_new_tokens=12)
    assert out == hf  # same hypothesis extraction


def test_vllm_stops_at_the_generation_configs_end_ids_too(
    fake_vllm, model, tiny_tokenizer, tmp_path
):
    """A model directory whose generation_config lists another end id (Llama-3's <|eot_id|>):
    vLLM's greedy decoding stops there too, and a beam that runs past it is cut there."""
    from transformers import GenerationConfig

    eos = tiny_tokenizer.eos_token_id
    GenerationConfig(eos_token_id=[eos, 7]).save_pretrained(tmp_path)
    decode.translate_vllm(str(tmp_path), tiny_tokenizer, SOURCES[:1], "de-en", LANGUAGES)
    ((_, _, params),) = _FakeLLM.instances[0].calls
    assert params.stop_token_ids == [eos, 7]
    assert decode._saved_generation(str(tmp_path / "none")).generation_config is None


def test_vllm_beams_map_onto_beam_search(fake_vllm, model, tiny_tokenizer):
    out = decode.translate_vllm(
        "m", tiny_tokenizer, SOURCES[:3], "de-en", LANGUAGES, num_beams=4, max_new_tokens=7
    )
    ((kind, _, params),) = _FakeLLM.instances[0].calls
    assert kind == "beam_search"
    assert vars(params) == {"beam_width": 4, "max_tokens": 7}
    hf = decode.translate(model, tiny_tokenizer, SOURCES[:3], "de-en", LANGUAGES, max_new_tokens=7)
    assert out == hf  # the best sequence, prompt cut off


def test_engine_switch(fake_vllm, tiny_model_dir, tiny_tokenizer, monkeypatch):
    options = {"num_beams": 1, "max_new_tokens": 5, "batch_size": 2, "engine": "vllm"}
    monkeypatch.setattr(models, "load_causal_lm", lambda *a, **k: pytest.fail("HF model loaded"))
    decode.translate_with_engine(
        str(tiny_model_dir), tiny_tokenizer, SOURCES[:2], "de-en", LANGUAGES, options, "float32"
    )
    assert len(_FakeLLM.instances) == 1
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"decoding\.engine"):
        decode.translate_with_engine(
            "m", tiny_tokenizer, [], "de-en", LANGUAGES, {**options, "engine": "ct2"}
        )


def test_hf_engine_needs_no_vllm(tiny_model_dir, tiny_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # importing it would fail
    options = {"num_beams": 1, "max_new_tokens": 5, "batch_size": 2}  # engine defaults to hf
    out = decode.translate_with_engine(
        str(tiny_model_dir), tiny_tokenizer, SOURCES[:2], "de-en", LANGUAGES, options
    )
    assert len(out) == 2


def test_vllm_not_installed_names_the_config_key(tiny_tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    options = {"num_beams": 1, "max_new_tokens": 5, "batch_size": 2, "engine": "vllm"}
    with pytest.raises(ImportError, match=r"decoding\.engine"):
        decode.translate_with_engine("m", tiny_tokenizer, ["Ja."], "de-en", LANGUAGES, options)


def test_config_engine_is_validated():
    paper = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    assert paper["decoding"]["engine"] == "hf"
    paper["decoding"]["engine"] = "ct2"
    with pytest.raises(ConfigError, match=r"'decoding\.engine'"):
        validate_config(paper, environ={})
