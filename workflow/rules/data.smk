# Data (§4.1): fetch the ALMA human-written files (checked by sha256), then slice and format them.


rule fetch_data:
    output:
        raw_file("{relpath}"),
    params:
        sha256=lambda wc: config["data"]["sha256"][wc.relpath],
    resources:
        # The source, mirror or URL: resources, which unlike params decide no rerun (the checksum
        # makes the source irrelevant to the result; sekd.plan.run_names.as_resource: unset is "").
        data_url=as_resource(config["data"]["url"], str),
        data_mirror=as_resource(config["data"]["mirror"], str),
        download_timeout_s=config["data"]["download_timeout_s"],
    log:
        "results/logs/fetch_data/{relpath}.log",
    benchmark:
        "results/benchmarks/fetch_data/{relpath}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/fetch_data.py"


rule prepare_train:
    input:
        lambda wc: [raw_file(p) for p in alma.train_files(wc.pair)],
    output:
        "results/data/train/{pair}.jsonl",
    params:
        # checked again before reading: a fetched file edited since its fetch must not pass
        sha256=lambda wc: [
            config["data"]["sha256"][p] for p in alma.train_files(wc.pair)
        ],
        max_pairs=config["data"]["max_train_pairs"],
        max_words=config["data"]["max_train_words"],
        seed=config["data"]["slice_seed"],
    log:
        "results/logs/prepare_train/{pair}.log",
    benchmark:
        "results/benchmarks/prepare_train/{pair}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/prepare_train.py"


rule prepare_eval:
    input:
        lambda wc: raw_file(eval_file(wc)),
    output:
        "results/data/{evalset}/{direction}.jsonl",
    params:
        sha256=lambda wc: config["data"]["sha256"][eval_file(wc)],
        max_sentences=lambda wc: config["data"][
            "max_valid_sentences" if wc.evalset == "valid" else "max_test_sentences"
        ],
        seed=config["data"]["slice_seed"],
    log:
        "results/logs/prepare_eval/{evalset}/{direction}.log",
    benchmark:
        "results/benchmarks/prepare_eval/{evalset}/{direction}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/prepare_eval.py"


rule prepare_pretrain:
    input:
        [
            raw_file(p)
            for pair in config["data"]["pairs"]
            for p in alma.train_files(pair)
        ],
    output:
        "results/data/pretrain.txt",
    params:
        # checked again before reading, as prepare_train's
        sha256=[
            config["data"]["sha256"][p]
            for pair in config["data"]["pairs"]
            for p in alma.train_files(pair)
        ],
        text=JOBS.pretrain_text(),
    log:
        "results/logs/prepare_pretrain.log",
    benchmark:
        "results/benchmarks/prepare_pretrain.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/prepare_pretrain.py"
