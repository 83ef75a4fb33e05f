# Tables (§5): Table 1, SacreBLEU per WMT22 direction and average.


rule table1:
    input:
        [f for row in table1_rows() for fs in score_files(row[1]).values() for f in fs],
    output:
        csv=report("results/table1.csv", caption="../report/table1.rst", category="Tables"),
        md=report("results/table1.md", caption="../report/table1.rst", category="Tables"),
    params:
        rows=[
            {"system": label, "run": run, "scores": score_files(run)}
            for label, run in table1_rows()
        ],
        directions=TEST_DIRECTIONS,
        title="Table 1: Self-Evolution KD against baselines on WMT22",
    log:
        "results/logs/table1.log",
    benchmark:
        "results/benchmarks/table1.tsv"
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/table.py"
