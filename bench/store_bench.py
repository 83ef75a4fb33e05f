"""KD step time with the teacher online vs read from a teacher store (sekd.teacher.store), at the
paper's teacher/student size ratio, through the real training code (sekd.train.job.run).

    .venv/bin/python bench/store_bench.py [--steps 12] [--scale 8] [--threads 1] [--rounds 3]

Models: Llama-1 7B (student) and 13B (teacher) shrunk by `--scale` in width, depth and
vocabulary, head size kept at 128 (default 1/8: student 4 layers x 512, MLP 1376; teacher 5 x 640,
MLP 1728; V = 4000): the teacher/student FLOP ratio stays ~1.9 as in the paper's 13B/7B. Seeded
random weights, a BPE of V tokens trained on ALMA de-en training pairs (the data mirror,
$SEKD_DATA_MIRROR or ../shared/data/alma; synthetic sentences if absent). The same sekd KD job runs
with the teacher online, from a sparse store (K = 64) and from a full store, on the same
examples, interleaved for `--rounds` rounds; step time = the median over all rounds of an
optimizer step's wall time (sekd.train.checkpoints' StepTimer, two warm-up steps dropped per run),
and the same for its process CPU time (steadier on a shared machine). Store build times are reported
too (paid once per teacher, not per run). Prints one JSON line with
`step_time_store_vs_online` (the sparse store; the full store's and the CPU-time ratios beside
it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

from sekd import models  # noqa: E402
from sekd.data import alma as data  # noqa: E402
from sekd.data import prompts  # noqa: E402
from sekd.data import tokenizer as tokenizers  # noqa: E402
from sekd.plan.variants import Variant, make_variant  # noqa: E402
from sekd.teacher import store as ts  # noqa: E402
from sekd.train import job as train  # noqa: E402

LANGUAGES = {"en": "English", "de": "German"}
# Llama-1 7B and 13B (hidden, MLP, layers, heads; V = 32000), to be divided by --scale
LLAMA_7B = (4096, 11008, 32, 32)
LLAMA_13B = (5120, 13824, 40, 40)


def shrink(shape: tuple[int, int, int, int], scale: int) -> dict:
    hidden, mlp, layers, heads = shape
    return {
        "hidden_size": hidden // scale,
        "intermediate_size": mlp // scale,
        "num_hidden_layers": max(1, layers // scale),
        "num_attention_heads": max(1, heads // scale),
    }


def records(n: int) -> list[dict]:
    mirror = Path(os.environ.get("SEKD_DATA_MIRROR") or ROOT.parent / "shared/data/alma")
    root = mirror / "human_written_data"
    if (root / data.train_files("de-en")[0]).is_file():
        pairs = data.load_train_pairs(root, "de-en")
        pairs = [p for p in pairs if 8 <= len(p[0].split()) <= 30]
        pairs = data.take_slice(pairs, n, seed=1)
    else:
        rng = random.Random(1)
        words = ["Haus", "Katze", "schnell", "heute", "wir", "gehen", "nach", "Berlin", "und"]
        pairs = [
            (" ".join(rng.choices(words, k=15)), " ".join(rng.choices(words, k=15)))
            for _ in range(n)
        ]
    return data.build_train_examples({"de-en": pairs})[:n]


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def steps(summary: dict, key: str, warmup: int = 2) -> list[float]:
    """Per-step times of one run (`key`: step_seconds or step_cpu_seconds), warm-up dropped."""
    return summary[key][warmup:]


def tokenizer(scale: int):
    """The BPE of the benchmarks: V = 32000 / scale, trained on 2000 de-en training pairs."""
    texts = [
        prompts.build_prompt(r["source"], r["direction"], LANGUAGES) + r["target"]
        for r in records(2000)
    ]
    return tokenizers.train_bpe(texts, vocab_size=32000 // scale, min_frequency=2)


def kd_setup(root: Path, recs: list[dict], batch_size: int, scale: int) -> tuple:
    """(tokenizer, parameter counts, the jobs' `training` section) of a KD benchmark in `root`:
    the shrunk student and teacher saved in root/student and root/teacher, `recs` in
    root/train.jsonl, one epoch of `batch_size` without accumulation, evaluation or checkpoints."""
    tok = tokenizer(scale)
    student = models.build_tiny_llama(shrink(LLAMA_7B, scale), tok, seed=0)
    teacher = models.build_tiny_llama(shrink(LLAMA_13B, scale), tok, seed=1)
    sizes = {"student_params": params(student), "teacher_params": params(teacher)}
    models.save(student, tok, root / "student")
    models.save(teacher, tok, root / "teacher")
    data.write_jsonl(recs, root / "train.jsonl")
    training = {
        "epochs": 1,
        "batch_size": batch_size,
        "per_device_batch_size": batch_size,
        "learning_rate": 1e-4,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "weight_decay": 0.0,
        "max_length": 256,
        "eval_steps": None,
        "logging_steps": 1000,
        "select_best_sft": False,
        "save_steps": None,
        "deepspeed": None,
        "nproc_per_node": None,
    }
    return tok, sizes, training


def kd_job(root: Path, name: str, run: Variant, training: dict, threads: int, **fields):
    """A KD TrainJob of the benchmark set up by `kd_setup` in `root`, its output in root/name:
    the run `run` (its values, as the plan gives them)."""
    return train.TrainJob(
        variant=run.name,
        plan=run,
        base_model=str(root / "student"),
        tokenizer_dir=str(root / "student"),
        train_files=[str(root / "train.jsonl")],
        out_dir=str(root / name),
        checkpoint_dir=str(root / f"{name}-checkpoints"),
        languages=LANGUAGES,
        training=training,
        seed=1,
        threads=threads,
        **fields,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--scale", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    recs = records(args.steps * args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tok, sizes, training = kd_setup(root, recs, args.batch_size, args.scale)
        variant = make_variant("sekd", {"lam": 0.5, "beta": 0.5, "gamma": 0.4})

        def job(name: str, **teacher) -> train.TrainJob:
            return kd_job(root, name, variant, training, args.threads, **teacher)

        builds = {}
        for mode in ("sparse", "full"):
            start = time.perf_counter()
            meta = ts.build(
                ts.StoreJob(
                    teacher_model=str(root / "teacher"),
                    student_model=str(root / "student"),
                    tokenizer_dir=str(root / "student"),
                    train_files=[str(root / "train.jsonl")],
                    languages=LANGUAGES,
                    max_length=training["max_length"],
                    out_dir=str(root / f"store-{mode}"),
                    mode=mode,
                    samples=args.samples,
                    batch_size=args.batch_size,
                    threads=args.threads,
                )
            )
            builds[mode] = {
                "seconds": round(time.perf_counter() - start, 2),
                "mib": round(meta["bytes"] / 2**20, 2),
                "tokens": meta["num_tokens"],
            }
        teachers = {
            "online": {"teacher_model": str(root / "teacher")},
            "sparse": {"teacher_store": str(root / "store-sparse")},
            "full": {"teacher_store": str(root / "store-full")},
        }
        wall = {mode: [] for mode in teachers}
        cpu = {mode: [] for mode in teachers}
        for r in range(args.rounds):  # interleaved, so that drifts of a shared machine even out
            for mode, teacher in teachers.items():
                summary = train.run(job(f"{mode}-{r}", **teacher))
                wall[mode] += steps(summary, "step_seconds")
                cpu[mode] += steps(summary, "step_cpu_seconds")
        med = {mode: statistics.median(v) for mode, v in wall.items()}
        med_cpu = {mode: statistics.median(v) for mode, v in cpu.items()}
    print(
        json.dumps(
            {
                "bench": "teacher_store",
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
                "threads": args.threads,
                "scale": f"1/{args.scale} of Llama 7B (student) and 13B (teacher)",
                **sizes,
                "vocab_size": len(tok),
                "steps": args.steps,
                "batch_size": args.batch_size,
                "rounds": args.rounds,
                "step_seconds": {m: round(v, 4) for m, v in med.items()},
                "step_cpu_seconds": {m: round(v, 4) for m, v in med_cpu.items()},
                "store_build": builds,
                "step_time_store_vs_online": round(med["sparse"] / med["online"], 3),
                "step_time_full_store_vs_online": round(med["full"] / med["online"], 3),
                "step_cpu_time_store_vs_online": round(med_cpu["sparse"] / med_cpu["online"], 3),
                "step_cpu_time_full_store_vs_online": round(med_cpu["full"] / med_cpu["online"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
