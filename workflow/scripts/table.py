"""Rule table: one declared table (config/paper.yaml) as CSV, Markdown and LaTeX, with its Δ row
and its footnotes (the † test, the ‡ rows)."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import atomic
from sekd.logs import logged
from sekd.report import tables


def write(path: str, text: str) -> None:
    """Write `text` to `path` through <path>.tmp: complete or absent."""
    with atomic.replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


with logged(snakemake.log[0]):
    directions = snakemake.params.directions
    title = snakemake.params.title
    delta = snakemake.params.delta
    tests = json.loads(Path(snakemake.input.significance).read_text())
    significance = {}
    for d in directions:
        for system, result in tests[d].items():
            if not system.startswith("_") and result["p_value"] is not None:
                significance.setdefault(system, {})[d] = result["p_value"]
    table = tables.results_table(snakemake.params.rows, directions, significance)
    if delta is not None:
        table = tables.add_delta(table, delta["system"], delta["baseline"])
    notes = {
        "test": tests["test"],
        "baseline": tests["baseline"],
        "marks": snakemake.params.marks,
        "delta": delta,
    }
    tables.write_csv(table, snakemake.output.csv)
    markdown = tables.to_markdown(table, directions, title, **notes)
    write(snakemake.output.md, markdown)
    label = f"tab:{snakemake.wildcards.table}"
    write(snakemake.output.tex, tables.to_latex(table, directions, title, label, **notes))
    print(markdown)
