"""Rule fetch_data: one ALMA file from the mirror or upstream, checked against its sha256."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import data
from sekd.logs import logged

with logged(snakemake.log[0]):
    # The source (mirror or URL) is read from the config, not from params, on purpose: the
    # checksum makes it irrelevant to the result, so switching source must not rerun anything.
    source = snakemake.config["data"]
    data.fetch_file(
        snakemake.wildcards.relpath,
        snakemake.output[0],
        url=source["url"],
        mirror=source["mirror"],
        sha256=snakemake.params.sha256,
    )
