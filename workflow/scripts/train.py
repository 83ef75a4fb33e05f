"""Rules sft and kd: one training run (sekd.train).

One process without DeepSpeed trains here; otherwise sekd.train launches torchrun (one rank per GPU
of the job, across SLURM nodes too; docs/deepspeed.md). A rerun resumes from the run's last
complete checkpoint; SIGUSR1/SIGTERM make it checkpoint and fail (PreemptedError) so that it can be
resubmitted.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parent))
from sekd import train
from sekd.logs import logged

with logged(snakemake.log[0]):
    wc = snakemake.wildcards
    job = snakemake.params.job
    is_kd = snakemake.rule == "kd"
    store = is_kd and "." in wc.teacher  # kd/<teacher>.<source>/...: read the teacher store
    run = f"kd/{wc.teacher}/{wc.variant}" if is_kd else f"sft/{wc.model}"
    # The run-time keys are not in the rule's params (changing them reruns nothing).
    runtime = {key: snakemake.config["training"].get(key) for key in train.RUNTIME_KEYS}
    if runtime["deepspeed"] and not Path(runtime["deepspeed"]).exists():
        # relative to the repository (as config.yaml names it) when not to the working directory
        repository = Path(snakemake.scriptdir).resolve().parents[1]
        runtime["deepspeed"] = str(repository / runtime["deepspeed"])
    train.run(
        train.TrainJob(
            variant=wc.variant if is_kd else "sft",
            base_model=snakemake.params.base,
            tokenizer_dir=snakemake.input.tokenizer,
            train_files=list(snakemake.input.train),
            valid_files=[] if is_kd else list(snakemake.input.valid),
            teacher_model=snakemake.input.teacher if is_kd and not store else None,
            teacher_store=snakemake.input.teacher if store else None,
            teacher_dtype=snakemake.params.teacher_dtype if is_kd else "float32",
            out_dir=snakemake.output[0],
            checkpoint_dir=f"results/checkpoints/{run}/seed{wc.seed}",
            languages=job["languages"],
            training={**job["training"], **runtime},
            seed=int(wc.seed),
            dtype=job["dtype"],
            trust_remote_code=job["trust_remote_code"],
            threads=snakemake.threads,
            gpus=int(snakemake.resources.get("gpu", 0) or 0),
        )
    )
