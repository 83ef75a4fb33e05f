"""Rule significance: paired bootstrap of every KD row against the baseline, per direction, in
BLEU and in chrF, over the test sentences of every seed pooled
(sekd.evaluate.significance.pooled_paired_bootstrap)."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import atomic
from sekd.data import alma as data
from sekd.evaluate import bleu as score
from sekd.evaluate.significance import pooled_paired_bootstrap
from sekd.logs import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    baseline = spec["baseline"]
    results = {
        "baseline": baseline,
        "test": {
            "method": "paired_bootstrap",
            "pooled_seeds": spec["seeds"],
            "n_samples": snakemake.params.samples,
            "seed": snakemake.params.seed,
        },
    }
    for direction, ref_file in spec["references"].items():
        refs = [r["target"] for r in data.read_jsonl(ref_file)]
        systems = {
            name: [score.read_lines(f) for f in h[direction]] for name, h in spec["systems"].items()
        }
        if baseline not in systems:
            raise ValueError(f"the baseline {baseline!r} is not a row of this table")
        others = [(name, hyps) for name, hyps in systems.items() if name != baseline]
        results[direction] = pooled_paired_bootstrap(
            (baseline, systems[baseline]),
            others,
            refs,
            n_samples=snakemake.params.samples,
            seed=snakemake.params.seed,
            tokenize=snakemake.params.tokenize,
        )
        print(direction, {k: v for k, v in results[direction].items() if not k.startswith("_")})
    out = Path(snakemake.output[0])
    with atomic.replacing(out) as tmp:  # complete or absent
        tmp.write_text(json.dumps(results, indent=1) + "\n")
