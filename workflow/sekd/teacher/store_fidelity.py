"""How faithful a teacher store is to the online teacher (sekd.teacher.store).

`compare_losses` runs the SFT'd student and the online teacher on a seeded sample of training
batches and, per KD objective, computes the loss (eqs. 3-10) with the teacher's exact logits and
with the store's distribution: the loss difference, the cosine between the two gradients w.r.t.
the student logits, and the agreement of the hard/easy split (eqs. 5-9; with and without the
exact-entropy correction of d). sekd.report.store_fidelity adds the BLEU of runs trained both ways
and renders the report.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import torch
from tqdm import tqdm

from sekd import models
from sekd.data import tokenizer as tokenizers
from sekd.data.batches import PadCollator, encode_files
from sekd.data.prompts import DEFAULT_TRUNCATION, RESPONSE_NEWLINE
from sekd.plan.variants import make_variant
from sekd.teacher.store import TeacherStore, teacher_inputs
from sekd.train.losses import distill_loss


def _per_batch(student_logits, teacher, labels, objective, kwargs, offset=None):
    """(DistillOutput, gradient of the loss sum w.r.t. the student logits)."""
    s = student_logits.detach().requires_grad_()
    out = distill_loss(s, teacher, labels, objective, difficulty_offset=offset, **kwargs)
    (grad,) = torch.autograd.grad(out.loss_sum, s)
    return out, grad


def _accumulate(acc, s_logits, t_logits, t_store, offset, labels, variant) -> None:
    """Add one batch's sums to `acc`: student logits [B, T, V], the online teacher's logits and
    the store's log-probabilities [B, T, V], the difficulty offset [B, T] or None, labels [B, T]."""
    objective, kwargs = variant.objective, variant.loss_kwargs()
    online, g_on = _per_batch(s_logits, t_logits, labels, objective, kwargs)
    st, g_st = _per_batch(s_logits, t_store, labels, objective, kwargs, offset)
    acc["tokens"] += online.num_tokens
    acc["loss_online"] += float(online.loss_sum.detach())
    acc["loss_store"] += float(st.loss_sum.detach())
    acc["dot"] += float((g_on.double() * g_st.double()).sum())
    acc["norm_online"] += float(g_on.double().pow(2).sum())
    acc["norm_store"] += float(g_st.double().pow(2).sum())
    if online.hard_mask is None:
        return
    mask = labels != -100
    plain = st  # the hard/easy split without the exact-entropy correction of d
    if offset is not None:
        plain, _ = _per_batch(s_logits, t_store, labels, objective, kwargs)
    acc["hard_online"] += int(online.hard_mask[mask].sum())
    acc["hard_store"] += int(st.hard_mask[mask].sum())
    acc["agree"] += int((online.hard_mask == st.hard_mask)[mask].sum())
    acc["agree_plain"] += int((online.hard_mask == plain.hard_mask)[mask].sum())
    acc["split"] = 1


def _summary(acc: dict) -> dict:
    """Per-token means of one objective's sums, the gradient cosine and the split agreement."""
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
    return entry


def _compare_batch(
    stats: dict[str, dict], variants: list, inputs: dict, student, teacher, vocab: int
) -> None:
    """Add to `stats` (by objective) each variant's loss on one collated batch with the online
    teacher's logits and with the store's rows."""
    stored = {k: v for k, v in inputs.items() if k.startswith("store_")}
    labels = inputs["labels"][:, 1:]
    with torch.no_grad():
        ids, attention = inputs["input_ids"], inputs["attention_mask"]
        s_logits = student(input_ids=ids, attention_mask=attention, use_cache=False).logits
        s_logits = s_logits[:, :-1]
        t_logits = teacher(input_ids=ids, attention_mask=attention, use_cache=False).logits
        t_logits = t_logits[:, :-1].float()
    for variant in variants:
        kwargs = variant.loss_kwargs()
        t_store, offset = teacher_inputs(stored, labels, vocab, kwargs.get("lam"))
        _accumulate(stats[variant.objective], s_logits, t_logits, t_store, offset, labels, variant)


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
    response_newline: bool = RESPONSE_NEWLINE,
    truncation: str = DEFAULT_TRUNCATION,
) -> dict:
    """Online teacher vs store on `examples` training examples (a seeded sample), encoded as
    the store's (`response_newline`, `truncation`: sekd.data.prompts' open choices)."""
    models.configure_torch_threads(threads)
    tok = tokenizers.load(tokenizer_dir)
    encoded = encode_files(
        train_files,
        tok,
        languages,
        max_length,
        response_newline=response_newline,
        truncation=truncation,
    )
    store = TeacherStore(store_dir)
    student = models.load_causal_lm(student_model, "float32", trust_remote_code).eval()
    V = student.config.vocab_size
    store.check(encoded, V)
    teacher = models.load_teacher(teacher_model, teacher_dtype, trust_remote_code, V)
    chosen = sorted(random.Random(seed).sample(range(len(encoded)), min(examples, len(encoded))))
    collate = PadCollator(tok.pad_token_id, store)
    variants = [make_variant(o, kd) for o in objectives]
    stats: dict[str, dict] = {v.objective: defaultdict(float) for v in variants}
    batches = [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)]
    for batch in tqdm(batches, desc="fidelity", mininterval=5):
        inputs = collate([{**encoded[i], "index": i} for i in batch])
        _compare_batch(stats, variants, inputs, student, teacher, V)
    results = {objective: _summary(acc) for objective, acc in stats.items()}
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
