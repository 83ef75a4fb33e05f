# Tables (§5): Table 1 (13B teacher) and Table 2 (30B teacher), as CSV, Markdown and LaTeX.


rule table:
    input:
        scores=lambda wc: [
            f
            for row in table_spec(wc.table)
            for kind in ("scores", "comet")
            if row[kind]
            for fs in row[kind].values()
            for f in fs
        ],
        significance="results/significance/{table}.json",
    output:
        csv=report(
            "results/{table}.csv", caption="../report/table.rst", category="Tables"
        ),
        md="results/{table}.md",
        tex="results/{table}.tex",
    params:
        rows=lambda wc: table_spec(wc.table),
        directions=TEST_DIRECTIONS,
    log:
        "results/logs/table/{table}.log",
    benchmark:
        "results/benchmarks/table/{table}.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/table.py"
