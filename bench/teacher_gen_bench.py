"""Teacher-generation throughput over training prompts (sekd.teacher.outputs, rule
teacher_outputs): length-sorted batches of `--batch-size` prompts against one prompt at a time,
for beam search (all `--beams` beams kept) and for seeded sampling (sekd.train.sampling).

    .venv/bin/python bench/teacher_gen_bench.py [--prompts 24] [--batch-size 16] [--beams 5]
        [--max-new-tokens 20] [--scale 8] [--threads 1]

The teacher is Llama-1 13B shrunk by `--scale` as in bench/store_bench.py (default 1/8: 5 layers
x 640, MLP 1728, V = 4000), seeded random weights, so hypotheses mostly run to max_new_tokens;
the BPE and the de-en training pairs are store_bench's (the data mirror, $SEKD_DATA_MIRROR or
../shared/data/alma; synthetic sentences if absent). Prompts are encoded as training encodes them
(sekd.data.batches, training.max_length 256). Timed: `sekd.teacher.outputs.generate_all`, the
generation of the rule's job (model loading, BLEU and writing excluded), one run per mode. The
samples of the two modes must be equal (checked); for beam search the report says whether they
are. Prints one JSON line with `beam_batched_vs_single` and `sample_batched_vs_single`
(sentences/s ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from store_bench import LANGUAGES, LLAMA_13B, params, records, shrink, tokenizer  # noqa: E402

from sekd import models  # noqa: E402
from sekd.data import batches  # noqa: E402
from sekd.teacher import outputs as to  # noqa: E402


def timed(model, prompt_ids: list[list[int]], job: to.GenerationJob, tok) -> tuple[list, float]:
    """(hypotheses, seconds) of one generation over `prompt_ids`."""
    start = time.perf_counter()
    out = to.generate_all(model, prompt_ids, job, tok.eos_token_id, tok.pad_token_id, len(tok))
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    models.configure_torch_threads(args.threads)
    tok = tokenizer(args.scale)
    teacher = models.build_tiny_llama(shrink(LLAMA_13B, args.scale), tok, seed=1).eval()
    examples = batches.encode_records(records(args.prompts), tok, LANGUAGES, 256)
    prompt_ids = [to.prompt_ids(example) for example in examples]
    settings = {
        "beam": {"num_beams": args.beams},
        "sample": {"temperature": 1.0, "top_k": 0, "top_p": 1.0},
    }
    figures, same = {}, {}
    for name, generation in settings.items():
        runs = {}
        for mode, batch_size in (("batched", args.batch_size), ("single", 1)):
            job = to.GenerationJob(
                teacher_model="(in memory)",
                tokenizer_dir="(in memory)",
                train_files=[],
                out_dir="(none)",
                languages=LANGUAGES,
                generation=generation,
                max_length=256,
                max_new_tokens=args.max_new_tokens,
                seed=1,
                batch_size=batch_size,
            )
            runs[mode] = timed(teacher, prompt_ids, job, tok)
        same[name] = runs["batched"][0] == runs["single"][0]
        figures[name] = {
            mode: round(len(prompt_ids) / seconds, 3) for mode, (_, seconds) in runs.items()
        }
    if not same["sample"]:
        raise SystemExit("samples differ between batched and one-at-a-time generation")
    print(
        json.dumps(
            {
                "bench": "teacher_generation",
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                "threads": args.threads,
                "scale": f"1/{args.scale} of Llama 13B (teacher)",
                "teacher_params": params(teacher),
                "vocab_size": len(tok),
                "prompts": len(prompt_ids),
                "mean_prompt_tokens": round(sum(map(len, prompt_ids)) / len(prompt_ids), 1),
                "max_new_tokens": args.max_new_tokens,
                "batch_size": args.batch_size,
                "beams": args.beams,
                "sentences_per_second": figures,
                "beam_batched_vs_single": round(
                    figures["beam"]["batched"] / figures["beam"]["single"], 3
                ),
                "sample_batched_vs_single": round(
                    figures["sample"]["batched"] / figures["sample"]["single"], 3
                ),
                "beam_outputs_equal": same["beam"],
                "sample_outputs_equal": same["sample"],
            }
        )
    )


if __name__ == "__main__":
    main()
