"""Rule tokenizer: the shared tokenizer, pretrained (the paper) or a BPE trained on the data: the
training prompts and targets, and the pretraining text when models are pretrained."""

import itertools

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data import alma as data
from sekd.data import pretraining, prompts
from sekd.data import tokenizer as tokenizers
from sekd.data.prompts import RESPONSE_NEWLINE
from sekd.logs import logged

with logged(snakemake.log[0]):
    spec = snakemake.params.train
    if spec:
        records = [r for path in snakemake.input.train for r in data.read_jsonl(path)]
        languages = snakemake.params.languages
        texts = (
            # prompt.response_newline: in spec only when not the default (rule tokenizer)
            prompts.build_prompt(
                r["source"],
                r["direction"],
                languages,
                spec.get("response_newline", RESPONSE_NEWLINE),
            )
            + r["target"]
            for r in records
        )
        # and the pretraining text when models are pretrained on it (rule prepare_pretrain)
        texts = itertools.chain(texts, *(pretraining.read_text(p) for p in snakemake.input.text))
        tok = tokenizers.train_bpe(texts, spec["vocab_size"], spec["min_frequency"])
    else:
        tok = tokenizers.load_pretrained(
            snakemake.params.pretrained,
            snakemake.params.trust_remote_code,
            snakemake.params.get("revision"),
        )
    tok.save_pretrained(snakemake.output[0])
    print(f"tokenizer: {len(tok)} entries, eos={tok.eos_token!r}, pad={tok.pad_token!r}")
