"""Rule store_fidelity_loss: losses, hard/easy splits and gradients of the SFT'd student with the
online teacher and with a teacher store, on the same training batches
(sekd.teacher.store_fidelity)."""

import json
from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.data.prompts import DEFAULT_TRUNCATION, RESPONSE_NEWLINE
from sekd.gpu_required import require_gpus
from sekd.logs import logged
from sekd.teacher import store_fidelity

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    job = snakemake.params.job
    result = store_fidelity.compare_losses(
        teacher_model=snakemake.input.teacher,
        store_dir=snakemake.input.store,
        student_model=snakemake.input.student,
        tokenizer_dir=snakemake.input.tokenizer,
        train_files=list(snakemake.input.train),
        languages=job["languages"],
        max_length=job["max_length"],
        objectives=job["objectives"],
        kd=job["kd"],
        examples=job["examples"],
        batch_size=job["batch_size"],
        teacher_dtype=job["dtype"],
        trust_remote_code=job["trust_remote_code"],
        threads=snakemake.threads,
        # in params only when not the default (sekd.plan.jobs.Jobs.formatting)
        response_newline=job.get("response_newline", RESPONSE_NEWLINE),
        truncation=job.get("truncation", DEFAULT_TRUNCATION),
    )
    Path(snakemake.output[0]).write_text(json.dumps(result, indent=1) + "\n")
