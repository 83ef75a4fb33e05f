"""Rule prepare_pretrain: the miniature's pretraining text, both sides of the ALMA training pairs
(sekd.data.pretraining), one sentence per line."""

import logging

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import atomic
from sekd.data import alma as data
from sekd.data.pretraining import pretraining_sentences
from sekd.logs import logged

with logged(snakemake.log[0]):
    for path, sha256 in zip(snakemake.input, snakemake.params.sha256, strict=True):
        data.verify_file(path, sha256)  # an edit since the fetch must not pass
    files = list(snakemake.input)
    pairs = [data.read_parallel(src, tgt) for src, tgt in zip(files[::2], files[1::2], strict=True)]
    text = snakemake.params.text
    sentences = pretraining_sentences(pairs, text["max_pairs"], text["seed"], text["adjacent"])
    with atomic.replacing(snakemake.output[0]) as tmp:
        tmp.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")
    logging.getLogger("sekd").info("%d sentences from %d files", len(sentences), len(files))
