"""Batched decoding of a test set (§4.3: beam size 1, i.e. greedy, by default).

Prompts are sorted by length so each batch pads little, and left-padded so every prompt ends
where generation starts. Greedy decoding (the default) runs a lean loop over the model's forward:
one prefill, then one token a step with a preallocated KV cache and a prepared 4D attention mask
(Hugging Face's per-step mask building and `generate` bookkeeping dominated small models); a row
leaves the batch at its first EOS, and the batch ends when every row has. Beam search goes through
`generate`, as does a batch that a sliding-window layer (Mistral, Gemma-2/3) would see past its
window in: the lean loop's mask is full-causal. No id at or above the tokenizer's size is ever
generated (a vocabulary padded above the tokenizer, as Qwen2.5's, has rows no text holds).
`engine="vllm"` hands the same prompts to vLLM instead (GPU users; optional).
Each hypothesis is cut at the first EOS and written as one line; throughput is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from tqdm import tqdm
from transformers import GenerationConfig, LogitsProcessorList
from transformers.cache_utils import Cache, DynamicLayer

from sekd import models
from sekd.data import prompts
from sekd.plan.schema import default
from sekd.train.sampling import WithinTokenizer, within_tokenizer

log = logging.getLogger("sekd.evaluate.decode")

ENGINES = ("hf", "vllm")
# Attention implementations that take a prepared 4D mask (bool for sdpa, additive for eager).
_LEAN_ATTENTION = ("sdpa", "eager")


def encode_prompts(
    tokenizer: Any,
    sources: Sequence[str],
    direction: str,
    languages: Mapping[str, str],
    response_newline: bool = prompts.RESPONSE_NEWLINE,
) -> list[list[int]]:
    """Prompt token ids of each source (the same prompts for every engine; `response_newline`:
    prompt.response_newline, as training built them)."""
    return [
        prompts.encode_prompt(
            tokenizer, prompts.build_prompt(s, direction, languages, response_newline)
        )
        for s in sources
    ]


def hypothesis(tokenizer: Any, generated: Sequence[int], ends: Sequence[int] = ()) -> str:
    """One-line hypothesis from generated ids: cut at the first EOS (or other of the `ends`,
    `end_ids`), special tokens dropped."""
    ids = cut_at_end(generated, [tokenizer.eos_token_id, *ends])
    return prompts.extract_response(tokenizer.decode(ids, skip_special_tokens=True))


def cut_at_end(generated: Sequence[int], ends: Sequence[int]) -> list[int]:
    """`generated` up to (without) its first id in `ends`."""
    ids, stops = list(generated), set(ends)
    first = next((i for i, token in enumerate(ids) if token in stops), len(ids))
    return ids[:first]


def end_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a generation: the tokenizer's EOS, then those of the model's
    `generation_config.eos_token_id` (an id or a list: Llama-3's end-of-turn, Gemma's
    <end_of_turn>), each once."""
    ends = [tokenizer.eos_token_id]
    config = getattr(model, "generation_config", None)
    extra = getattr(config, "eos_token_id", None) if config is not None else None
    for token in [extra] if isinstance(extra, int) else list(extra or []):
        if token not in ends:
            ends.append(token)
    return ends


def _saved_generation(model_dir: str) -> Any:
    """An object with the `generation_config` a model directory saved (the trained models
    decoded here are local directories; nothing is fetched), for `end_ids`; None inside when it
    has none."""
    path = Path(model_dir) / "generation_config.json"
    config = GenerationConfig.from_pretrained(str(model_dir)) if path.is_file() else None
    return SimpleNamespace(generation_config=config)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def translate_with_engine(
    model_dir: str,
    tokenizer: Any,
    sources: list[str],
    direction: str,
    languages: Mapping[str, str],
    options: Mapping[str, Any],
    dtype: str = "float32",
) -> list[str]:
    """Translate with the engine the `decoding` config section names (`engine`, default hf);
    `options` carries prompt.response_newline too when it is not the default (rule decode)."""
    engine = options.get("engine", default("decoding.engine"))
    if engine not in ENGINES:
        raise ValueError(f"decoding.engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    common = {
        "num_beams": options["num_beams"],
        "max_new_tokens": options["max_new_tokens"],
        "response_newline": options.get("response_newline", prompts.RESPONSE_NEWLINE),
    }
    if engine == "vllm":
        return translate_vllm(
            model_dir, tokenizer, sources, direction, languages, dtype=dtype, **common
        )
    model = models.load_causal_lm(model_dir, dtype)
    models.check_vocab(model, tokenizer, model_dir, "the model to decode")
    if torch.cuda.is_available():
        model.to("cuda")
    return translate(
        model,
        tokenizer,
        sources,
        direction,
        languages,
        batch_size=options["batch_size"],
        **common,
    )


