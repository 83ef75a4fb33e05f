"""Rule decode: hypotheses for one direction, one line per source sentence."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import atomic, models
from sekd.data import alma as data
from sekd.data import tokenizer as tokenizers
from sekd.evaluate import decode
from sekd.gpu_required import require_gpus
from sekd.logs import logged

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    models.configure_torch_threads(snakemake.threads)
    model_dir = snakemake.input.model
    records = data.read_jsonl(snakemake.input.source)
    hyps = decode.translate_with_engine(
        model_dir,
        tokenizers.load(model_dir),
        [r["source"] for r in records],
        snakemake.wildcards.direction,
        snakemake.params.languages,
        snakemake.params.decoding,
        snakemake.params.dtype,
    )
    out = Path(snakemake.output[0])
    with atomic.replacing(out) as tmp:
        tmp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
