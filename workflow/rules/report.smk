# The study's report (every table and figure, with what the paper reports) and its archive.


rule report:
    input:
        tables=table_outputs(),
        figures=figure_outputs(),
        fidelity=fidelity_outputs(),
        curves=table_curves_outputs(),
        sensitivity=study.sensitivity_outputs(config),
    output:
        "results/report.html",
    params:
        config=config,
        captions=study.captions(config),
        # the compute budget per table row (sekd.budget), from the benchmark files
        budget_rows={t: study.table_rows(config, t) for t in TABLES},
        seeds=SEEDS,
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/report.py"


rule artifact:
    input:
        "results/report.html",
        table_outputs(),
        figure_outputs(),
    output:
        "results/artifact.tar.gz",
    params:
        config=config,
        workflow_dir=workflow.basedir,
    log:
        "results/logs/artifact.log",
    benchmark:
        "results/benchmarks/artifact.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/artifact.py"
