"""Rule figure: one declared figure (config/paper.yaml) as PNG, PDF and the CSV of its numbers."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.report import figures

with logged(snakemake.log[0]):
    prefix = str(Path(snakemake.output.png).with_suffix(""))
    figures.draw(snakemake.params.spec, prefix)
