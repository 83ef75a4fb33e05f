# What the rules share: the validated config, the wildcards' grammar, and the input functions.
# Each job's params come from sekd.plan.jobs (JOBS), its GPU resources from sekd.plan.allocation
# (SIZER); both are torch-free and unit-tested without Snakemake.
import sys

from snakemake.exceptions import WorkflowError

from sekd.data import alma
from sekd.errors import ConfigError
from sekd.plan import allocation, study
from sekd.plan.config import unpinned_warnings, validate_sources, workflow_sources
from sekd.plan.jobs import Jobs, model_dir, pinned
from sekd.plan.objectives import kd_objectives
from sekd.plan.run_names import (
    SOURCE_PATTERN,
    as_resource,
    runtime_resources,
    serves,
    split_teacher,
)
from sekd.plan.sequences import GENERATION_PATTERN, teacher_outputs_dir
from sekd.plan.variants import NAME_PATTERN

try:
    # The config as Snakemake merged it (Snakefile's configfiles, --configfile, --config), each
    # file and value read by the workflow's YAML loader: Snakemake's leaves `2e-5` a string, and
    # nested --config values all strings. An error names the file (or --config) that set its key.
    _settings = workflow.config_settings
    _sources = workflow_sources(
        WORKFLOW_CONFIGFILES,
        _settings.configfiles,
        _settings.config,
        replace=_settings.replace_workflow_config and bool(_settings.overwrite_config),
    )
    _validated = validate_sources(_sources)
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)
if workflow.is_main_process:  # once per plan, not again in every job
    for _warning in unpinned_warnings(config):
        print(f"WARNING (config) {_warning}", file=sys.stderr)

JOBS = Jobs(config, error=WorkflowError)
# GPU jobs sized from the plan: the profile describes the cluster in its default-resources
# (profiles/slurm: gpu_mem_gb, gpus_per_node, ...), read here at parse time; without gpu_mem_gb
# (profiles/local, the miniature) no job asks for GPUs and the rules' CPU defaults stand.
SIZER = allocation.Sizer(
    config,
    allocation.Cluster.from_resources(
        allocation.constant_resources(workflow.resource_settings.default_resources)
    ),
    announce=(
        (lambda line: print(line, file=sys.stderr))
        if workflow.is_main_process
        else None
    ),
    error=WorkflowError,
)

MODEL_NAME = "[a-z][a-z0-9_]*"
TABLES = study.table_names(config)
FIGURES = study.figure_names(config)
# A KD run's teacher: the model (online) or <model>.<source> (read from a teacher store)
TEACHER = rf"{MODEL_NAME}(?:\.(?:{SOURCE_PATTERN}))?"


wildcard_constraints:
    model=MODEL_NAME,
    teacher=TEACHER,
    source=SOURCE_PATTERN,
    variant=NAME_PATTERN,
    seed=r"\d+",
    pair=r"[a-z]{2,3}-en",
    direction=r"[a-z]{2,3}-[a-z]{2,3}",
    evalset="valid|wmt22",
    table="|".join(TABLES),
    fig="|".join(FIGURES),
    run=f"sft/{MODEL_NAME}|kd/{TEACHER}/{NAME_PATTERN}",
    relpath=r"[a-z]+/[A-Za-z0-9._-]+",
    generation=GENERATION_PATTERN,


SEEDS = config["seeds"]
TEST_DIRECTIONS = config["data"]["test_directions"]


def eval_file(wc):
    """The ALMA file (below human_written_data/) of a prepare_eval job."""
    if wc.evalset == "valid":
        return alma.valid_file(wc.direction)
    return alma.test_file(wc.direction)


def raw_file(relpath):
    """Where a fetched ALMA file lives (relpath below human_written_data/)."""
    return f"resources/alma/{relpath}"


def train_files():
    return expand("results/data/train/{pair}.jsonl", pair=config["data"]["pairs"])


def base_model_input(name):
    """The base model as an input of a rule, only when the workflow makes it (built or pretrained)."""
    return [JOBS.base_model(name)] if config["models"][name]["init"] else []


def kd_values(wildcards, output):
    """Rule kd's `run` param: the job's objective, hyper-parameter values and run options
    (sekd.plan.variants.Variant.values), from the plan. A function of the output path (the run
    name identifies them one to one), so Snakemake does not record it (its params trigger skips
    params derived from output): a changed value changes the path, i.e. is a new job, as
    before; the recorded params of every existing KD job stay what they were."""
    return JOBS.kd_values(wildcards.variant)


def kd_teacher_input(wildcards):
    """A KD job's teacher logits: the SFT'd model (online) or its store (<model>.<source>)."""
    return JOBS.kd_teacher(wildcards.teacher, wildcards.variant, wildcards.seed)


def kd_sequences_input(wildcards):
    """The teacher's outputs a KD job trains on (rule teacher_outputs), if its objective does."""
    model = split_teacher(wildcards.teacher)[0]
    variant = JOBS.variant(wildcards.variant)
    outputs = teacher_outputs_dir(model, variant, wildcards.seed)
    return [outputs] if outputs else []


def kd_base_input(wildcards):
    """The starting weights of a KD job as an input (when the workflow makes them)."""
    init = JOBS.kd_init(wildcards.teacher, wildcards.variant, wildcards.seed)
    return [init] if init else base_model_input("student")


def kd_base(wildcards):
    init = JOBS.kd_init(wildcards.teacher, wildcards.variant, wildcards.seed)
    return init or JOBS.base_model("student")


def fidelity_inputs():
    spec = JOBS.fidelity()
    files = [spec["loss"]]
    for runs in spec["objectives"].values():
        files += [f for run in runs.values() for fs in run.values() for f in fs]
    return files


def fidelity_outputs():
    """The fidelity report, when teacher_store.fidelity.objectives asks for one."""
    if not config["teacher_store"]["fidelity"]["objectives"]:
        return []
    return expand("results/teacher_store/fidelity.{ext}", ext=["json", "md"])
