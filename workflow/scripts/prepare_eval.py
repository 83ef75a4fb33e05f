"""Rule prepare_eval: one validation (WMT21) or test (WMT22) direction as JSONL records."""

import logging

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data import alma as data
from sekd.logs import logged

with logged(snakemake.log[0]):
    direction = snakemake.wildcards.direction
    evalset = snakemake.wildcards.evalset
    data.verify_file(snakemake.input[0], snakemake.params.sha256)  # an edit since the fetch
    src, tgt = data.split_direction(direction)
    pairs = data.read_json_pairs(snakemake.input[0], src, tgt)
    pairs = data.select_eval_pairs(
        pairs,
        snakemake.input[0],
        max_sentences=snakemake.params.max_sentences,
        key="max_valid_sentences" if evalset == "valid" else "max_test_sentences",
        seed=snakemake.params.seed,
    )
    records = [{"direction": direction, "source": s, "target": t} for s, t in pairs]
    count = data.write_jsonl(records, snakemake.output[0])
    logging.getLogger("sekd").info("%s %s: %d sentences", evalset, direction, count)
    warning = data.reversed_valid_warning(direction) if evalset == "valid" else None
    if warning:
        logging.getLogger("sekd").warning(warning)
