"""Rule artifact: results/artifact.tar.gz for artifact review (sekd.report.archive)."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.report import archive

with logged(snakemake.log[0]):
    manifest = archive.build(
        Path(snakemake.output[0]),
        workflow_dir=Path(snakemake.params.workflow_dir),
        config=dict(snakemake.params.config),
        results_dir=Path("results"),
    )
    print(f"{len(manifest)} files archived in {snakemake.output[0]}")
