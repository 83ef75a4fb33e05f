"""Rule decode: hypotheses for one direction, one line per source sentence."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import data, decode
from sekd import tokenizer as tokenizers
from sekd.logs import configure_torch_threads, logged

with logged(snakemake.log[0]):
    configure_torch_threads(snakemake.threads)
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
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    tmp.replace(out)
