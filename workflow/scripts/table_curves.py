"""Rule table_curves: the training curves of a table's runs, one panel per logged value."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.report import figures

with logged(snakemake.log[0]):
    prefix = str(Path(snakemake.output.png).with_suffix(""))
    figures.table_curves(snakemake.params.spec, prefix)
