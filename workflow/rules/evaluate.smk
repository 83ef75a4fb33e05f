# Evaluation (§4.3): decode each test direction, then SacreBLEU with its signature.


rule decode:
    input:
        model="results/models/{run}/seed{seed}",
        source="results/data/{evalset}/{direction}.jsonl",
    output:
        "results/hyps/{run}/seed{seed}/{evalset}/{direction}.txt",
    params:
        # with prompt.response_newline when not the default
        decoding=JOBS.decoding(),
        languages=lambda wc: JOBS.languages_for([wc.direction]),
        dtype=lambda wc: JOBS.run_model(wc.run)["dtype"],
    threads: 1
    resources:
        **SIZER.resources("decode"),  # one GPU on a GPU cluster (sekd.plan.allocation)
    log:
        "results/logs/decode/{run}/seed{seed}/{evalset}/{direction}.log",
    benchmark:
        "results/benchmarks/decode/{run}/seed{seed}/{evalset}/{direction}.tsv"
    conda:
        JOBS.engine_env("decoding")
    script:
        "../scripts/decode.py"


rule bleu:
    input:
        hyps="results/hyps/{run}/seed{seed}/{evalset}/{direction}.txt",
        refs="results/data/{evalset}/{direction}.jsonl",
    output:
        "results/scores/{run}/seed{seed}/{evalset}/{direction}.json",
    params:
        tokenize=config["scoring"]["tokenize"],
    log:
        "results/logs/bleu/{run}/seed{seed}/{evalset}/{direction}.log",
    benchmark:
        "results/benchmarks/bleu/{run}/seed{seed}/{evalset}/{direction}.tsv"
    conda:
        "../envs/score.yaml"
    script:
        "../scripts/bleu.py"


rule bleu_vs_teacher:
    input:
        hyps="results/hyps/kd/{teacher}/{variant}/seed{seed}/{evalset}/{direction}.txt",
        teacher=lambda wc: (
            f"results/hyps/sft/{split_teacher(wc.teacher)[0]}/seed{wc.seed}/{wc.evalset}/"
            f"{wc.direction}.txt"
        ),
    output:
        "results/scores_vs_teacher/kd/{teacher}/{variant}/seed{seed}/{evalset}/{direction}.json",
    params:
        tokenize=config["scoring"]["tokenize"],
    log:
        "results/logs/bleu_vs_teacher/{teacher}/{variant}/seed{seed}/{evalset}/{direction}.log",
    benchmark:
        "results/benchmarks/bleu_vs_teacher/{teacher}/{variant}/seed{seed}/{evalset}/{direction}.tsv"
    conda:
        "../envs/score.yaml"
    script:
        "../scripts/bleu_vs_teacher.py"


rule comet:
    input:
        hyps="results/hyps/{run}/seed{seed}/{evalset}/{direction}.txt",
        refs="results/data/{evalset}/{direction}.jsonl",
    output:
        "results/comet/{run}/seed{seed}/{evalset}/{direction}.json",
    params:
        # scoring.comet_revision, only when pinned (an unpinned plan's params stay as before)
        **pinned("revision", config["scoring"]["comet_revision"]),
        model=config["scoring"]["comet_model"],
        batch_size=config["scoring"]["comet_batch_size"],
    threads: 1
    resources:
        **SIZER.resources("comet"),  # one GPU on a GPU cluster (sekd.plan.allocation)
    log:
        "results/logs/comet/{run}/seed{seed}/{evalset}/{direction}.log",
    benchmark:
        "results/benchmarks/comet/{run}/seed{seed}/{evalset}/{direction}.tsv"
    conda:
        "../envs/comet.yaml"
    script:
        "../scripts/comet_score.py"


rule significance:
    input:
        lambda wc: study.significance_inputs(config, wc.table),
    output:
        "results/significance/{table}.json",
    params:
        spec=lambda wc: study.significance_spec(config, wc.table),
        samples=config["tables"]["bootstrap_samples"],
        seed=config["tables"]["bootstrap_seed"],
        tokenize=config["scoring"]["tokenize"],
    log:
        "results/logs/significance/{table}.log",
    benchmark:
        "results/benchmarks/significance/{table}.tsv"
    conda:
        "../envs/score.yaml"
    script:
        "../scripts/significance.py"
