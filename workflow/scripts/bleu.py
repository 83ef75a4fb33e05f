"""Rules bleu and bleu_vs_teacher: SacreBLEU of one direction's hypotheses, with the signature.

bleu_vs_teacher (Fig. 4) scores a student against its teacher's own outputs as references.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import data, score
from sekd.logs import logged

with logged(snakemake.log[0]):
    hyps = score.read_lines(snakemake.input.hyps)
    if snakemake.rule == "bleu_vs_teacher":
        refs = score.read_lines(snakemake.input.teacher)
    else:
        refs = [r["target"] for r in data.read_jsonl(snakemake.input.refs)]
    result = score.bleu(hyps, refs, snakemake.params.tokenize)
    result["hypotheses"] = snakemake.input.hyps
    Path(snakemake.output[0]).write_text(json.dumps(result, indent=1) + "\n")
    print(f"BLEU {result['bleu']:.2f}  {result['signature']}")
