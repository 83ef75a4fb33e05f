"""How faithful a teacher store is to the online teacher (sekd.teacher_store).

`compare_losses` runs the SFT'd student and the online teacher on a seeded sample of training
batches and, per KD objective, computes the loss (eqs. 3-10) with the teacher's exact logits and
with the store's distribution: the loss difference, the cosine between the two gradients w.r.t.
the student logits, and the agreement of the hard/easy split (eqs. 5-9; with and without the
exact-entropy correction of d). `fidelity_report` adds the BLEU difference of KD runs trained
from the online teacher and from the store; `to_markdown` renders both.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from pathlib import Path


def _per_batch(student_logits, teacher, labels, objective, kwargs, offset=None):
    """(DistillOutput, gradient of the loss sum w.r.t. the student logits)."""
    import torch

    from sekd.losses import distill_loss

    s = student_logits.detach().requires_grad_()
    out = distill_loss(s, teacher, labels, objective, difficulty_offset=offset, **kwargs)
    (grad,) = torch.autograd.grad(out.loss_sum, s)
    return out, grad


def compare_losses(
    *,
    teacher_model: str,
    store_dir: str,
    student_model: str,
    tokenizer_dir: str,
    train_files: list[str],
    languages: dict[str, str],
    max_length: int,
    objectives: list[str],
    kd: dict,
    examples: int,
    batch_size: int,
    teacher_dtype: str = "float32",
    trust_remote_code: bool = False,
    threads: int = 1,
    seed: int = 0,
) -> dict:
    """Online teacher vs store on `examples` training examples (a seeded sample)."""
    import torch
    from tqdm import tqdm

    from sekd import data, models
    from sekd import tokenizer as tokenizers
    from sekd.logs import configure_torch_threads
    from sekd.teacher_store import TeacherStore, teacher_inputs
    from sekd.train import PadCollator, encode_records
    from sekd.variants import make_variant

    configure_torch_threads(threads)
    tok = tokenizers.load(tokenizer_dir)
    records = [r for path in train_files for r in data.read_jsonl(path)]
    encoded = encode_records(records, tok, languages, max_length)
    store = TeacherStore(store_dir)
    student = models.load_causal_lm(student_model, "float32", trust_remote_code).eval()
    V = student.config.vocab_size
    store.check(encoded, V)
    teacher = models.load_causal_lm(teacher_model, teacher_dtype, trust_remote_code).eval()
    chosen = sorted(random.Random(seed).sample(range(len(encoded)), min(examples, len(encoded))))
    collate = PadCollator(tok.pad_token_id, store)
    variants = [make_variant(o, kd) for o in objectives]
    stats: dict[str, dict] = {v.objective: defaultdict(float) for v in variants}
    batches = [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)]
    for batch in tqdm(batches, desc="fidelity", mininterval=5):
        inputs = collate([{**encoded[i], "index": i} for i in batch])
        stored = {k: v for k, v in inputs.items() if k.startswith("store_")}
        labels = inputs["labels"][:, 1:]
        with torch.no_grad():
            ids, attention = inputs["input_ids"], inputs["attention_mask"]
            s_logits = student(input_ids=ids, attention_mask=attention).logits[:, :-1]
            t_logits = teacher(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        for variant in variants:
            kwargs = variant.loss_kwargs()
            t_store, offset = teacher_inputs(stored, labels, V, kwargs.get("lam"))
            online, g_on = _per_batch(s_logits, t_logits, labels, variant.objective, kwargs)
            st, g_st = _per_batch(s_logits, t_store, labels, variant.objective, kwargs, offset)
            acc = stats[variant.objective]
            acc["tokens"] += online.num_tokens
            acc["loss_online"] += float(online.loss_sum.detach())
            acc["loss_store"] += float(st.loss_sum.detach())
            acc["dot"] += float((g_on.double() * g_st.double()).sum())
            acc["norm_online"] += float(g_on.double().pow(2).sum())
            acc["norm_store"] += float(g_st.double().pow(2).sum())
            if online.hard_mask is not None:
                mask = labels != -100
                plain = st
                if offset is not None:
                    plain, _ = _per_batch(s_logits, t_store, labels, variant.objective, kwargs)
                acc["hard_online"] += int(online.hard_mask[mask].sum())
                acc["hard_store"] += int(st.hard_mask[mask].sum())
                acc["agree"] += int((online.hard_mask == st.hard_mask)[mask].sum())
                acc["agree_plain"] += int((online.hard_mask == plain.hard_mask)[mask].sum())
                acc["split"] = 1
    results = {}
    for objective, acc in stats.items():
        n = max(acc["tokens"], 1)
        lo, ls = acc["loss_online"] / n, acc["loss_store"] / n
        entry = {
            "tokens": int(acc["tokens"]),
            "loss_online": lo,
            "loss_store": ls,
            "loss_difference": ls - lo,
            "loss_relative_difference": (ls - lo) / lo if lo else None,
            "grad_cosine": acc["dot"] / math.sqrt(acc["norm_online"] * acc["norm_store"])
            if acc["norm_online"] and acc["norm_store"]
            else None,
            "hard_fraction_online": None,
            "hard_fraction_store": None,
            "split_agreement": None,
            "split_agreement_without_entropy_correction": None,
        }
        if acc["split"]:
            entry.update(
                hard_fraction_online=acc["hard_online"] / n,
                hard_fraction_store=acc["hard_store"] / n,
                split_agreement=acc["agree"] / n,
                split_agreement_without_entropy_correction=acc["agree_plain"] / n,
            )
        results[objective] = entry
    meta = store.meta
    return {
        "store": {
            k: meta[k] for k in ("mode", "samples", "temperature", "seed", "num_tokens", "bytes")
        },
        "student": str(student_model),
        "teacher": str(teacher_model),
        "examples": len(chosen),
        "objectives": results,
    }


def _mean(files: list[str]) -> float:
    return sum(json.loads(Path(f).read_text())["bleu"] for f in files) / len(files)


def fidelity_report(spec: dict) -> dict:
    """The loss comparison (spec["loss"], from compare_losses) plus, per objective and
    direction, the BLEU of the runs trained with the online teacher and with the store."""
    loss = json.loads(Path(spec["loss"]).read_text())
    bleu = {}
    for objective, runs in spec["objectives"].items():
        rows = {}
        for direction in runs["online"]:
            online, store = _mean(runs["online"][direction]), _mean(runs["store"][direction])
            rows[direction] = {"online": online, "store": store, "difference": store - online}
        diffs = [r["difference"] for r in rows.values()]
        bleu[objective] = {"directions": rows, "mean_difference": sum(diffs) / len(diffs)}
    return {
        "teacher": spec["teacher"],
        "source": spec["source"],
        "store": loss["store"],
        "examples": loss["examples"],
        "loss": loss["objectives"],
        "bleu": bleu,
    }


def _fmt(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def to_markdown(report: dict) -> str:
    """The report as two Markdown tables."""
    store = report["store"]
    lines = [
        f"# Teacher store fidelity: {report['teacher']}.{report['source']} vs the online teacher",
        "",
        f"Store: {store['mode']}, K = {store['samples']} draws per token, τ = "
        f"{store['temperature']}, {store['num_tokens']} target tokens, "
        f"{store['bytes'] / 2**20:.1f} MiB. Losses on {report['examples']} training examples "
        "(the SFT'd student).",
        "",
        "| objective | loss (online) | loss (store) | difference | gradient cosine "
        "| hard fraction (online / store) | split agreement | without entropy correction |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for objective, r in report["loss"].items():
        hard = (
            "–"
            if r["hard_fraction_online"] is None
            else f"{r['hard_fraction_online']:.3f} / {r['hard_fraction_store']:.3f}"
        )
        lines.append(
            f"| {objective} | {_fmt(r['loss_online'])} | {_fmt(r['loss_store'])} "
            f"| {_fmt(r['loss_difference'])} | {_fmt(r['grad_cosine'])} | {hard} "
            f"| {_fmt(r['split_agreement'], 3)} "
            f"| {_fmt(r['split_agreement_without_entropy_correction'], 3)} |"
        )
    if report["bleu"]:
        lines += [
            "",
            "| objective | direction | BLEU (online) | BLEU (store) | difference |",
            "|---|---|---:|---:|---:|",
        ]
        for objective, b in report["bleu"].items():
            for direction, r in b["directions"].items():
                lines.append(
                    f"| {objective} | {direction} | {r['online']:.2f} | {r['store']:.2f} "
                    f"| {r['difference']:+.2f} |"
                )
            lines.append(f"| {objective} | mean | | | {b['mean_difference']:+.2f} |")
    return "\n".join(lines) + "\n"
