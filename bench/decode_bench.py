"""Decoding throughput: batched, length-sorted greedy decoding (sekd.evaluate.decode.translate)
against one sentence at a time (the same function with batch_size 1), same model and sentences, one
run.

    .venv/bin/python bench/decode_bench.py [--sentences 128] [--batch-size 16]
        [--max-new-tokens 48] [--threads 1] [--size student]

The model is a miniature architecture (config/mini.yaml sizes; `--size`) with seeded random
weights, so hypotheses run to max_new_tokens unless EOS is drawn; both modes must produce the
same hypotheses and the same number of generated tokens (checked, reported). The tokenizer is
a BPE trained as the workflow's tokenizer rule does for the miniature (prompt + target, both
directions, of a seeded training slice, vocabulary 2000) when the data mirror is reachable
($SEKD_DATA_MIRROR or ../shared/data/alma); test sources are the WMT22 de-en test set. Without
the mirror, synthetic sentences stand in. Torch runs on `--threads` threads (1, as the project's
CPU jobs). Prints one JSON line with `batched_vs_single` (sentences/s ratio).
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

from sekd import models  # noqa: E402
from sekd.data import alma as data  # noqa: E402
from sekd.data import prompts  # noqa: E402
from sekd.data import tokenizer as tokenizers  # noqa: E402
from sekd.evaluate import decode  # noqa: E402

LANGUAGES = {"en": "English", "de": "German"}
SIZES = {  # config/mini.yaml models.*.init
    "student": {
        "hidden_size": 64,
        "intermediate_size": 172,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
    },
    "teacher": {
        "hidden_size": 128,
        "intermediate_size": 344,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
    },
    "teacher_l": {
        "hidden_size": 192,
        "intermediate_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 6,
    },
}


def corpus(n: int) -> tuple[list[str], list[str]]:
    """(n test sources, tokenizer training texts)."""
    mirror = Path(os.environ.get("SEKD_DATA_MIRROR") or ROOT.parent / "shared/data/alma")
    root = mirror / "human_written_data"
    if (root / data.test_file("de-en")).is_file():
        test = data.read_json_pairs(root / data.test_file("de-en"), "de", "en")
        sources = [de for de, _ in data.take_slice(test, n, seed=1)]
        train = data.filter_by_words(data.load_train_pairs(root, "de-en"), 15)
        records = data.build_train_examples({"de-en": data.take_slice(train, 800, seed=1)})
    else:
        rng = random.Random(1)
        words = ["Haus", "Katze", "schnell", "heute", "wir", "gehen", "nach", "Berlin", "und"]
        sources = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 30))) for _ in range(n)]
        records = [{"direction": "de-en", "source": s, "target": s} for s in sources]
    texts = [
        prompts.build_prompt(r["source"], r["direction"], LANGUAGES) + r["target"] for r in records
    ]
    return sources, texts


def run(model, tok, sources, batch_size: int, max_new_tokens: int) -> tuple[list[str], dict]:
    stats: dict[str, float] = {}
    start = time.perf_counter()
    hyps = decode.translate(
        model,
        tok,
        sources,
        "de-en",
        LANGUAGES,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        stats=stats,
    )
    stats["seconds"] = time.perf_counter() - start
    return hyps, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--size", choices=sorted(SIZES), default="student")
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    sources, texts = corpus(args.sentences)
    tok = tokenizers.train_bpe(texts, vocab_size=2000, min_frequency=2)
    model = models.build_tiny_llama(SIZES[args.size], tok, seed=0).eval()
    prompt_tokens = [len(ids) for ids in decode.encode_prompts(tok, sources, "de-en", LANGUAGES)]
    run(model, tok, sources[:4], args.batch_size, 4)  # warm-up
    batched_hyps, batched = run(model, tok, sources, args.batch_size, args.max_new_tokens)
    single_hyps, single = run(model, tok, sources, 1, args.max_new_tokens)
    batched_rate = len(sources) / batched["seconds"]
    single_rate = len(sources) / single["seconds"]
    print(
        json.dumps(
            {
                "bench": "decode",
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "torch_threads": torch.get_num_threads(),
                "model": args.size,
                "sentences": len(sources),
                "mean_prompt_tokens": round(sum(prompt_tokens) / len(prompt_tokens), 1),
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "generated_tokens": {
                    "batched": int(batched["generated_tokens"]),
                    "single": int(single["generated_tokens"]),
                },
                "identical_hypotheses": batched_hyps == single_hyps,
                "batched_s": round(batched["seconds"], 3),
                "single_s": round(single["seconds"], 3),
                "batched_sentences_per_s": round(batched_rate, 2),
                "single_sentences_per_s": round(single_rate, 2),
                "batched_vs_single": round(batched_rate / single_rate, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
