"""Rule curves: a training run's Trainer log (train_summary.json) as its curves CSV."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.report import curves

with logged(snakemake.log[0]):
    curves.write(snakemake.input[0], snakemake.output[0])
