"""Rule sft: supervised fine-tuning of a teacher or the student (eq. 2; sekd.train.job).

One process without DeepSpeed trains here; otherwise sekd.train.job launches torchrun (one rank per
GPU of the job, across SLURM nodes too; docs/deepspeed.md). A rerun resumes from the run's last
complete checkpoint; SIGUSR1, SIGTERM and SIGINT make it checkpoint and fail (PreemptedError) so
that it can be resubmitted. One trainer at a time per run (sekd.train.run_lock).
"""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.gpu_required import require_gpus
from sekd.logs import logged
from sekd.train import job as train

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    wc = snakemake.wildcards
    train.run(
        train.rule_job(
            snakemake.params.job,
            snakemake.resources,
            variant="sft",
            model_key=f"models.{wc.model}",
            base_model=snakemake.params.base,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=list(snakemake.input.train),
            valid_files=list(snakemake.input.valid),
            out_dir=snakemake.output[0],
            checkpoint_dir=f"results/checkpoints/sft/{wc.model}/seed{wc.seed}",
            run_name=f"sft/{wc.model}",
            tracking_dir=train.tracking_dir(snakemake.log[0]),  # training.report_to's
            seed=int(wc.seed),
            threads=snakemake.threads,
        )
    )
