"""Rule report: results/report.html with every table and figure, and results/reading.md (what the
tables with a Δ row show, also in the report)."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import atomic
from sekd.logs import logged
from sekd.report import budget, reading
from sekd.report import html as report

with logged(snakemake.log[0]):
    tables = [Path(p) for p in snakemake.input.tables if p.endswith(".csv")]
    readings = {  # {table: Markdown} of the tables with a Δ row (sekd.report.reading)
        path.stem: reading.from_csv(path, snakemake.params.readings[path.stem])
        for path in tables
        if snakemake.params.readings.get(path.stem)
    }
    with atomic.replacing(snakemake.output.reading) as tmp:
        tmp.write_text("\n".join(readings.values()) or "No table with a Δ row.\n", encoding="utf-8")
    figures = [Path(p) for p in snakemake.input.figures if p.endswith(".png")]
    fidelity = [Path(p) for p in snakemake.input.fidelity if p.endswith(".json")]
    curves = [Path(p) for p in snakemake.input.curves if p.endswith(".png")]
    sensitivity = [Path(p) for p in snakemake.input.sensitivity]
    report.build(
        tables,
        figures,
        dict(snakemake.params.config),
        Path(snakemake.output.html),
        fidelity[0] if fidelity else None,
        captions=dict(snakemake.params.captions),
        curves=curves,
        sensitivity=sensitivity,
        readings=readings,
        budget={
            "tables": {
                name: [
                    budget.row_budget(system, run, snakemake.params.seeds[name])
                    for system, run in rows
                ]
                for name, rows in snakemake.params.budget_rows.items()
            },
            "total": budget.study_total(),
        },
    )
