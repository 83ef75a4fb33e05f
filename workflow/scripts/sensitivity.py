"""Rule sensitivity: results/sensitivity.csv and results/figures/sensitivity.png/.pdf."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.report import sensitivity

with logged(snakemake.log[0]):
    records = sensitivity.table(snakemake.params.spec)
    sensitivity.write_csv(records, snakemake.output.csv)
    sensitivity.plot(records, Path(snakemake.output.png).with_suffix(""))
    for r in records:
        print(f"{r['label']}: Δ avg BLEU {r['delta_avg']:+.2f}, hard {r['hard_fraction']}")
