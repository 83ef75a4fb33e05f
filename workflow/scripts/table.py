"""Rule table: one declared table (config/paper.yaml) as CSV, Markdown and LaTeX."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import tables
from sekd.logs import logged

with logged(snakemake.log[0]):
    directions = snakemake.params.directions
    title = snakemake.params.title
    tests = json.loads(Path(snakemake.input.significance).read_text())
    significance = {}
    for d in directions:
        for system, result in tests[d].items():
            if not system.startswith("_") and result["p_value"] is not None:
                significance.setdefault(system, {})[d] = result["p_value"]
    table = tables.results_table(snakemake.params.rows, directions, significance)
    tables.write_csv(table, snakemake.output.csv)
    markdown = tables.to_markdown(table, directions, title)
    Path(snakemake.output.md).write_text(markdown, encoding="utf-8")
    latex = tables.to_latex(table, directions, title, f"tab:{snakemake.wildcards.table}")
    Path(snakemake.output.tex).write_text(latex, encoding="utf-8")
    print(markdown)
