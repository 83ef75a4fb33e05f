# Evaluation (§4.3): decode each test direction, then SacreBLEU with its signature.


rule decode:
    input:
        model="results/models/{run}/seed{seed}",
        source="results/data/{evalset}/{direction}.jsonl",
    output:
        "results/hyps/{run}/seed{seed}/{evalset}/{direction}.txt",
    params:
        decoding=config["decoding"],
        languages=lambda wc: languages_for([wc.direction]),
        dtype=lambda wc: run_model(wc.run)["dtype"],
    threads: 1
    log:
        "results/logs/decode/{run}/seed{seed}/{evalset}/{direction}.log",
    benchmark:
        "results/benchmarks/decode/{run}/seed{seed}/{evalset}/{direction}.tsv"
    conda:
        "../../envs/train.yaml"
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
        "../../envs/score.yaml"
    script:
        "../scripts/bleu.py"
