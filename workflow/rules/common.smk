# Helpers shared by the rules: config validation at parse time, paths, and each job's config slice.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from snakemake.exceptions import WorkflowError

from sekd import data as alma
from sekd.config import validate_config
from sekd.errors import ConfigError
from sekd.objectives import OBJECTIVES
from sekd.variants import NAME_PATTERN, make_variant

try:
    _validated = validate_config(dict(config))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

MODEL_NAME = "[a-z][a-z0-9_]*"


wildcard_constraints:
    model=MODEL_NAME,
    teacher=MODEL_NAME,
    variant=NAME_PATTERN,
    seed=r"\d+",
    pair=r"[a-z]{2,3}-en",
    direction=r"[a-z]{2,3}-[a-z]{2,3}",
    evalset="valid|wmt22",
    run=f"sft/{MODEL_NAME}|kd/{MODEL_NAME}/{NAME_PATTERN}",
    relpath=r"[a-z]+/[A-Za-z0-9._-]+",


SEEDS = config["seeds"]
TEST_DIRECTIONS = config["data"]["test_directions"]


def raw_file(relpath):
    """Where a fetched ALMA file lives (relpath below human_written_data/)."""
    return f"resources/alma/{relpath}"


def languages_for(directions):
    """The `languages` entries a job needs: only the codes in `directions`."""
    codes = {code for d in directions for code in d.split("-")}
    return {code: config["languages"][code] for code in sorted(codes)}


def train_directions():
    return [d for pair in config["data"]["pairs"] for d in (pair, "-".join(pair.split("-")[::-1]))]


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


def training_slice(model_name):
    """The config a training job reads; nothing else, so unrelated edits rerun nothing."""
    model = config["models"][model_name]
    return {
        "training": config["training"],
        "languages": languages_for(train_directions()),
        "dtype": model["dtype"],
        "trust_remote_code": model["trust_remote_code"],
    }


def kd_run(objective, teacher=None, **overrides):
    """The run path of a KD variant with the config's `kd` hyper-parameters and overrides."""
    variant = make_variant(objective, config["kd"], **overrides)
    return f"kd/{teacher or config['kd']['teacher']}/{variant.name}"


def table1_rows():
    """(label, run) of Table 1: Teacher, Student, then the KD objectives (§5.1)."""
    rows = [("Teacher", f"sft/{config['kd']['teacher']}"), ("Student", "sft/student")]
    rows += [(OBJECTIVES[o].label, kd_run(o)) for o in config["kd"]["table1_objectives"]]
    return rows


def score_files(run, evalset="wmt22", directions=None):
    return {
        d: [f"results/scores/{run}/seed{s}/{evalset}/{d}.json" for s in SEEDS]
        for d in (directions or TEST_DIRECTIONS)
    }
