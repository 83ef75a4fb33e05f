# Figures (§5.2, §5.3), declared in config/paper.yaml: each point is its own set of KD, decoding
# and scoring jobs.


rule figure:
    input:
        lambda wc: study.figure_inputs(config, wc.fig),
    output:
        png=report(
            "results/figures/{fig}.png",
            caption="../report/figure.rst",
            category="Figures",
        ),
        pdf="results/figures/{fig}.pdf",
        csv="results/figures/{fig}.csv",
    params:
        spec=lambda wc: study.figure_spec(config, wc.fig),
        caption=lambda wc: config["figures"][wc.fig]["caption"],
    log:
        "results/logs/figure/{fig}.log",
    benchmark:
        "results/benchmarks/figure/{fig}.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/figure.py"
