"""Rule store_fidelity: the sparse teacher store against the online teacher, as JSON and
Markdown (loss, hard/easy split and gradient agreement; BLEU of runs trained both ways)."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.report import store_fidelity as fidelity_report

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    report = fidelity_report.fidelity_report(spec)
    Path(snakemake.output.json).write_text(json.dumps(report, indent=1) + "\n")
    Path(snakemake.output.md).write_text(fidelity_report.to_markdown(report))
    print(fidelity_report.to_markdown(report))
