"""Rule table: one declared table (config/paper.yaml) as CSV, Markdown and LaTeX, with its Δ row
and its footnotes (the metrics' signatures, the interval over seeds, the † test of BLEU and chrF,
the ‡ rows, the validation examples dropped)."""

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
    significance, chrf_significance = {}, {}  # {system: {direction: p}} of BLEU and chrF
    for d in directions:
        for system, result in tests[d].items():
            if system.startswith("_"):
                continue
            for key, found in (("p_value", significance), ("chrf_p_value", chrf_significance)):
                if result[key] is not None:
                    found.setdefault(system, {})[d] = result[key]
    rows = snakemake.params.rows
    table = tables.results_table(rows, directions, significance, chrf_significance)
    if delta is not None:
        table = tables.add_delta(table, delta["system"], delta["baseline"], rows, directions)
    notes = {
        "test": tests["test"],
        "baseline": tests["baseline"],
        "marks": snakemake.params.marks,
        "delta": delta,
        "signatures": tables.signatures(rows),
    }
    tables.write_csv(table, snakemake.output.csv)
    markdown = tables.to_markdown(table, directions, title, **notes)
    write(snakemake.output.md, markdown)
    label = f"tab:{snakemake.wildcards.table}"
    write(snakemake.output.tex, tables.to_latex(table, directions, title, label, **notes))
    print(markdown)
