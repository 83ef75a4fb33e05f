"""Rules sft and kd: one training run (sekd.train)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import train
from sekd.logs import logged

with logged(snakemake.log[0]):
    wc = snakemake.wildcards
    job = snakemake.params.job
    is_kd = snakemake.rule == "kd"
    run = f"kd/{wc.teacher}/{wc.variant}" if is_kd else f"sft/{wc.model}"
    train.run(
        train.TrainJob(
            variant=wc.variant if is_kd else "sft",
            base_model=snakemake.params.base,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=list(snakemake.input.train),
            valid_files=[] if is_kd else list(snakemake.input.valid),
            teacher_model=snakemake.input.teacher if is_kd else None,
            teacher_dtype=snakemake.params.teacher_dtype if is_kd else "float32",
            out_dir=snakemake.output[0],
            checkpoint_dir=f"results/checkpoints/{run}/seed{wc.seed}",
            languages=job["languages"],
            training=job["training"],
            seed=int(wc.seed),
            dtype=job["dtype"],
            trust_remote_code=job["trust_remote_code"],
            threads=snakemake.threads,
        )
    )