def translate(
    model: Any,
    tokenizer: Any,
    sources: list[str],
    direction: str,
    languages: Mapping[str, str],
    *,
    num_beams: int = default("decoding.num_beams"),
    max_new_tokens: int = default("decoding.max_new_tokens"),
    batch_size: int = default("decoding.batch_size"),
    stats: dict[str, float] | None = None,
    response_newline: bool = prompts.RESPONSE_NEWLINE,
) -> list[str]:
    """Translate `sources` in `direction` with a Hugging Face model: one line each, in order.

    `stats`, when given, receives sentences, generated_tokens (EOS excluded) and seconds.
    """
    model.eval()
    encoded = encode_prompts(tokenizer, sources, direction, languages, response_newline)
    batches = length_sorted_batches([len(e) for e in encoded], batch_size)
    lean = num_beams == 1 and _attention(model) in _LEAN_ATTENTION
    window = sliding_window(model)
    ends = end_ids(model, tokenizer)
    hypotheses: list[str] = [""] * len(sources)
    generated_tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in tqdm(batches, desc=f"decode {direction}", mininterval=5):
            rows = [encoded[i] for i in batch]
            # the lean loop's mask sees the whole sequence: not for a layer with a shorter window
            within = window is None or max(len(r) for r in rows) + max_new_tokens <= window
            if lean and within:
                outputs = greedy_batch(
                    model,
                    rows,
                    max_new_tokens,
                    ends,
                    tokenizer.pad_token_id,
                    vocab_limit=len(tokenizer),
                )
            else:
                outputs = _generate_batch(model, tokenizer, rows, num_beams, max_new_tokens, ends)
            for index, ids in zip(batch, outputs, strict=True):
                hypotheses[index] = hypothesis(tokenizer, ids, ends)
                generated_tokens += len(ids)
    _log_throughput(len(sources), generated_tokens, time.perf_counter() - start, stats)
    return hypotheses


def greedy_batch(
    model: Any,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    eos: int | Sequence[int],
    pad: int,
    vocab_limit: int | None = None,
) -> list[list[int]]:
    """Greedy continuations of one batch (EOS excluded), as one-by-one decoding would give.

    Rows are left-padded; padded keys are masked and positions count from each row's first
    real token. A row is dropped from the batch (and its KV cache) at its first EOS (`eos`: an id
    or the list of `end_ids`). No id at or above `vocab_limit` (the tokenizer's size) is picked.
    """
    stops = {eos} if isinstance(eos, int) else set(eos)
    device = next(model.parameters()).device
    eager = _attention(model) == "eager"
    dtype = model.get_input_embeddings().weight.dtype
    n, width = len(prompt_ids), max(len(p) for p in prompt_ids)
    capacity = width + max_new_tokens
    input_ids, keys = _left_padded(prompt_ids, pad, capacity)
    input_ids, keys = input_ids.to(device), keys.to(device)
    positions = (keys[:, :width].long().cumsum(-1) - 1).clamp_(min=0)
    cache = _preallocated_cache(model, capacity)
    logits = _prefill(model, input_ids, keys[:, :width], positions, cache, eager)
    outputs: list[list[int]] = [[] for _ in range(n)]
    alive = list(range(n))  # original row of each batch row still decoding
    position = positions[:, -1]
    for step in range(max_new_tokens):
        tokens = within_tokenizer(logits, vocab_limit).argmax(-1)
        keep = []
        for j, token in enumerate(tokens.tolist()):
            if token not in stops:
                outputs[alive[j]].append(token)
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(alive):  # rows at EOS leave the batch and the cache
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            tokens, position, keys = tokens[index], position[index], keys[index]
            alive = [alive[j] for j in keep]
        length = width + step + 1
        keys[:, length - 1] = True
        position = position + 1
        logits = model(
            input_ids=tokens[:, None],
            attention_mask=_as_mask(keys[:, None, None, :length], eager, dtype),
            position_ids=position[:, None],
            past_key_values=cache,
            use_cache=True,
        ).logits[:, -1]
    return outputs


