"""Rule teacher_store: run one SFT'd teacher over the training set once (sekd.teacher_store)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import teacher_store
from sekd.logs import logged

with logged(snakemake.log[0]):
    job = snakemake.params.job
    teacher_store.build(
        teacher_store.StoreJob(
            teacher_model=snakemake.input.teacher,
            student_model=snakemake.params.student,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=list(snakemake.input.train),
            languages=job["languages"],
            max_length=job["max_length"],
            out_dir=snakemake.output[0],
            mode=job["mode"],
            samples=job["samples"] or 1,
            temperature=job["temperature"] or 1.0,
            seed=job.get("seed", 0),
            # speed only, so not in the rule's params (changing it reruns nothing)
            batch_size=snakemake.config["teacher_store"]["batch_size"],
            dtype=job["dtype"],
            trust_remote_code=job["trust_remote_code"],
            threads=snakemake.threads,
        )
    )
