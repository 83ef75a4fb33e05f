"""Rule table1: the table as CSV and Markdown."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import tables
from sekd.logs import logged

with logged(snakemake.log[0]):
    directions = snakemake.params.directions
    table = tables.bleu_table(snakemake.params.rows, directions)
    tables.write_csv(table, snakemake.output.csv)
    markdown = tables.to_markdown(table, directions, snakemake.params.title)
    Path(snakemake.output.md).write_text(markdown, encoding="utf-8")
    print(markdown)
