"""Rule artifact: results/artifact.tar.gz for artifact review (sekd.archive)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import archive
from sekd.logs import logged

with logged(snakemake.log[0]):
    manifest = archive.build(
        Path(snakemake.output[0]),
        workflow_dir=Path(snakemake.params.workflow_dir),
        config=dict(snakemake.params.config),
        results_dir=Path("results"),
    )
    print(f"{len(manifest)} files archived in {snakemake.output[0]}")
