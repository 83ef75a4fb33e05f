"""Batched decoding of a test set (§4.3: beam size 1, i.e. greedy, by default).

Prompts are sorted by length so each batch pads little, left-padded for generation with the KV
cache, and each hypothesis is cut at the first EOS and written as one line.
"""

from __future__ import annotations

import logging
import time

from sekd import prompts

log = logging.getLogger("sekd.decode")


def translate(
    model,
    tokenizer,
    sources: list[str],
    direction: str,
    languages: dict[str, str],
    *,
    num_beams: int = 1,
    max_new_tokens: int = 256,
    batch_size: int = 16,
) -> list[str]:
    """Translate `sources` in `direction`: one single-line hypothesis per source, in order."""
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig

    model.eval()
    device = next(model.parameters()).device
    encoded = [
        prompts.encode_prompt(tokenizer, prompts.build_prompt(s, direction, languages))
        for s in sources
    ]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=tokenizer.bos_token_id,
    )
    hypotheses: list[str] = [""] * len(sources)
    start = time.time()
    with torch.inference_mode():
        starts = range(0, len(order), batch_size)
        for first in tqdm(starts, desc=f"decode {direction}", mininterval=5):
            batch = order[first : first + batch_size]
            width = max(len(encoded[i]) for i in batch)
            # Left padding, so every prompt ends where generation starts.
            input_ids = torch.full((len(batch), width), pad)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
                attention[row, width - len(encoded[i]) :] = 1
            output = model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
            )
            for row, index in zip(output[:, width:].tolist(), batch, strict=True):
                if eos in row:
                    row = row[: row.index(eos)]
                text = tokenizer.decode(row, skip_special_tokens=True)
                hypotheses[index] = prompts.extract_response(text)
    elapsed = time.time() - start
    rate = len(sources) / max(elapsed, 1e-9)
    log.info("%d sentences in %.1f s (%.2f sentences/s)", len(sources), elapsed, rate)
    return hypotheses
