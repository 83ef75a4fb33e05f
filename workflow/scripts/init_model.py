"""Rule init_model: a tiny Llama-architecture model built from config with seeded weights."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import models
from sekd.data import tokenizer as tokenizers
from sekd.logs import logged

with logged(snakemake.log[0]):
    init = snakemake.params.init
    tok = tokenizers.load(snakemake.input.tokenizer)
    model = models.build_tiny_llama(init, tok, seed=init["seed"])  # validated: the default set
    models.save(model, tok, snakemake.output[0])
    n = sum(p.numel() for p in model.parameters())
    print(f"{snakemake.wildcards.model}: {n:,} parameters")
