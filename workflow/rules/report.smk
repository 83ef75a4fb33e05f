# The study's report (every table and figure, with what the paper reports) and its archive.


rule report:
    input:
        tables=study.table_outputs(config),
        figures=study.figure_outputs(config),
        fidelity=fidelity_outputs(),
        curves=study.table_curves_outputs(config),
        sensitivity=study.sensitivity_outputs(config),
    output:
        html="results/report.html",
        # the reading of each table with a Δ row (sekd.report.reading), also in the report
        reading="results/reading.md",
    params:
        config=config,
        readings={t: study.table_reading(config, t) for t in TABLES},
        captions=study.captions(config),
        # the compute budget per table row (sekd.report.budget), from the benchmark files
        budget_rows={t: study.table_rows(config, t) for t in TABLES},
        seeds={t: study.table_seeds(config, t) for t in TABLES},  # each table's own
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
        study.table_outputs(config),
        study.figure_outputs(config),
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
