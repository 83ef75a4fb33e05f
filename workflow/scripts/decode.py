"""Rule decode: hypotheses for one direction, one line per source sentence."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import data, decode, models
from sekd import tokenizer as tokenizers
from sekd.logs import configure_torch_threads, logged

with logged(snakemake.log[0]):
    configure_torch_threads(snakemake.threads)
    opts = snakemake.params.decoding
    model_dir = snakemake.input.model
    tok = tokenizers.load(model_dir)
    model = models.load_causal_lm(model_dir, snakemake.params.dtype)
    import torch

    if torch.cuda.is_available():
        model.to("cuda")
    records = data.read_jsonl(snakemake.input.source)
    hyps = decode.translate(
        model,
        tok,
        [r["source"] for r in records],
        snakemake.wildcards.direction,
        snakemake.params.languages,
        num_beams=opts["num_beams"],
        max_new_tokens=opts["max_new_tokens"],
        batch_size=opts["batch_size"],
    )
    out = Path(snakemake.output[0])
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
    tmp.replace(out)
