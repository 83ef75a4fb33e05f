# The mechanism visible: each training run's curves (loss, learning rate, hard-token fraction,
# β) from its Trainer log, and one multi-panel figure per table of its runs' curves. The curve
# figures declared in config/paper.yaml (kind: curve) are built by the rule `figure`.


rule curves:
    input:
        "results/models/{run}/seed{seed}",
    output:
        "results/curves/{run}/seed{seed}.csv",
    log:
        "results/logs/curves/{run}/seed{seed}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/curves.py"


rule table_curves:
    input:
        lambda wc: study.table_curves_inputs(config, wc.table),
    output:
        png=report(
            "results/curves/{table}.png",
            caption="../report/curves.rst",
            category="Training curves",
        ),
        pdf="results/curves/{table}.pdf",
        csv="results/curves/{table}.csv",
    params:
        spec=lambda wc: study.table_curves_spec(config, wc.table),
    log:
        "results/logs/table_curves/{table}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table_curves.py"
