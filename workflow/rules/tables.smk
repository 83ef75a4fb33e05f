# Tables (§5), declared in config/paper.yaml: Table 1 (13B teacher), Table 2 (30B teacher), ...
# as CSV, Markdown and LaTeX.


rule table:
    input:
        scores=lambda wc: study.table_inputs(config, wc.table),
        significance="results/significance/{table}.json",
    output:
        csv=report(
            "results/{table}.csv", caption="../report/table.rst", category="Tables"
        ),
        md="results/{table}.md",
        tex="results/{table}.tex",
    params:
        rows=lambda wc: study.table_spec(config, wc.table),
        directions=TEST_DIRECTIONS,
        title=lambda wc: study.table_title(config, wc.table),
        caption=lambda wc: study.table_caption(config, wc.table),
        delta=lambda wc: study.table_delta(config, wc.table),
        marks=lambda wc: study.table_marks(config, wc.table),
    log:
        "results/logs/table/{table}.log",
    benchmark:
        "results/benchmarks/table/{table}.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table.py"
