"""Rule bleu_vs_teacher (Fig. 4): SacreBLEU and chrF of a student against its teacher's own outputs
as references."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.evaluate import bleu as score
from sekd.logs import logged

with logged(snakemake.log[0]):
    refs = score.read_lines(snakemake.input.teacher)
    score.write_bleu(snakemake.input.hyps, refs, snakemake.params.tokenize, snakemake.output[0])
