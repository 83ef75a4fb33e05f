"""Rule fetch_data: one ALMA file from the mirror or upstream, checked against its sha256."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data import alma as data
from sekd.logs import logged
from sekd.plan.run_names import from_resources

with logged(snakemake.log[0]):
    # The source (mirror or URL) and the download's deadline come as resources, not params, on
    # purpose: the checksum makes them irrelevant to the result, so changing them must not rerun
    # anything.
    source = from_resources(snakemake.resources, ("data_url", "data_mirror", "download_timeout_s"))
    data.fetch_file(
        snakemake.wildcards.relpath,
        snakemake.output[0],
        url=source["data_url"],
        mirror=source["data_mirror"],
        sha256=snakemake.params.sha256,
        timeout_s=source["download_timeout_s"] or data.DEFAULT_DOWNLOAD_TIMEOUT_S,
    )
