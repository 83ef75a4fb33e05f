"""Rule teacher_outputs: the SFT'd teacher's outputs for the training prompts, generated once
(sekd.teacher.outputs)."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data.prompts import DEFAULT_TRUNCATION, RESPONSE_NEWLINE
from sekd.gpu_required import require_gpus
from sekd.logs import logged
from sekd.plan.schema import default
from sekd.teacher import outputs as teacher_outputs

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    job = snakemake.params.job
    teacher_outputs.generate(
        teacher_outputs.GenerationJob(
            teacher_model=snakemake.input.teacher,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=list(snakemake.input.train),
            out_dir=snakemake.output[0],
            languages=job["languages"],
            generation=job["generation"],
            max_length=job["max_length"],
            max_new_tokens=job["max_new_tokens"],
            seed=int(snakemake.wildcards.seed),
            dtype=job["dtype"],
            trust_remote_code=job["trust_remote_code"],
            # speed only: a resource, not a param (changing it reruns nothing)
            batch_size=snakemake.resources.batch_size,
            threads=snakemake.threads,
            tokenize=job["tokenize"],
            teacher_key=f"models.{snakemake.wildcards.model} (SFT'd)",
            engine=job.get("engine", default("sequences.engine")),
            # in params only when not the default (sekd.plan.jobs.Jobs.formatting)
            response_newline=job.get("response_newline", RESPONSE_NEWLINE),
            truncation=job.get("truncation", DEFAULT_TRUNCATION),
        )
    )
