"""Rule bleu: SacreBLEU and chrF of one direction's hypotheses against the references, each with
its signature (one score file)."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data import alma as data
from sekd.evaluate import bleu as score
from sekd.logs import logged

with logged(snakemake.log[0]):
    refs = [r["target"] for r in data.read_jsonl(snakemake.input.refs)]
    score.write_bleu(snakemake.input.hyps, refs, snakemake.params.tokenize, snakemake.output[0])
