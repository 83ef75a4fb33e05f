"""One-call GPU check (issue 12.6): paper-scale code paths on one GPU, with one JSON summary.

    python bench/gpu_check.py [--dry] [--out DIR] [--parts loss,decode,vllm,train]

Run on the lent H200 through `bash bench/gpu_check.sh` (which installs the wheels that travel in
.whl/); `--dry` runs the same code paths on CPU with tiny sizes (tests/test_gpu_check.py).

Parts, each guarded (a failing part records its error and the others still run), in the order
loss, decode, vllm, train:
* train: a bf16 ZeRO-3 SFT run of a ~1.1B Llama-architecture student, then KD runs (forward_kd,
  sekd) from a ~2.1B teacher, both built from config with seeded random weights, each through
  `sekd.train.job.run` with config/deepspeed/zero3_bf16.json on one GPU (torchrun, NCCL): step times
  (the Trainer's StepTimer) and each rank's peak GPU memory (bench/gpu_probe). Dry: tiny models,
  fp32, config/deepspeed/zero3_fp32_cpu.json, gloo.
* loss: forward + backward of `sekd.train.losses.distill_loss` (chunked, the default) for forward_kd
  and sekd against F.cross_entropy on the same logits (upcast to fp32, as transformers' causal-LM
  loss does), at V = 32000 and 128256 (bf16 on the GPU):
  median time and peak memory above the inputs, and the time of issue 12's bandwidth floor,
  14·V bytes of logits traffic per token, at the device-to-device copy bandwidth measured here.
* decode: batched greedy decoding with `sekd.evaluate.decode.translate` of the trained-size student
  (bf16): generated tokens per second.
* vllm: the same through `sekd.evaluate.decode.translate_vllm` when vLLM imports, else skipped with
  a note.

The summary, $OUT/gpu_check.json (default ./gpu_check_out), is written after every part with
"complete": false, and with "complete": true once all parts ran.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402, N812
import transformers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from sekd import models  # noqa: E402
from sekd.data import alma as data  # noqa: E402
from sekd.data import prompts  # noqa: E402
from sekd.data import tokenizer as tokenizers  # noqa: E402
from sekd.evaluate import decode  # noqa: E402
from sekd.plan.variants import Variant, make_variant  # noqa: E402
from sekd.train import job as train  # noqa: E402
from sekd.train.losses import distill_loss  # noqa: E402

MIB = 1 << 20
LANGUAGES = {"de": "German", "en": "English"}
KD = {"lam": 0.5, "beta": 0.5, "gamma": 0.4, "top_k_percent": 20}  # config/config.yaml kd
PROBE = ROOT / "bench" / "gpu_probe"

# ~1.1B student (TinyLlama's shape) and ~2.1B teacher; vocabulary 32000 (Llama-1).
GPU = {
    "student": {"hidden_size": 2048, "intermediate_size": 5632, "layers": 22, "heads": 32, "kv": 4},
    "teacher": {"hidden_size": 2560, "intermediate_size": 6912, "layers": 28, "heads": 20, "kv": 4},
    "vocab": 32000,
    "examples": 256,
    "words": (30, 80),
    "tokenizer_vocab": 4000,
    "training": {"steps": 6, "per_device_batch_size": 4, "max_length": 512},
    "dtype": "bfloat16",
    "deepspeed": "config/deepspeed/zero3_bf16.json",
    "loss": {"V": [32000, 128256], "tokens": 8192, "repeats": 5},
    "decode": {"sentences": 64, "batch_size": 32, "max_new_tokens": 64},
}
DRY = {
    "student": {"hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 4, "kv": 2},
    "teacher": {"hidden_size": 48, "intermediate_size": 96, "layers": 2, "heads": 4, "kv": 2},
    "vocab": 512,
    "examples": 24,
    "words": (3, 8),
    "tokenizer_vocab": 400,
    "training": {"steps": 2, "per_device_batch_size": 2, "max_length": 256},
    "dtype": "float32",
    "deepspeed": "config/deepspeed/zero3_fp32_cpu.json",
    "loss": {"V": [320, 1283], "tokens": 256, "repeats": 2},
    "decode": {"sentences": 8, "batch_size": 4, "max_new_tokens": 8},
}
WORDS = tuple(
    [
        "Haus",
        "Katze",
        "schnell",
        "heute",
        "wir",
        "gehen",
        "nach",
        "Berlin",
        "und",
        "der",
        "die",
        "das",
        "ist",
        "nicht",
        "mit",
        "einem",
        "Zug",
        "Wetter",
        "morgen",
        "Stadt",
        "Fluss",
        "Brücke",
        "Arbeit",
        "Buch",
        "lesen",
        "schreiben",
        "spielen",
        "Freund",
    ]
)


class Context:
    """What the parts share: sizes, device, a scratch folder, and the models once built."""

    def __init__(self, sizes: dict, device: torch.device, work: Path):
        self.sizes, self.device, self.work = sizes, device, work
        self._built: tuple[Path, Path, list[str]] | None = None
        self.parameters: dict[str, int] = {}

    def models(self) -> tuple[Path, Path, list[str]]:
        """(student dir, teacher dir, source sentences): built once, on first use."""
        if self._built is None:
            self._built = _build(self)
        return self._built


def _sentences(n: int, words: tuple[int, int], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) for _ in range(n)]


def _llama(shape: dict, vocab: int, tok) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv"],
        max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def _build(ctx: Context) -> tuple[Path, Path, list[str]]:
    """Training data, a tokenizer, and the student and teacher saved with seeded random weights
    (initialised on the device, saved in the run's dtype)."""
    sizes = ctx.sizes
    sources = _sentences(sizes["examples"], sizes["words"], seed=1)
    targets = _sentences(sizes["examples"], sizes["words"], seed=2)
    records = data.build_train_examples({"de-en": list(zip(sources, targets, strict=True))})
    data.write_jsonl(records, ctx.work / "train.jsonl")
    texts = [
        prompts.build_prompt(r["source"], r["direction"], LANGUAGES) + r["target"] for r in records
    ]
    tok = tokenizers.train_bpe(texts, vocab_size=sizes["tokenizer_vocab"], min_frequency=1)
    tok.save_pretrained(ctx.work / "tokenizer")
    tok = tokenizers.load(ctx.work / "tokenizer")
    dtype = models.torch_dtype(sizes["dtype"])
    dirs = []
    for seed, name in enumerate(("student", "teacher")):
        torch.manual_seed(seed)
        with ctx.device:
            model = _llama(sizes[name], sizes["vocab"], tok).to(dtype)
        ctx.parameters[name] = sum(p.numel() for p in model.parameters())
        models.save(model, tok, ctx.work / name)
        del model
        dirs.append(ctx.work / name)
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return dirs[0], dirs[1], sources


def _peaks(folder: Path) -> dict:
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return {
        "cuda_peak_mib": round(max((r["cuda_peak_mib"] for r in records), default=0.0), 1),
        "rss_peak_mib": round(max((r["rss_peak_mib"] for r in records), default=0.0), 1),
        "processes": len(records),
    }


def _train_once(ctx: Context, run: Variant | None, teacher: Path | None) -> dict:
    """One training run: SFT (`run` None) or the KD run `run` (its values, as the plan gives
    them) from `teacher`."""
    variant = run.name if run else "sft"
    student, _, _ = ctx.models()
    sizes, gpu = ctx.sizes, ctx.device.type == "cuda"
    t = sizes["training"]
    peaks = Path(tempfile.mkdtemp(dir=ctx.work, prefix="peaks-"))
    out = ctx.work / f"run-{variant}"
    training = {
        "epochs": 1,
        "batch_size": t["per_device_batch_size"],
        "per_device_batch_size": t["per_device_batch_size"],
        "learning_rate": 1e-5,
        "warmup_ratio": 0.03,
        "lr_scheduler": "cosine",
        "weight_decay": 0.0,
        "max_length": t["max_length"],
        "eval_steps": None,
        "logging_steps": 1,
        "select_best_sft": False,
        "save_steps": None,
        "deepspeed": str(ROOT / sizes["deepspeed"]),
        "nproc_per_node": 1,
    }
    job = train.TrainJob(
        variant=variant,
        plan=run,
        base_model=str(student),
        tokenizer_dir=str(ctx.work / "tokenizer"),
        train_files=[str(_first_examples(ctx, t["steps"] * t["per_device_batch_size"]))],
        out_dir=str(out),
        checkpoint_dir=str(out) + "-checkpoints",
        languages=LANGUAGES,
        training=training,
        seed=1,
        dtype=sizes["dtype"],
        teacher_model=str(teacher) if teacher else None,
        teacher_dtype=sizes["dtype"],
        threads=max(1, (os.cpu_count() or 2) // 2),
        gpus_per_node=1 if gpu else 0,
    )
    env = {"SEKD_PEAK_DIR": str(peaks), "PYTHONPATH": _with_probe(os.environ.get("PYTHONPATH"))}
    start = time.perf_counter()
    with _environ(env):
        summary = train.run(job)
    wall = time.perf_counter() - start
    steps = summary["step_seconds"]
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    shutil.rmtree(out, ignore_errors=True)  # the weights are not needed: free the disk
    return {
        "objective": summary["objective"],
        "global_steps": summary["global_steps"],
        "step_seconds": steps,
        "median_step_s": statistics.median(steps[1:] or steps),  # step 1 holds the warm-up
        "tokens_per_step_max": t["per_device_batch_size"] * t["max_length"],
        "losses": losses,
        "wall_s": round(wall, 2),
        **_peaks(peaks),
    }


def _first_examples(ctx: Context, n: int) -> Path:
    path = ctx.work / f"train-{n}.jsonl"
    if not path.exists():
        rows = (ctx.work / "train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
        data.write_jsonl([json.loads(r) for r in rows], path)
    return path


def _with_probe(pythonpath: str | None) -> str:
    return os.pathsep.join(p for p in (str(PROBE), pythonpath) if p)


@contextlib.contextmanager
def _environ(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def part_train(ctx: Context) -> dict:
    """SFT, then forward_kd and sekd from the teacher, each guarded on its own."""
    _, teacher, _ = ctx.models()
    runs = {
        "sft": (None, None),
        "forward_kd": (make_variant("forward_kd", KD), teacher),
        "sekd": (make_variant("sekd", KD), teacher),
    }
    result: dict = {
        "student_parameters": ctx.parameters["student"],
        "teacher_parameters": ctx.parameters["teacher"],
        "deepspeed_config": ctx.sizes["deepspeed"],
        "dtype": ctx.sizes["dtype"],
    }
    for name, (variant, from_teacher) in runs.items():
        result[name] = _guarded(lambda v=variant, f=from_teacher: _train_once(ctx, v, f))
    result["ok"] = all(result[n]["ok"] for n in runs)  # the part fails when one run does
    return result


def _bandwidth(device: torch.device) -> float:
    """Bytes per second of a device-to-device copy (bytes read + written)."""
    n = (1 << 28) if device.type == "cuda" else (1 << 24)
    a = torch.empty(n, dtype=torch.uint8, device=device)
    b = torch.empty_like(a)
    b.copy_(a)
    _sync(device)
    start = time.perf_counter()
    for _ in range(10):
        b.copy_(a)
    _sync(device)
    return 2 * n * 10 / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _loss_case(V: int, N: int, impl: str, objective: str, ctx: Context, repeats: int) -> dict:
    """Median fwd+bwd time and peak memory above the inputs of one loss on [N/512, 512, V]
    logits (student ~ N(0, 2²), teacher = student + N(0, 1)); as bench/loss_bench.py's worker."""
    device = ctx.device
    dtype = models.torch_dtype(ctx.sizes["dtype"])
    T = min(N, 512)
    g = torch.Generator(device=device).manual_seed(0)
    s = torch.randn(N // T, T, V, generator=g, device=device, dtype=dtype).mul_(2.0)
    t = torch.randn(N // T, T, V, generator=g, device=device, dtype=dtype).add_(s)
    labels = torch.randint(0, V, (N // T, T), generator=g, device=device)
    s.requires_grad_()
    kw = {}
    if objective == "sekd":  # Γ = the median difficulty: half the tokens hard
        with torch.no_grad():
            kw["gamma"] = float(distill_loss(s, t, labels, "noevo_kd").difficulty.median())

    def step() -> None:
        s.grad = None
        if impl == "ce":
            loss = F.cross_entropy(s.view(-1, V).float(), labels.view(-1))
        else:
            loss = distill_loss(s, t, labels, objective, **kw).loss
        loss.backward()

    step()  # warm-up
    _sync(device)
    s.grad = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_kib("VmRSS") * 1024
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_kib("VmHWM") * 1024
    return {"time_s": statistics.median(times), "peak_mib": round((peak - base) / MIB, 1)}


def part_loss(ctx: Context) -> dict:
    spec = ctx.sizes["loss"]
    bandwidth = _bandwidth(ctx.device)
    result: dict = {"tokens": spec["tokens"], "dtype": ctx.sizes["dtype"]}
    result["copy_bandwidth_gb_s"] = round(bandwidth / 1e9, 1)
    for V in spec["V"]:
        floor = 14 * V * spec["tokens"] / bandwidth
        ce = _loss_case(V, spec["tokens"], "ce", "sft", ctx, spec["repeats"])
        row: dict = {"cross_entropy": ce, "floor_s": floor}
        for objective in ("forward_kd", "sekd"):
            ours = _loss_case(V, spec["tokens"], "chunked", objective, ctx, spec["repeats"])
            ours["time_vs_ce"] = round(ours["time_s"] / ce["time_s"], 3)
            ours["time_vs_floor"] = round(ours["time_s"] / floor, 3)
            ours["peak_mem_vs_ce"] = round(ours["peak_mib"] / max(ce["peak_mib"], 1e-3), 3)
            row[objective] = ours
        result[f"V{V}"] = row
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def _decode_sources(ctx: Context) -> tuple[Path, list[str], object]:
    student, _, sources = ctx.models()
    n = ctx.sizes["decode"]["sentences"]
    return student, sources[:n], tokenizers.load(ctx.work / "tokenizer")


def part_decode(ctx: Context) -> dict:
    student, sources, tok = _decode_sources(ctx)
    spec = ctx.sizes["decode"]
    model = models.load_causal_lm(student, ctx.sizes["dtype"]).to(ctx.device)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    decode.translate(model, tok, sources[:4], "de-en", LANGUAGES, max_new_tokens=4, batch_size=4)
    stats: dict[str, float] = {}
    _sync(ctx.device)
    start = time.perf_counter()
    decode.translate(
        model,
        tok,
        sources,
        "de-en",
        LANGUAGES,
        max_new_tokens=spec["max_new_tokens"],
        batch_size=spec["batch_size"],
        stats=stats,
    )
    _sync(ctx.device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / MIB if ctx.device.type == "cuda" else None
    del model
    return {
        **spec,
        "generated_tokens": int(stats["generated_tokens"]),
        "seconds": round(seconds, 3),
        "tokens_per_s": round(stats["generated_tokens"] / seconds, 1),
        "cuda_peak_mib": peak,
    }


def part_vllm(ctx: Context) -> dict:
    if importlib.util.find_spec("vllm") is None:
        return {
            "skipped": "vllm does not import here: no vLLM wheel travelled (its wheel and its "
            "CUDA libraries exceed what a device call carries)"
        }
    if ctx.device.type != "cuda":
        return {"skipped": "vLLM needs a GPU"}
    student, sources, tok = _decode_sources(ctx)
    spec = ctx.sizes["decode"]
    start = time.perf_counter()
    hyps = decode.translate_vllm(
        str(student),
        tok,
        sources,
        "de-en",
        LANGUAGES,
        max_new_tokens=spec["max_new_tokens"],
        dtype=ctx.sizes["dtype"],
    )
    seconds = time.perf_counter() - start
    return {"sentences": len(hyps), "seconds_with_engine_start": round(seconds, 3)}


# The short parts first: if the 8-minute limit stops the training runs, their figures are written.
PARTS = {"loss": part_loss, "decode": part_decode, "vllm": part_vllm, "train": part_train}


def _guarded(fn) -> dict:
    start = time.perf_counter()
    try:
        result = {"ok": True, **fn()}
    except Exception as error:  # every part records its own failure; the others still run
        result = {
            "ok": False,
            "error": f"{type(error).__name__}: {error}"[:4000],
            "traceback": traceback.format_exc()[-4000:],
        }
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


def _environment(device: torch.device) -> dict:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpus": os.cpu_count(),
        "device": str(device),
    }
    for name in ("deepspeed", "accelerate", "vllm"):
        try:
            env[name] = __import__(name).__version__
        except Exception as error:
            env[name] = f"not importable: {type(error).__name__}"
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_mib"] = torch.cuda.get_device_properties(0).total_memory // MIB
    return env


def _write(summary: dict, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes, gloo (the test)")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out")
    parser.add_argument("--parts", default=",".join(PARTS))
    args = parser.parse_args(argv)
    dry = args.dry or os.environ.get("SEKD_GPU_CHECK_DRY") == "1"
    if not dry and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --dry for the CPU mode")
    device = torch.device("cpu" if dry else "cuda")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_check.json"
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; known: {list(PARTS)}")
    summary: dict = {"check": "gpu", "mode": "dry" if dry else "gpu", "complete": False}
    summary["environment"] = _environment(device)
    summary["parts"] = {}
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sekd-gpu-check-"))
    try:
        ctx = Context(DRY if dry else GPU, device, work)
        for name in parts:
            print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
            summary["parts"][name] = _guarded(lambda name=name: PARTS[name](ctx))
            summary["seconds"] = round(time.perf_counter() - started, 1)
            _write(summary, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary["complete"] = True
    _write(summary, path)
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
