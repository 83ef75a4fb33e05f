"""SacreBLEU (Post, 2018) and chrF (Popović, 2015; SacreBLEU's chrF2), each with its signature
saved next to the score (§4.3): chrF still moves where BLEU is near zero."""

from __future__ import annotations

import json
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF

from sekd.plan.schema import default


def read_lines(path: str | Path) -> list[str]:
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []


def bleu(
    hypotheses: list[str], references: list[str], tokenize: str = default("scoring.tokenize")
) -> dict:
    """Corpus BLEU of one system on one test set; raises if the line counts differ."""
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


def chrf(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus chrF (SacreBLEU's defaults: chrF2, character 6-grams, no word n-grams) of one system
    on one test set, with its signature; raises if the line counts differ."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    metric = CHRF()
    result = metric.corpus_score(hypotheses, [references])
    return {"chrf": result.score, "chrf_signature": str(metric.get_signature())}


def write_bleu(hypotheses_file: str, references: list[str], tokenize: str, out: str) -> dict:
    """BLEU and chrF of the hypotheses in `hypotheses_file` against `references`, written to
    `out` as JSON (with both signatures and the hypotheses' path); printed to the job's log."""
    hypotheses = read_lines(hypotheses_file)
    result = {**bleu(hypotheses, references, tokenize), **chrf(hypotheses, references)}
    result["hypotheses"] = hypotheses_file
    Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"BLEU {result['bleu']:.2f}  {result['signature']}")
    print(f"chrF {result['chrf']:.2f}  {result['chrf_signature']}")
    return result