def _prefill(model: Any, input_ids: Any, keys: Any, positions: Any, cache: Any, eager: bool) -> Any:
    """The last position's logits [B, V] of the left-padded prompts `input_ids` [B, W] (`keys`
    [B, W]: real tokens), their keys and values written to `cache`."""
    width, device = input_ids.shape[1], input_ids.device
    causal = torch.ones((width, width), dtype=torch.bool, device=device).tril_()
    # Padding queries attend to themselves only, so no softmax row is empty (no NaN).
    allowed = (causal & keys[:, None, :]) | torch.eye(width, dtype=torch.bool, device=device)
    dtype = model.get_input_embeddings().weight.dtype
    return model(
        input_ids=input_ids,
        attention_mask=_as_mask(allowed[:, None], eager, dtype),
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]


def _left_padded(
    prompt_ids: Sequence[Sequence[int]], pad: int, capacity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts left-padded with `pad` to the longest, and the [n, capacity] key mask."""
    n, width = len(prompt_ids), max(len(p) for p in prompt_ids)
    input_ids = torch.full((n, width), pad, dtype=torch.long)
    # keys[r, j]: position j of row r may be attended to (real token, or generated later).
    keys = torch.zeros((n, capacity), dtype=torch.bool)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        keys[row, width - len(ids) : width] = True
    return input_ids, keys


def translate_vllm(
    model_dir: str,
    tokenizer: Any,
    sources: list[str],
    direction: str,
    languages: Mapping[str, str],
    *,
    num_beams: int = default("decoding.num_beams"),
    max_new_tokens: int = default("decoding.max_new_tokens"),
    dtype: str = "auto",
    response_newline: bool = prompts.RESPONSE_NEWLINE,
) -> list[str]:
    """Translate with vLLM (`decoding.engine: vllm`): same prompts and hypothesis extraction.

    Greedy is `SamplingParams(temperature=0)`, beams `LLM.beam_search`; vLLM batches itself.
    """
    vllm = import_vllm()
    encoded = encode_prompts(tokenizer, sources, direction, languages, response_newline)
    requests = [{"prompt_token_ids": ids} for ids in encoded]
    ends = end_ids(_saved_generation(model_dir), tokenizer)  # generation_config's too
    llm = vllm.LLM(model=str(model_dir), tokenizer=str(model_dir), dtype=dtype, seed=0)
    start = time.perf_counter()
    if num_beams == 1:
        params = vllm.SamplingParams(
            n=1,
            temperature=0.0,
            max_tokens=max_new_tokens,
            stop_token_ids=ends,
        )
        results = llm.generate(requests, params)
        generated = [list(r.outputs[0].token_ids) for r in results]
    else:
        # vllm is optional (GPU machines, decoding.engine: vllm): imported on use.
        from vllm.sampling_params import BeamSearchParams

        params = BeamSearchParams(beam_width=num_beams, max_tokens=max_new_tokens)
        results = llm.beam_search(requests, params)
        # Beam sequences hold prompt + continuation, best first.
        generated = [
            list(r.sequences[0].tokens[len(ids) :]) for r, ids in zip(results, encoded, strict=True)
        ]
    if len(generated) != len(sources):
        raise RuntimeError(f"vLLM returned {len(generated)} outputs for {len(sources)} prompts")
    # a beam's end id other than EOS (vLLM's beam search stops at EOS only) ends it here
    hypotheses = [hypothesis(tokenizer, ids, ends) for ids in generated]
    tokens = sum(len(ids) for ids in generated)
    _log_throughput(len(sources), tokens, time.perf_counter() - start, None)
    return hypotheses


def import_vllm() -> Any:
    """The vllm module, or an error naming the config switch when it is not installed."""
    try:  # optional (GPU machines, decoding.engine: vllm): imported on use
        import vllm
    except ImportError as err:
        raise ImportError(
            "decoding.engine is 'vllm' but the vllm package is not installed: install it "
            "(GPU machines; `pip install vllm`) or set decoding.engine: hf"
        ) from err
    return vllm


def sliding_window(model: Any) -> int | None:
    """The window of the model's sliding-window attention layers, or None when every layer sees
    the whole sequence: `layer_types` with "sliding_attention" (Gemma-2/3, Qwen2 with
    use_sliding_window), else a `sliding_window` the config does not switch off (Mistral)."""
    config = model.config.get_text_config(decoder=True)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return window if "sliding_attention" in layer_types else None
    return window if getattr(config, "use_sliding_window", True) else None


def _attention(model: Any) -> str | None:
    return getattr(model.config, "_attn_implementation", None)


def _as_mask(allowed: Any, eager: bool, dtype: Any) -> Any:
    """sdpa takes the bool mask; eager adds it to the scores (0 or the dtype's minimum)."""
    if not eager:
        return allowed
    zeros = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return zeros.masked_fill_(~allowed, torch.finfo(dtype).min)


def _preallocated_cache(model: Any, capacity: int) -> Any:
    """A KV cache written in place (no per-step concatenation), `capacity` positions a layer."""
    layers = model.config.get_text_config(decoder=True).num_hidden_layers
    return Cache(layers=[PreallocatedLayer(capacity) for _ in range(layers)])


def _generate_batch(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    num_beams: int,
    max_new_tokens: int,
    ends: Sequence[int] = (),
) -> list[list[int]]:
    """Continuations from Hugging Face `generate` (beam search, sliding windows, or attention
    without 4D masks), each up to its first EOS or other of the `ends` (`end_ids`)."""
    ends = [tokenizer.eos_token_id, *ends]
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompt_ids)
    input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
    attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[row, width - len(ids) :] = 1
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=False,
        eos_token_id=list(dict.fromkeys(ends)),
        pad_token_id=pad,
        bos_token_id=tokenizer.bos_token_id,
    )
    output = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        generation_config=config,
        logits_processor=LogitsProcessorList([WithinTokenizer(len(tokenizer))]),
    )
    return [cut_at_end(row, ends) for row in output[:, width:].tolist()]


