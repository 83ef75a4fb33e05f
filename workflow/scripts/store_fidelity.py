"""Rule store_fidelity: the sparse teacher store against the online teacher, as JSON and
Markdown (loss, hard/easy split and gradient agreement; BLEU of runs trained both ways)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import store_fidelity
from sekd.logs import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.spec
    report = store_fidelity.fidelity_report(spec)
    Path(snakemake.output.json).write_text(json.dumps(report, indent=1) + "\n")
    Path(snakemake.output.md).write_text(store_fidelity.to_markdown(report))
    print(store_fidelity.to_markdown(report))
