# What KD moves where BLEU cannot show it, and how much the open choices move the result (issue
# 11): each trained model's validation fit (NLL of the WMT21 references, KL(p||q) to a teacher),
# and the sensitivity study declared in config/paper.yaml (`sensitivity`).


rule fit:
    input:
        model="results/models/{run}/seed{seed}",
        teacher="results/models/sft/{reference}/seed{seed}",
        tokenizer="results/tokenizer",
        valid=expand(
            "results/data/valid/{direction}.jsonl",
            direction=config["data"]["valid_directions"],
        ),
    output:
        "results/fit/{run}/seed{seed}/{reference}.json",
    params:
        **JOBS.formatting(),
        directions=config["data"]["valid_directions"],
        languages=JOBS.languages_for(config["data"]["valid_directions"]),
        max_length=config["training"]["max_length"],
        batch_size=config["training"]["per_device_batch_size"],
        dtype=lambda wc: JOBS.run_model(wc.run)["dtype"],
        teacher_dtype=lambda wc: config["models"][wc.reference]["dtype"],
        # the prompts' encoding as training's (only when not the defaults: sekd.plan.jobs)
    wildcard_constraints:
        reference=MODEL_NAME,
    threads: 1
    resources:
        **SIZER.resources("fit"),  # one GPU on a GPU cluster (sekd.plan.allocation)
    log:
        "results/logs/fit/{run}/seed{seed}/{reference}.log",
    benchmark:
        "results/benchmarks/fit/{run}/seed{seed}/{reference}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/fit.py"


rule sensitivity:
    input:
        lambda wc: study.sensitivity_inputs(config),
    output:
        csv=report(
            "results/sensitivity.csv",
            caption="../report/sensitivity.rst",
            category="Sensitivity",
        ),
        png="results/figures/sensitivity.png",
        pdf="results/figures/sensitivity.pdf",
    params:
        spec=lambda wc: study.sensitivity_spec(config),
    log:
        "results/logs/sensitivity.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/sensitivity.py"