def _log_throughput(
    sentences: int, tokens: int, elapsed: float, stats: dict[str, float] | None
) -> None:
    if stats is not None:
        stats.update(sentences=sentences, generated_tokens=tokens, seconds=elapsed)
    elapsed = max(elapsed, 1e-9)
    log.info(
        "%d sentences, %d generated tokens in %.1f s (%.2f sentences/s, %.1f tokens/s)",
        sentences,
        tokens,
        elapsed,
        sentences / elapsed,
        tokens / elapsed,
    )


class PreallocatedLayer(DynamicLayer):
    """KV cache layer of fixed capacity: writes in place, returns the filled prefix."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: Any) -> None:
        batch, heads, _, dim = key_states.shape
        self.dtype, self.device = key_states.dtype, key_states.device
        self.keys = key_states.new_zeros((batch, heads, self.capacity, dim))
        self.values = key_states.new_zeros((batch, heads, self.capacity, dim))
        self.is_initialized = True

    def update(
        self, key_states: Any, value_states: Any, cache_kwargs: dict | None = None
    ) -> tuple[Any, Any]:
        if not self.is_initialized:
            self.lazy_initialization(key_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache full: {end} > {self.capacity} positions")
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: Any) -> None:
        if self.is_initialized:
            self.keys = self.keys[indices]
            self.values = self.values[indices]
