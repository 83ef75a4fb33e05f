"""Rule significance: paired bootstrap of every KD row against the baseline, per direction."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import data, score
from sekd.logs import logged
from sekd.significance import paired_bootstrap

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    baseline = spec["baseline"]
    results = {"baseline": baseline}
    for direction, ref_file in spec["references"].items():
        refs = [r["target"] for r in data.read_jsonl(ref_file)]
        systems = {name: score.read_lines(h[direction]) for name, h in spec["systems"].items()}
        if baseline not in systems:
            raise ValueError(f"the baseline {baseline!r} is not a row of this table")
        others = [(name, hyps) for name, hyps in systems.items() if name != baseline]
        results[direction] = paired_bootstrap(
            (baseline, systems[baseline]),
            others,
            refs,
            n_samples=snakemake.params.samples,
            seed=snakemake.params.seed,
            tokenize=snakemake.params.tokenize,
        )
        print(direction, {k: v for k, v in results[direction].items() if k != "_signature"})
    Path(snakemake.output[0]).write_text(json.dumps(results, indent=1) + "\n")
