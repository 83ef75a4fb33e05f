# The shared tokenizer and, for the miniature, the tiny base models built from config and
# pretrained (models.<name>.init.pretrain_steps; sekd.data.pretraining).


rule tokenizer:
    input:
        train=train_files() if config["tokenizer"]["train"] else [],
        # the BPE learns the pretraining text too, when a model is pretrained on it
        text=JOBS.pretrain_inputs() if config["tokenizer"]["train"] else [],
    output:
        directory("results/tokenizer"),
    params:
        # the from_model's revision, only when pinned (an unpinned plan's params stay as before)
        **JOBS.tokenizer_revision(),
        train=JOBS.tokenizer_training(),  # with prompt.response_newline when not the default
        pretrained=(
            config["models"][config["tokenizer"]["from_model"]]["pretrained"]
            if config["tokenizer"]["from_model"]
            else None
        ),
        trust_remote_code=(
            config["models"][config["tokenizer"]["from_model"]]["trust_remote_code"]
            if config["tokenizer"]["from_model"]
            else False
        ),
        languages=JOBS.languages_for(JOBS.train_directions()),
    log:
        "results/logs/tokenizer.log",
    benchmark:
        "results/benchmarks/tokenizer.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/tokenizer.py"


rule init_model:
    input:
        tokenizer="results/tokenizer",
    output:
        directory("results/models/base/{model}"),
    params:
        init=lambda wc: JOBS.init(wc.model),
    log:
        "results/logs/init_model/{model}.log",
    benchmark:
        "results/benchmarks/init_model/{model}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/init_model.py"


rule pretrain:
    input:
        tokenizer="results/tokenizer",
        text="results/data/pretrain.txt",
        base="results/models/base/{model}",
    output:
        directory("results/models/pretrained/{model}"),
    params:
        job=lambda wc: JOBS.pretrain(wc.model),
    threads: 1
    resources:
        **runtime_resources(config["training"], ("save_steps", "report_to")),  # as sft
    log:
        "results/logs/pretrain/{model}.log",
    benchmark:
        "results/benchmarks/pretrain/{model}.tsv"
    conda:
        JOBS.gpu_env("../envs/train.yaml")
    script:
        "../scripts/pretrain.py"
