# Self-Evolution Knowledge Distillation for LLM-based MT (Song et al., COLING 2025), end to end.
# config/config.yaml is the paper; `--configfile config/mini.yaml` is the CPU miniature.


from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config" / "config.yaml"
configfile: Path(workflow.basedir) / "config" / "paper.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/teacher_store.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"


# Cheap jobs that run on the submitting machine under a cluster executor (profiles/slurm).
localrules:
    fetch_data,
    prepare_train,
    prepare_eval,
    tokenizer,
    init_model,
    bleu,
    bleu_vs_teacher,
    significance,
    store_fidelity,
    table,
    figure,
    report,
    artifact,


rule all:
    input:
        table_outputs(),
        figure_outputs(),
        "results/report.html",
        fidelity_outputs(),
    default_target: True
