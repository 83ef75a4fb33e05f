# Helpers shared by the rules: config validation at parse time, paths, and each job's config slice.
import sys

from snakemake.exceptions import WorkflowError

from sekd import data as alma
from sekd import study
from sekd.config import deep_merge, typed_cli_overrides
from sekd.config import unpinned_warnings, validate_config
from sekd.errors import ConfigError
from sekd.objectives import kd_objectives
from sekd.runs import SOURCE_PATTERN, as_resource, parse_source, serves, source_name
from sekd.runs import split_teacher
from sekd.sequences import GENERATION_PATTERN, parse_generation
from sekd.variants import NAME_PATTERN, parse_variant

try:
    # --config values as YAML types (Snakemake leaves nested ones strings)
    _cli = typed_cli_overrides(dict(workflow.config_settings.config))
    _validated = validate_config(deep_merge(dict(config), _cli))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)
if workflow.is_main_process:  # once per plan, not again in every job
    for _warning in unpinned_warnings(config):
        print(f"WARNING (config) {_warning}", file=sys.stderr)

MODEL_NAME = "[a-z][a-z0-9_]*"
TABLES = study.table_names(config)
FIGURES = study.figure_names(config)
# A KD run's teacher: the model (online) or <model>.<source> (read from a teacher store)
TEACHER = rf"{MODEL_NAME}(?:\.(?:{SOURCE_PATTERN}))?"


wildcard_constraints:
    model=MODEL_NAME,
    teacher=TEACHER,
    source=SOURCE_PATTERN,
    generation=GENERATION_PATTERN,
    variant=NAME_PATTERN,
    seed=r"\d+",
    pair=r"[a-z]{2,3}-en",
    direction=r"[a-z]{2,3}-[a-z]{2,3}",
    evalset="valid|wmt22",
    table="|".join(TABLES),
    fig="|".join(FIGURES),
    run=f"sft/{MODEL_NAME}|kd/{TEACHER}/{NAME_PATTERN}",
    relpath=r"[a-z]+/[A-Za-z0-9._-]+",


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


def languages_for(directions):
    """The `languages` entries a job needs: only the codes in `directions`."""
    codes = {code for d in directions for code in d.split("-")}
    return {code: config["languages"][code] for code in sorted(codes)}


def train_directions():
    return [
        d
        for pair in config["data"]["pairs"]
        for d in (pair, "-".join(pair.split("-")[::-1]))
    ]


def train_files():
    return expand("results/data/train/{pair}.jsonl", pair=config["data"]["pairs"])


def base_model(name):
    """A model's starting weights: a built tiny model's directory, or a hub id / local path."""
    model = config["models"][name]
    return f"results/models/base/{name}" if model["init"] else model["pretrained"]


def base_model_input(name):
    """The base model as a rule input (only when the workflow builds it)."""
    return [base_model(name)] if config["models"][name]["init"] else []


def model_dir(run, seed):
    return f"results/models/{run}/seed{seed}"


def run_model(run):
    """The config entry of the model a run trains: sft/<model> or kd/<teacher>/<variant> (student)."""
    kind, name = run.split("/")[:2]
    return config["models"][name if kind == "sft" else "student"]


def pinned(key, revision):
    """{key: revision} when a revision is set, else {} (params: an unpinned plan's params stay
    as they were, so adding the revision keys reruns nothing)."""
    return {key: revision} if revision else {}


def tokenizer_revision():
    """{"revision": ...} of the tokenizer's from_model when it is pinned, else {}."""
    name = config["tokenizer"]["from_model"]
    return pinned("revision", config["models"][name]["revision"] if name else None)


def training_slice(model_name):
    """The config a training job reads; nothing else, so unrelated edits rerun nothing."""
    model = config["models"][model_name]
    return {
        "training": config["training"],
        "languages": languages_for(train_directions()),
        "dtype": model["dtype"],
        "trust_remote_code": model["trust_remote_code"],
        **pinned("revision", model["revision"]),
    }


