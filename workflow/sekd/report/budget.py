"""The compute budget of a study, as measured (ACL Responsible NLP checklist, C1): per table row,
the parameters of the trained model, the GPUs its training ran on, and the hours its training and
its decoding took, from the Snakemake benchmark files (results/benchmarks/<rule>/...tsv: wall
seconds `s` and process CPU seconds `cpu_time`) and the run's train_summary.json (`devices`).

Torch-free: only JSON, CSV and the safetensors headers are read.
"""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path


def job_seconds(tsv: str | Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one job's Snakemake benchmark file (summed over its rows)."""
    with open(tsv, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{tsv}: an empty benchmark file")
    wall = sum(float(r["s"]) for r in rows)
    cpu = sum(float(r.get("cpu_time") or 0) for r in rows)
    return wall, cpu


def parameters(model_dir: str | Path) -> int:
    """The number of parameters in a saved model's safetensors files (their headers only)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors file")
    count = 0
    for path in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        count += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return count


def devices(summary: dict) -> tuple[int, str | None]:
    """(GPUs, their name) a run trained on, from its train_summary.json; (0, None) on CPU or
    for runs from before the summary recorded them."""
    d = summary.get("devices") or {}
    return int(d.get("gpus") or 0), d.get("gpu_name")


def _training_files(run: str, seed: int) -> tuple[Path, Path]:
    """(benchmark file, train_summary.json) of the training job of `run` (sft/<model> or
    kd/<teacher>/<variant>) and `seed` (rules sft and kd)."""
    return (
        Path(f"results/benchmarks/{run}/seed{seed}.tsv"),
        Path(f"results/models/{run}/seed{seed}/train_summary.json"),
    )


def row_budget(system: str, run: str, seeds: list[int]) -> dict:
    """One table row's budget over `seeds`: parameters, those trained (a LoRA run's adapter, else
    all), GPUs and their type, training wall and CPU hours, GPU hours (training wall time x GPUs),
    decoding wall hours."""
    train_wall = train_cpu = gpu_hours = decode_wall = 0.0
    gpus, gpu_name, params, trained = 0, None, None, None
    for seed in seeds:
        bench, summary_path = _training_files(run, seed)
        wall, cpu = job_seconds(bench)
        summary = json.loads(summary_path.read_text())
        gpus, gpu_name = devices(summary)
        train_wall, train_cpu = train_wall + wall, train_cpu + cpu
        gpu_hours += wall * gpus / 3600
        decodes = sorted(Path(f"results/benchmarks/decode/{run}/seed{seed}").rglob("*.tsv"))
        decode_wall += sum(job_seconds(p)[0] for p in decodes)
        params = parameters(summary_path.parent)
        trained = (summary.get("lora") or {}).get("trainable", params)
    return {
        "system": system,
        "run": run,
        "parameters": params,
        "trained_parameters": trained,
        "gpus": gpus,
        "gpu": gpu_name or "",
        "train_hours": round(train_wall / 3600, 4),
        "train_cpu_hours": round(train_cpu / 3600, 4),
        "gpu_hours": round(gpu_hours, 4),
        "decode_hours": round(decode_wall / 3600, 4),
    }


def study_total(benchmarks: str | Path = "results/benchmarks") -> dict:
    """Every job of the study so far: {"jobs", "wall_hours", "cpu_hours"} (wall time summed over
    jobs, i.e. as if they ran one after the other)."""
    files = sorted(Path(benchmarks).rglob("*.tsv"))
    seconds = [job_seconds(p) for p in files]
    return {
        "jobs": len(files),
        "wall_hours": round(sum(w for w, _ in seconds) / 3600, 4),
        "cpu_hours": round(sum(c for _, c in seconds) / 3600, 4),
    }
