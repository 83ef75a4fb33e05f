"""Rule pretrain: a model built from `init` pretrained as a causal language model on the
miniature's pretraining text before SFT and KD start from it (sekd.data.pretraining,
sekd.train.job). A rerun resumes from the run's last complete checkpoint, as SFT's does."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.logs import logged
from sekd.plan.run_names import runtime_values
from sekd.train import job as train

RUNTIME = ("save_steps", "report_to")  # the rule's resources (rules/models.smk)

with logged(snakemake.log[0]):
    spec, model = snakemake.params.job, snakemake.wildcards.model
    train.run(
        train.TrainJob(
            variant="pretrain",
            model_key=f"models.{model}",
            base_model=snakemake.input.base,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=[],
            pretrain_text=snakemake.input.text,
            out_dir=snakemake.output[0],
            checkpoint_dir=f"results/checkpoints/pretrain/{model}",
            languages=spec["languages"],
            # save_steps and report_to: how it runs (resources, sekd.plan.run_names)
            training={**spec["training"], **runtime_values(snakemake.resources, RUNTIME)},
            run_name=f"pretrain/{model}",
            tracking_dir=train.tracking_dir(snakemake.log[0]),
            seed=spec["seed"],
            dtype=spec["dtype"],
            trust_remote_code=spec["trust_remote_code"],
            threads=snakemake.threads,
        )
    )
