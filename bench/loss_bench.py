"""Loss benchmark, forward + backward: F.cross_entropy vs sekd.train.losses.distill_loss, reference
(naive autograd, chunk_size=None) and chunked (the default), for every objective.

    .venv/bin/python bench/loss_bench.py [--quick] [--threads 1] [--device cpu|cuda]
        [--dtype float32|bfloat16] [--configs 32000:4096,151936:1024] [--objectives a,b]

Configurations (vocabulary V x tokens N, fp32 unless --dtype): the full run measures V=32000 with
N=4096 (131M logits, 500 MiB in fp32) and V=151936 (Qwen2.5's) with N=1024 (156M logits, 594 MiB);
the reference path peaks at ~12 such tensors, so larger N do not fit next to the other jobs of a
23 GiB machine. Every declared objective (the paper's eight and the seeds' baselines: all sixteen
have a chunked kernel). --quick: V=32000, N=1024 (about 1.5 minutes).
Inputs: student logits [N/512, 512, V] ~ N(0, 2²) (a leaf requiring grad), teacher logits =
student + N(0, 1) noise (correlated, as a teacher is), labels uniform, none ignored.
Hyper-parameters: λ = 0.5, β = 0.5, sekd's Γ = the median difficulty d of the batch (half the
tokens hard, half easy), sekd_topk K = 30%. Torch intra-op threads: --threads, default 1 (the
project's CPU jobs run with one; on a 2-core machine shared with other jobs, 2-thread OpenMP
timings are dominated by a descheduled thread stalling every parallel region, which distorts code
made of many small ops, like the chunked loss, far more than F.cross_entropy's few large ones).

Method. Every (implementation, objective, configuration) runs in a fresh subprocess, which
allocates the inputs, then runs fwd+bwd (`loss.backward()`, the student's .grad reset to None
before each run) once as a warm-up and `repeats` times more (--repeats, default 3); time = the
median wall time of the repeats, cpu time = the median process CPU time (less sensitive to other
jobs). The slow reference path runs --naive-repeats times (default 1) without a warm-up: its
figures are for memory, its time is indicative. Peak memory = the peak over all runs of the
memory above what is held once the inputs exist, the gradient included: on CPU the process's
peak resident set (VmHWM in /proc/self/status, reset by writing 5 to /proc/self/clear_refs once
the inputs are allocated) minus its resident set then; on CUDA torch.cuda.max_memory_allocated()
minus memory_allocated() (after reset_peak_memory_stats). Ratios: time_vs_ce = chunked time /
F.cross_entropy time (on the same student logits and labels), cpu_time_vs_ce the same on CPU
time, peak_mem_vs_ce = chunked peak / F.cross_entropy peak, naive_peak_mem_vs_ours = reference
peak / chunked peak. CPU timings on a shared machine are noisy (other jobs); the memory figures
are deterministic to a few MiB.

The last line printed is one JSON object: {"bench": "loss", "device", "dtype", "threads",
"torch", "V", "tokens", "objectives": {name: {"time_vs_ce", "peak_mem_vs_ce",
"naive_peak_mem_vs_ours", "cpu_time_vs_ce"}}, "configs": [every configuration with its absolute
times (s) and peaks (MiB)]}; the top-level V/tokens are the largest configuration with V = 32000
(or the first one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
from sekd.plan.objectives import OBJECTIVES as DECLARED  # noqa: E402  (torch-free)

OBJECTIVES = list(DECLARED)  # all sixteen, each with a chunked kernel (sekd.train.chunked)
FULL = [(32000, 4096), (151936, 1024)]  # Llama-1's vocabulary, and Qwen2.5's
QUICK = [(32000, 1024)]
NAIVE_FP32_COPIES = 12  # rough peak of the reference path, in fp32 [N, V] tensors
MIB = 1 << 20


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))


def worker(spec: dict) -> dict:
    """One measurement (run in a fresh process); returns {"time_s", "peak_mib", ...}."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    sys.path.insert(0, str(ROOT / "workflow"))
    from sekd.train.losses import distill_loss

    torch.set_num_threads(spec["threads"])

    V, N, impl, objective = spec["V"], spec["N"], spec["impl"], spec["objective"]
    device = torch.device(spec["device"])
    dtype = getattr(torch, spec["dtype"])
    T = min(N, 512)
    B = N // T
    g = torch.Generator(device="cpu").manual_seed(0)
    s = torch.randn(B, T, V, generator=g).mul_(2.0)
    t = torch.randn(B, T, V, generator=g).add_(s)
    labels = torch.randint(0, V, (B, T), generator=g)
    s, t, labels = s.to(device, dtype), t.to(device, dtype), labels.to(device)
    s.requires_grad_()
    kw: dict = {}
    if objective == "sekd_topk":
        kw["top_k_percent"] = 30.0
    if objective == "sekd":  # Γ = the median d: half the tokens hard
        with torch.no_grad():
            d = distill_loss(s, t, labels, "noevo_kd").difficulty
        kw["gamma"] = float(d.flatten().median())
        del d
    chunk = spec.get("chunk_size", "auto")

    def step() -> None:
        s.grad = None
        if impl == "ce":
            loss = F.cross_entropy(s.view(-1, V), labels.view(-1))
        else:
            size = None if impl == "naive" else chunk
            loss = distill_loss(s, t, labels, objective, chunk_size=size, **kw).loss
        loss.backward()

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _status_kib("VmRSS") * 1024
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    times, cpu_times = [], []
    warmup = spec.get("warmup", True)
    for r in range(spec["repeats"] + warmup):
        if cuda:
            torch.cuda.synchronize()
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if cuda:
            torch.cuda.synchronize()
        if r or not warmup:  # run 0 is the warm-up
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak = torch.cuda.max_memory_allocated() if cuda else _status_kib("VmHWM") * 1024
    return {
        "time_s": statistics.median(times),
        "cpu_s": statistics.median(cpu_times),
        "peak_mib": (peak - base) / MIB,
    }


