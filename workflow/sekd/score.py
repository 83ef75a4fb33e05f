"""SacreBLEU (Post, 2018), with its signature saved next to the score (§4.3)."""

from __future__ import annotations

from pathlib import Path


def read_lines(path: str | Path) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


def bleu(hypotheses: list[str], references: list[str], tokenize: str = "13a") -> dict:
    """Corpus BLEU of one system on one test set; raises if the line counts differ."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metric = BLEU(tokenize=tokenize)
    result = metric.corpus_score(hypotheses, [references])
    return {
        "bleu": result.score,
        "signature": str(metric.get_signature()),
        "n_sentences": len(hypotheses),
        "precisions": result.precisions,
        "brevity_penalty": result.bp,
        "sys_len": result.sys_len,
        "ref_len": result.ref_len,
    }
