"""Rule kd: knowledge distillation of the student from an SFT'd teacher, online or read from its
teacher store (eqs. 3-10; sekd.train.job). Launching, resuming and preemption as in rule sft."""

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd.gpu_required import require_gpus
from sekd.logs import logged
from sekd.plan.run_names import split_teacher
from sekd.plan.variants import Variant
from sekd.train import job as train

with logged(snakemake.log[0]):
    require_gpus(snakemake.rule, snakemake.resources)  # before any model is loaded
    wc = snakemake.wildcards
    # kd/<teacher>.<source>/<variant> reads the teacher's store, kd/<teacher>/<variant> the model
    from_store = split_teacher(wc.teacher)[1] is not None
    teacher = list(snakemake.input.teacher)  # empty when the objective reads no teacher logits
    train.run(
        train.rule_job(
            snakemake.params.job,
            snakemake.resources,
            variant=wc.variant,
            # the run's values from the plan (sekd.plan.jobs.Jobs.kd_values); the name is its
            # identity
            plan=Variant.from_values(snakemake.params.run),
            model_key="models.student",
            teacher_key=f"models.{split_teacher(wc.teacher)[0]} (SFT'd)",
            base_model=snakemake.params.base,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=list(snakemake.input.train),
            teacher_model=None if from_store or not teacher else teacher[0],
            teacher_store=teacher[0] if from_store and teacher else None,
            teacher_outputs=snakemake.input.sequences[0] if snakemake.input.sequences else None,
            sequences=snakemake.params.job.get("sequences", {}),
            teacher_dtype=snakemake.params.teacher_dtype,
            out_dir=snakemake.output[0],
            checkpoint_dir=f"results/checkpoints/kd/{wc.teacher}/{wc.variant}/seed{wc.seed}",
            run_name=f"kd/{wc.teacher}/{wc.variant}",
            tracking_dir=train.tracking_dir(snakemake.log[0]),  # training.report_to's
            seed=int(wc.seed),
            threads=snakemake.threads,
        )
    )