def kd_run(objective, teacher=None, store=None, **overrides):
    """The run path of a KD variant (sekd.study.kd_run with this config)."""
    return study.kd_run(config, objective, teacher, store, **overrides)


def store_slice(teacher, source):
    """What a teacher store job reads: its source (mode, K, τ), seed, and the data encoding."""
    spec = parse_source(source)
    if spec["mode"] == "sparse":
        spec["seed"] = config["teacher_store"]["seed"]
    return {
        **spec,
        "max_length": config["training"]["max_length"],
        "languages": languages_for(train_directions()),
        "dtype": config["models"][teacher]["dtype"],
        "trust_remote_code": config["models"][teacher]["trust_remote_code"],
        **pinned("student_revision", config["models"]["student"]["revision"]),
    }


def outputs_slice(model, generation):
    """What a teacher_outputs job's outputs depend on (params decide reruns): the generation
    setting, the prompts' encoding, the sentence BLEU's tokenizer and how the teacher loads.
    """
    return {
        "generation": parse_generation(generation),
        "max_length": config["training"]["max_length"],
        "max_new_tokens": config["sequences"]["max_new_tokens"],
        "languages": languages_for(train_directions()),
        "tokenize": config["scoring"]["tokenize"],
        "dtype": config["models"][model]["dtype"],
        "trust_remote_code": config["models"][model]["trust_remote_code"],
    }


def kd_teacher_input(wildcards):
    """A KD job's teacher: the SFT'd model (online) or its store (<model>.<source>)."""
    model, source = split_teacher(wildcards.teacher)
    if source is None:
        return f"results/models/sft/{model}/seed{wildcards.seed}"
    objective = parse_variant(wildcards.variant).objective
    mode = parse_source(source)["mode"]
    if not serves(objective, mode):
        raise WorkflowError(
            f"kd/{wildcards.teacher}/{wildcards.variant}: {objective} needs the teacher's full "
            f"distribution, which a {mode} teacher store does not hold"
        )
    return f"results/teacher_store/{model}/{source}/seed{wildcards.seed}"


SPARSE_SOURCE = source_name({**config["teacher_store"], "mode": "sparse"})


def fidelity_spec():
    """The sparse store's fidelity report: the loss comparison and, per objective, the score
    files of the runs trained from the online teacher and from the store (Table 1's teacher).
    """
    teacher = study.default_teacher(config)
    sparse = {**config["teacher_store"], "mode": "sparse"}
    online = {"mode": "online"}
    return {
        "teacher": teacher,
        "source": SPARSE_SOURCE,
        "loss": f"results/teacher_store/fidelity/{teacher}/{SPARSE_SOURCE}/seed{SEEDS[0]}.json",
        "objectives": {
            objective: {
                "online": score_files(kd_run(objective, teacher, online)),
                "store": score_files(kd_run(objective, teacher, sparse)),
            }
            for objective in config["teacher_store"]["fidelity"]["objectives"]
        },
    }


def fidelity_inputs():
    spec = fidelity_spec()
    files = [spec["loss"]]
    for runs in spec["objectives"].values():
        files += [f for run in runs.values() for fs in run.values() for f in fs]
    return files


def fidelity_outputs():
    """The fidelity report, when teacher_store.fidelity.objectives asks for one."""
    if not config["teacher_store"]["fidelity"]["objectives"]:
        return []
    return expand("results/teacher_store/fidelity.{ext}", ext=["json", "md"])


def score_files(run, evalset="wmt22", directions=None, kind="scores"):
    """{direction: [score file per seed]}; kind: scores (BLEU), comet, scores_vs_teacher."""
    return study.score_files(config, run, evalset, directions, kind)


# The tables and figures declared in config/paper.yaml (sekd.study): one generic rule each.


def table_spec(table):
    return study.table_spec(config, table)


def significance_spec(table):
    return study.significance_spec(config, table)


def figure_spec(fig):
    return study.figure_spec(config, fig)


def table_outputs():
    return study.table_outputs(config)


def figure_outputs():
    return study.figure_outputs(config)


def table_curves_outputs():
    return study.table_curves_outputs(config)
