# Self-Evolution Knowledge Distillation for LLM-based MT (Song et al., COLING 2025), end to end.
# config/config.yaml is the paper; `--configfile config/mini.yaml` is the CPU miniature.


from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: Path(workflow.basedir) / "config" / "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"


rule all:
    input:
        "results/table1.csv",
        "results/table1.md",
    default_target: True
