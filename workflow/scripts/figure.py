"""Rule figure: one declared figure (config/paper.yaml) as PNG, PDF and the CSV of its numbers."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import figures
from sekd.logs import logged

with logged(snakemake.log[0]):
    prefix = str(Path(snakemake.output.png).with_suffix(""))
    figures.draw(snakemake.params.spec, prefix)
