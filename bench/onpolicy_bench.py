"""KD step time on the student's own samples (on-policy) vs on the gold batch (off-policy), at the
1/8-scale sizes of bench/store_bench.py, through the real training code (sekd.train.job.run).

    .venv/bin/python bench/onpolicy_bench.py [--steps 6] [--rounds 2] [--max-new-tokens 64]

Models, tokenizer and data as bench/store_bench.py (imported from it): Llama-1 7B (student) and
13B (teacher) shrunk by `--scale` (default 1/8: student 4 layers x 512, teacher 5 x 640, V =
4000), ALMA de-en pairs of 8-30 words. Two KD jobs on the same examples, teacher online: the
off-policy `forward_kd` (gold batches) and the on-policy `fd_rkl` (every optimizer step samples
one continuation per prompt from the current student, seeded; sekd.train.onpolicy), interleaved for
`--rounds` rounds. Step time = the median over all rounds of an optimizer step's wall time
(sekd.train.checkpoints' StepTimer; two warm-up steps dropped per run); `generation_share` = the
on-policy runs' seconds spent sampling / seconds of their steps (train_summary.json's
`onpolicy`). The students are random: their samples rarely stop at EOS, so nearly every sample
runs to `--max-new-tokens` (the worst case; `truncated_samples` says how many did). Prints one
JSON line with `step_time_onpolicy_vs_offpolicy`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

from store_bench import kd_job, kd_setup, records, steps

from sekd.plan.variants import Variant, make_variant
from sekd.train import job as train

STUDENT_SAMPLING = {"student_temperature": 1.0, "student_top_k": 0, "student_top_p": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    recs = records(args.steps * args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok, sizes, training = kd_setup(root, recs, args.batch_size, args.scale)
        variants = {
            "offpolicy": make_variant("forward_kd", {"lam": 0.5}),
            "onpolicy": make_variant("fd_rkl", STUDENT_SAMPLING),
        }

        def job(name: str, variant: Variant) -> train.TrainJob:
            return kd_job(
                root,
                name,
                variant,
                training,
                args.threads,
                teacher_model=str(root / "teacher"),
                sequences={"max_new_tokens": args.max_new_tokens},
            )

        wall = {mode: [] for mode in variants}
        cpu = {mode: [] for mode in variants}
        sampled = {"generation_seconds": 0.0, "step_seconds": 0.0, "samples": 0, "truncated": 0}
        for r in range(args.rounds):  # interleaved, so that drifts of a shared machine even out
            for mode, variant in variants.items():
                summary = train.run(job(f"{mode}-{r}", variant))
                wall[mode] += steps(summary, "step_seconds")
                cpu[mode] += steps(summary, "step_cpu_seconds")
                if mode == "onpolicy":
                    totals = summary["onpolicy"]
                    sampled["generation_seconds"] += totals["generation_seconds"]
                    sampled["step_seconds"] += totals["step_seconds"]
                    sampled["samples"] += totals["samples"]
                    sampled["truncated"] += totals["truncated_samples"]
        med = {mode: statistics.median(v) for mode, v in wall.items()}
        med_cpu = {mode: statistics.median(v) for mode, v in cpu.items()}
    print(
        json.dumps(
            {
                "bench": "onpolicy",
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                "threads": args.threads,
                "scale": f"1/{args.scale} of Llama 7B (student) and 13B (teacher)",
                **sizes,
                "vocab_size": len(tok),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "max_new_tokens": args.max_new_tokens,
                "variants": {mode: run.name for mode, run in variants.items()},
                "step_seconds": {m: round(v, 4) for m, v in med.items()},
                "step_cpu_seconds": {m: round(v, 4) for m, v in med_cpu.items()},
                "step_time_onpolicy_vs_offpolicy": round(med["onpolicy"] / med["offpolicy"], 3),
                "step_cpu_time_onpolicy_vs_offpolicy": round(
                    med_cpu["onpolicy"] / med_cpu["offpolicy"], 3
                ),
                "generation_share": round(
                    sampled["generation_seconds"] / sampled["step_seconds"], 3
                ),
                "samples": sampled["samples"],
                "truncated_samples": sampled["truncated"],
            }
        )
    )


if __name__ == "__main__":
    main()
