"""Decoding throughput: batched, length-sorted greedy decoding with the KV cache (sekd.decode)
against one sentence at a time, on the same model and sentences, in one run.

    .venv/bin/python bench/decode_bench.py [--sentences 64] [--batch-size 16] [--max-new-tokens 48]

The model is the miniature's student architecture with seeded random weights (so hypotheses run
to max_new_tokens unless EOS is drawn, the same for both modes); the tokenizer is a BPE trained on
a slice of the WMT22 test sources when the data mirror is reachable ($SEKD_DATA_MIRROR or
../shared/data/alma), else on synthetic sentences. Prints one JSON line with
`batched_vs_single` (sentences/s ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from sekd import data, decode, models  # noqa: E402
from sekd import tokenizer as tokenizers  # noqa: E402

LANGUAGES = {"en": "English", "de": "German"}
STUDENT = {
    "hidden_size": 64,
    "intermediate_size": 172,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}


def sentences(n: int) -> list[str]:
    mirror = Path(os.environ.get("SEKD_DATA_MIRROR") or ROOT.parent / "shared/data/alma")
    path = mirror / "human_written_data" / data.test_file("de-en")
    if path.is_file():
        pairs = data.read_json_pairs(path, "de", "en")
        return [de for de, _ in data.take_slice(pairs, n, seed=1)]
    rng = random.Random(1)
    words = ["Haus", "Katze", "schnell", "heute", "wir", "gehen", "nach", "Berlin", "und", "der"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))) for _ in range(n)]


def rate(model, tok, sources, batch_size: int, max_new_tokens: int) -> float:
    start = time.perf_counter()
    decode.translate(
        model,
        tok,
        sources,
        "de-en",
        LANGUAGES,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    return len(sources) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    sources = sentences(args.sentences)
    tok = tokenizers.train_bpe(sources * 3, vocab_size=2000, min_frequency=2)
    model = models.build_tiny_llama(STUDENT, tok, seed=0).eval()
    rate(model, tok, sources[:4], args.batch_size, 4)  # warm-up
    batched = rate(model, tok, sources, args.batch_size, args.max_new_tokens)
    single = rate(model, tok, sources, 1, args.max_new_tokens)
    print(
        json.dumps(
            {
                "bench": "decode",
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                "sentences": len(sources),
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "batched_sentences_per_s": round(batched, 2),
                "single_sentences_per_s": round(single, 2),
                "batched_vs_single": round(batched / single, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