def measure(spec: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    cpu = platform.processor() or "cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"cpu: {cpu}, {os.cpu_count()} cores"


def available_bytes() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemAvailable:\s+(\d+)", text, re.M).group(1)) * 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="V=32000, N=1024 only")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    ap.add_argument("--naive-repeats", type=int, default=1, help="the same, reference path")
    ap.add_argument("--configs", help="V:N,... (default: the full or --quick set)")
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--chunk-size", default="auto", help="rows per chunk (default: auto)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import torch

    chunk = args.chunk_size if args.chunk_size == "auto" else int(args.chunk_size)
    objectives = args.objectives.split(",")
    common = {"device": args.device, "dtype": args.dtype, "repeats": args.repeats}
    common["threads"] = args.threads
    plan = QUICK if args.quick else FULL
    if args.configs:
        plan = [tuple(int(x) for x in c.split(":")) for c in args.configs.split(",")]
    configs = []
    for V, N in plan:
        base = {**common, "V": V, "N": N, "objective": "sft"}
        ce = measure({**base, "impl": "ce"})
        row = {"V": V, "tokens": N, "ce": ce, "objectives": {}}
        naive_ok = 0.7 * available_bytes() > NAIVE_FP32_COPIES * N * V * 4
        print(f"\nV={V} N={N}  F.cross_entropy: {ce['time_s']:.3f} s, {ce['peak_mib']:.0f} MiB")
        head = ("time s", "xCE", "cpu xCE", "MiB", "xCE", "naive s", "naive MiB", "naive/us")
        print(("{:>16}" + " {:>8}" * 8).format("objective", *head))
        for objective in objectives:
            spec = {**base, "objective": objective}
            ours = measure({**spec, "impl": "chunked", "chunk_size": chunk})
            naive = None
            if naive_ok:
                naive_runs = {"repeats": args.naive_repeats, "warmup": False}
                naive = measure({**spec, "impl": "naive", **naive_runs})
            entry = {
                "time_s": round(ours["time_s"], 4),
                "cpu_s": round(ours["cpu_s"], 4),
                "peak_mib": round(ours["peak_mib"], 1),
                "time_vs_ce": round(ours["time_s"] / ce["time_s"], 3),
                "cpu_time_vs_ce": round(ours["cpu_s"] / ce["cpu_s"], 3),
                "peak_mem_vs_ce": round(ours["peak_mib"] / ce["peak_mib"], 3),
            }
            if naive is not None:
                entry["naive_time_s"] = round(naive["time_s"], 4)
                entry["naive_peak_mib"] = round(naive["peak_mib"], 1)
                entry["naive_peak_mem_vs_ours"] = round(naive["peak_mib"] / ours["peak_mib"], 2)
            row["objectives"][objective] = entry
            cells = [ours["time_s"], entry["time_vs_ce"], entry["cpu_time_vs_ce"]]
            cells += [ours["peak_mib"], entry["peak_mem_vs_ce"]]
            if naive is not None:
                cells += [naive["time_s"], naive["peak_mib"], entry["naive_peak_mem_vs_ours"]]
            print(
                f"{objective:>16}" + "".join(f" {x:8.3g}" for x in cells),
                flush=True,
            )
        row["ce"] = {k: round(v, 4) for k, v in ce.items()}
        configs.append(row)
    at_32k = [c for c in configs if c["V"] == 32000] or configs
    top = max(at_32k, key=lambda c: c["tokens"])
    keys = ("time_vs_ce", "peak_mem_vs_ce", "naive_peak_mem_vs_ours", "cpu_time_vs_ce")
    result = {
        "bench": "loss",
        "device": machine(args.device),
        "dtype": args.dtype,
        "threads": args.threads,
        "torch": torch.__version__,
        "V": top["V"],
        "tokens": top["tokens"],
        "objectives": {name: {k: e.get(k) for k in keys} for name, e in top["objectives"].items()},
        "configs": configs,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
