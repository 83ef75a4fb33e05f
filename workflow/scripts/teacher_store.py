"""Rule teacher_store: run one SFT'd teacher over the training set once (sekd.teacher.store)."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data.prompts import DEFAULT_TRUNCATION, RESPONSE_NEWLINE
from sekd.gpu_required import require_gpus
from sekd.logs import logged
from sekd.teacher import store as teacher_store

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
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
            # speed only: a resource, not a param (changing it reruns nothing)
            batch_size=snakemake.resources.store_batch_size,
            dtype=job["dtype"],
            trust_remote_code=job["trust_remote_code"],
            threads=snakemake.threads,
            student_revision=job.get("student_revision"),  # only in params when pinned
            teacher_key=f"models.{snakemake.wildcards.teacher} (SFT'd)",
            # in params only when not the default (sekd.plan.jobs.Jobs.formatting)
            response_newline=job.get("response_newline", RESPONSE_NEWLINE),
            truncation=job.get("truncation", DEFAULT_TRUNCATION),
        )
    )
