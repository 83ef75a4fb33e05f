"""What KD moves, even where BLEU cannot show it: a trained model's mean validation NLL of the
references and the mean KL(p||q) of the table's teacher p to the model q, on the same target
tokens (issue 11; the data of §4.2's checkpoint selection, WMT21 validation).

NLL is eq. 2's token mean, -log q(y_t | y_<t, x), over every target token of the validation
references (the prompt masked as in training, sekd.data.batches); KL(p||q) = Σ_v p(v) (log p(v) -
log q(v)) at the same positions, over the model's vocabulary (a teacher with a padded vocabulary is
cut to the model's ids, as the KD losses do), computed in fp32 log space: the true KL, exactly 0 for
the teacher against itself.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from sekd import atomic, models
from sekd.data import batches
from sekd.data import tokenizer as tokenizers


@torch.no_grad()
def token_stats(
    model, teacher, examples: list[dict], pad_id: int, batch_size: int = 16
) -> dict[str, float]:
    """Summed NLL of the labels under `model` and summed KL(teacher||model) over the label
    positions of `examples` (masked examples, sekd.data.batches), and the number of those tokens.
    `teacher` None: the model is the teacher (KL 0 without a second forward)."""
    collate = batches.PadCollator(pad_id)
    device = next(model.parameters()).device
    nll_sum, kl_sum, tokens = 0.0, 0.0, 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size]).items()}
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        if not mask.any():
            continue
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        logits_q = model(**inputs, use_cache=False).logits[:, :-1].float()
        log_q = torch.log_softmax(logits_q, dim=-1)[mask]  # [N, V]
        target = labels[mask]
        nll_sum += -log_q.gather(-1, target[:, None]).sum().item()
        if teacher is not None:
            logits_p = teacher(**inputs, use_cache=False).logits
            logits_p = logits_p[:, :-1, : logits_q.shape[-1]].float()
            log_p = torch.log_softmax(logits_p, dim=-1)[mask]
            kl_sum += (log_p.exp() * (log_p - log_q)).sum().item()
        tokens += int(mask.sum())
    return {"nll_sum": nll_sum, "kl_sum": kl_sum, "tokens": tokens}


COUNTS = ("examples", "dropped", "truncated")
"""The validation examples read, dropped (prompt alone longer than max_length: not in the means)
and truncated (target cut at max_length), per direction and summed (sekd.data.batches)."""


def _mean(total: float, tokens: int, what: str) -> float:
    if tokens == 0:
        raise ValueError(f"{what}: no target tokens to average over")
    value = total / tokens
    if not math.isfinite(value):
        raise ValueError(f"{what}: the mean is {value} (not finite)")
    return value


def fit(
    model_dir: str | Path,
    teacher_dir: str | Path,
    tokenizer_dir: str | Path,
    valid_files: dict[str, str],
    languages: dict,
    max_length: int,
    batch_size: int = 16,
    dtype: str = "float32",
    teacher_dtype: str = "float32",
    formatting: dict | None = None,
) -> dict:
    """{"nll", "kl", "tokens", "examples", "dropped", "truncated", "directions": {direction:
    {the same}}} of the model in `model_dir` against the teacher in `teacher_dir` on
    `valid_files` ({direction: JSONL}); the overall means are token means over every direction,
    the counts (COUNTS) sums: no validation example is left out silently. `formatting`: the
    prompts' encoding (response_newline, truncation) when not the defaults, as training's. Both
    models load as sekd.train.job loads them (safetensors; tokenizer and vocabulary checked against
    results/tokenizer), on the GPU when there is one."""
    tok = tokenizers.load(tokenizer_dir)
    same = Path(model_dir).resolve() == Path(teacher_dir).resolve()
    loaded = {}
    for role, path, kind in (("model", model_dir, dtype), ("teacher", teacher_dir, teacher_dtype)):
        if role == "teacher" and same:
            loaded[role] = None
            continue
        models.check_tokenizer(path, tok, f"the {role}")
        lm = models.load_causal_lm(path, kind).eval().requires_grad_(False)
        models.check_vocab(lm, tok, str(path), f"the {role}")
        loaded[role] = lm.to("cuda") if torch.cuda.is_available() else lm
    if loaded["teacher"] is not None:
        vocab, theirs = loaded["model"].config.vocab_size, loaded["teacher"].config.vocab_size
        if theirs < vocab:
            raise ValueError(
                f"the teacher ({teacher_dir}): its vocabulary ({theirs}) is smaller than the "
                f"model's ({vocab}, {model_dir})"
            )
    out: dict = {"model": str(model_dir), "teacher": str(teacher_dir), "directions": {}}
    totals = dict.fromkeys(("nll_sum", "kl_sum", "tokens", *COUNTS), 0)
    for direction, path in valid_files.items():
        counts: dict = {}
        records = batches.read_records([path])
        examples = batches.encode_records(
            records, tok, languages, max_length, counts=counts, **(formatting or {})
        )
        stats = token_stats(
            loaded["model"], loaded["teacher"], examples, tok.pad_token_id, batch_size
        )
        out["directions"][direction] = {
            "nll": _mean(stats["nll_sum"], stats["tokens"], f"{path} NLL"),
            "kl": _mean(stats["kl_sum"], stats["tokens"], f"{path} KL"),
            "tokens": stats["tokens"],
            **counts,
        }
        for key in totals:
            totals[key] += {**stats, **counts}[key]
    out["nll"] = _mean(totals["nll_sum"], totals["tokens"], f"{model_dir} NLL")
    out["kl"] = _mean(totals["kl_sum"], totals["tokens"], f"{model_dir} KL")
    out.update({key: totals[key] for key in ("tokens", *COUNTS)})
    return out


def write(result: dict, path: str | Path) -> None:
    """The fit record as JSON, through <path>.tmp (complete or absent)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
