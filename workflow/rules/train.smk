# Training (§4.2): SFT of teachers and student; KD of the student from its base model, with the
# teacher online or read from its store (teacher_store.smk).

from sekd.train.run_lock import forward_interrupts

# SIGINT to Snakemake reaches the running jobs too (as Ctrl-C does): a trainer then checkpoints at
# the end of its step and stops, instead of Snakemake waiting for it to finish (sekd.train.run_lock).
forward_interrupts()


rule sft:
    input:
        tokenizer="results/tokenizer",
        train=train_files(),
        valid=expand(
            "results/data/valid/{direction}.jsonl",
            direction=config["data"]["valid_directions"],
        ),
        base=lambda wc: base_model_input(wc.model),
    output:
        directory("results/models/sft/{model}/seed{seed}"),
    params:
        base=lambda wc, input: (
            input.base[0] if input.base else JOBS.base_model(wc.model)
        ),
        # without training.deepspeed, nproc_per_node, save_steps, report_to (resources below)
        # training.sft_selection (and valid_bleu's decoding) only when not valid_loss
        job=lambda wc: JOBS.sft(wc.model),
    threads: 1
    resources:
        # On a GPU cluster (profiles/slurm) GPUs per node, nodes, memory and time are sized from
        # the job (sekd.plan.allocation.Sizer); elsewhere one node and the CPU defaults.
        **SIZER.resources("sft", tasks=2, nodes=1),
        # How a run executes, not what it computes (training.deepspeed, nproc_per_node,
        # save_steps, report_to): resources, which (unlike params) decide no rerun, carry them to
        # the script (sekd.plan.run_names.runtime_resources; unset: "" or 0).
        **runtime_resources(config["training"]),
        # mpi: under SLURM the job runs in its batch step (no nested srun) and launches its own
        # workers, one per GPU of each node; the plugin then needs more than one task.
        mpi="srun",
    log:
        "results/logs/sft/{model}/seed{seed}.log",
    benchmark:
        "results/benchmarks/sft/{model}/seed{seed}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/sft.py"


rule kd:
    input:
        tokenizer="results/tokenizer",
        train=train_files(),
        base=kd_base_input,
        # the SFT'd teacher, or its store when the run is kd/<teacher>.<source>/...; none when the
        # objective reads no teacher logits
        teacher=kd_teacher_input,
        # the teacher's outputs, when the objective trains on them (rule teacher_outputs)
        sequences=kd_sequences_input,
    output:
        directory("results/models/kd/{teacher}/{variant}/seed{seed}"),
    params:
        base=kd_base,
        job=lambda wc: JOBS.kd(wc.teacher, wc.variant, wc.seed),  # as sft, with the student's sampling length when it samples
        # the run's values (objective, hyper-parameters, run options) from the plan
        run=kd_values,
        teacher_dtype=lambda wc: config["models"][split_teacher(wc.teacher)[0]]["dtype"],
    threads: 1
    resources:
        **SIZER.resources("kd", tasks=2, nodes=1),  # as sft
        **runtime_resources(config["training"]),  # as sft
        mpi="srun",  # as sft
    log:
        "results/logs/kd/{teacher}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/kd/{teacher}/{variant}/seed{seed}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/kd.py"
