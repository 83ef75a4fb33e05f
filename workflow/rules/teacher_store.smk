# Teacher outputs computed once (sekd.teacher.store): one store per teacher, source and seed, read
# by every KD job named kd/<teacher>.<source>/<variant>; and the sparse store's fidelity report.


rule teacher_store:
    input:
        tokenizer="results/tokenizer",
        train=train_files(),
        teacher="results/models/sft/{teacher}/seed{seed}",
        student=base_model_input("student"),
    output:
        directory("results/teacher_store/{teacher}/{source}/seed{seed}"),
    wildcard_constraints:
        teacher=MODEL_NAME,
    params:
        student=lambda wc, input: (
            input.student[0] if input.student else JOBS.base_model("student")
        ),
        job=lambda wc: JOBS.store(wc.teacher, wc.source),
    threads: 1
    resources:
        # one GPU on a GPU cluster, sized per teacher (sekd.plan.allocation); else the CPU defaults
        **SIZER.resources("teacher_store", tasks=1, nodes=1),
        # teacher_store.batch_size (speed only): a resource, which unlike params decides no rerun
        store_batch_size=config["teacher_store"]["batch_size"],
    log:
        "results/logs/teacher_store/{teacher}/{source}/seed{seed}.log",
    benchmark:
        "results/benchmarks/teacher_store/{teacher}/{source}/seed{seed}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/teacher_store.py"


rule store_fidelity_loss:
    input:
        tokenizer="results/tokenizer",
        train=train_files(),
        teacher="results/models/sft/{teacher}/seed{seed}",
        store="results/teacher_store/{teacher}/{source}/seed{seed}",
        student="results/models/sft/student/seed{seed}",
    output:
        "results/teacher_store/fidelity/{teacher}/{source}/seed{seed}.json",
    wildcard_constraints:
        teacher=MODEL_NAME,
    params:
        job=lambda wc: {
            **JOBS.store(wc.teacher, wc.source),
            "kd": config["kd"],
            # every objective a sparse store serves (BLEU only for fidelity.objectives)
            "objectives": [o for o in kd_objectives() if serves(o, "sparse")],
            "examples": config["teacher_store"]["fidelity"]["examples"],
            "batch_size": config["training"]["per_device_batch_size"],
        },
    threads: 1
    resources:
        **SIZER.resources("store_fidelity_loss"),  # one GPU on a GPU cluster (sekd.plan.allocation)
    log:
        "results/logs/store_fidelity_loss/{teacher}/{source}/seed{seed}.log",
    benchmark:
        "results/benchmarks/store_fidelity_loss/{teacher}/{source}/seed{seed}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/store_fidelity_loss.py"


rule store_fidelity:
    input:
        fidelity_inputs(),
    output:
        json="results/teacher_store/fidelity.json",
        md=report(
            "results/teacher_store/fidelity.md",
            caption="../report/fidelity.rst",
            category="Teacher store",
        ),
    params:
        spec=JOBS.fidelity(),
    log:
        "results/logs/store_fidelity.log",
    benchmark:
        "results/benchmarks/store_fidelity.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/store_fidelity.py"
