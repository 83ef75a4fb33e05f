"""Rule prepare_eval: one validation (WMT21) or test (WMT22) direction as JSONL records."""

import logging

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import data
from sekd.logs import logged

with logged(snakemake.log[0]):
    direction = snakemake.wildcards.direction
    src, tgt = data.split_direction(direction)
    pairs = data.read_json_pairs(snakemake.input[0], src, tgt)
    pairs = data.take_slice(pairs, snakemake.params.max_sentences, snakemake.params.seed)
    records = [{"direction": direction, "source": s, "target": t} for s, t in pairs]
    count = data.write_jsonl(records, snakemake.output[0])
    logging.getLogger("sekd").info(
        "%s %s: %d sentences", snakemake.wildcards.evalset, direction, count
    )
