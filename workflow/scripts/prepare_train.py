"""Rule prepare_train: a language pair's training pairs as examples in both directions (§4.1)."""

import logging

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data import alma as data
from sekd.logs import logged

with logged(snakemake.log[0]):
    for path, sha256 in zip(snakemake.input, snakemake.params.sha256, strict=True):
        data.verify_file(path, sha256)  # an edit since the fetch must not pass
    pairs = data.read_parallel(*snakemake.input)
    pairs = data.select_train_pairs(
        pairs,
        snakemake.input,
        max_words=snakemake.params.max_words,
        max_pairs=snakemake.params.max_pairs,
        seed=snakemake.params.seed,
    )
    examples = data.build_train_examples({snakemake.wildcards.pair: pairs})
    count = data.write_jsonl(examples, snakemake.output[0])
    logging.getLogger("sekd").info("%d pairs -> %d examples", len(pairs), count)
