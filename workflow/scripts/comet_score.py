"""Rule comet: COMET (Unbabel/wmt22-comet-da or a local checkpoint) of one direction."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data import alma as data
from sekd.evaluate import bleu as score
from sekd.evaluate import comet
from sekd.gpu_required import require_gpus
from sekd.logs import logged

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    records = data.read_jsonl(snakemake.input.refs)
    hyps = score.read_lines(snakemake.input.hyps)
    model = comet.load_model(snakemake.params.model, snakemake.params.get("revision"))
    result = comet.score(
        model,
        [r["source"] for r in records],
        hyps,
        [r["target"] for r in records],
        batch_size=snakemake.params.batch_size,
    )
    Path(snakemake.output[0]).write_text(json.dumps(result, indent=1) + "\n")
    print(f"COMET {result['comet']:.2f}")
