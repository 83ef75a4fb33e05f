# Helpers shared by the rules: config validation at parse time, paths, and each job's config slice.
import os
import sys

from snakemake.exceptions import WorkflowError

from sekd import data as alma
from sekd import allocation, sizing
from sekd import study
from sekd.config import deep_merge, load_schema, typed_cli_overrides
from sekd.config import unpinned_warnings, validate_config
from sekd.errors import ConfigError
from sekd.objectives import FDISTILL, OBJECTIVES, kd_objectives
from sekd.runs import SOURCE_PATTERN, as_resource, parse_source, serves, source_name
from sekd.runs import drop_runtime_keys, split_teacher
from sekd.sequences import GENERATION_PATTERN, teacher_outputs_dir
from sekd.variants import NAME_PATTERN

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


# Open choices of issue 11 that act on SFT and data (docs/reproduction.md, "Open choices"): in a
# job's params only when not their schema default, so the paper's jobs keep their params.
_SCHEMA = load_schema()["properties"]


def schema_default(section, key):
    """The schema's default of config key <section>.<key>."""
    return _SCHEMA[section]["properties"][key]["default"]


def not_default(section, key):
    """{key: value} of config key <section>.<key> when it is not its default, else {}."""
    value = config[section][key]
    return {} if value == schema_default(section, key) else {key: value}


def formatting():
    """How prompts and examples are encoded (prompt.response_newline, training.truncation),
    each only when not the default: for the teacher_outputs, teacher_store and tokenizer params.
    """
    return {
        **not_default("prompt", "response_newline"),
        **not_default("training", "truncation"),
    }


def training_slice(model_name):
    """The config a training job reads; nothing else, so unrelated edits rerun nothing.
    training.truncation and prompt.response_newline only when not their defaults;
    training.sft_selection never (sft_job adds it, to the SFT jobs only)."""
    model = config["models"][model_name]
    training = {k: v for k, v in config["training"].items() if k != "sft_selection"}
    if not not_default("training", "truncation"):
        training.pop("truncation")
    prompt = not_default("prompt", "response_newline")
    return {
        "training": training,
        "languages": languages_for(train_directions()),
        "dtype": model["dtype"],
        "trust_remote_code": model["trust_remote_code"],
        **pinned("revision", model["revision"]),
        **({"prompt": prompt} if prompt else {}),
    }


def sft_job(model_name):
    """What an SFT job computes from (its params): the training slice without the runtime
    keys, with training.sft_selection when not valid_loss, and for valid_bleu the decoding and
    scoring it selects with (sekd.selection)."""
    job = drop_runtime_keys(training_slice(model_name))
    selection = not_default("training", "sft_selection")
    job["training"].update(selection)
    if selection.get("sft_selection") == "valid_bleu":
        job["valid_bleu"] = {
            "tokenize": config["scoring"]["tokenize"],
            "max_new_tokens": config["decoding"]["max_new_tokens"],
            "batch_size": config["decoding"]["batch_size"],
        }
    return job


def decode_options():
    """The decode rule's `decoding` param: the decoding section, with prompt.response_newline
    when not the default."""
    return {**config["decoding"], **not_default("prompt", "response_newline")}


ENGINE_ENVS = {"hf": "../envs/train.yaml", "vllm": "../envs/vllm.yaml"}
# environment.cuda picks the CUDA generation of the train and vLLM envs (docs/environments.md).
CUDA_ENVS = {"13": {}, "12": {"train": "train-cu12", "vllm": "vllm-cu12"}}


def gpu_env(path):
    """The conda env file `path` (../envs/train.yaml or vllm.yaml) in the variant that
    environment.cuda names: the CUDA 12 builds under "12", the file itself under "13".
    """
    name = os.path.basename(path).removesuffix(".yaml")
    variant = CUDA_ENVS[str(config["environment"]["cuda"])]
    return f"../envs/{variant.get(name, name)}.yaml"


def engine_env(section):
    """The conda env file (relative to the rules) of the jobs that generate with
    `<section>.engine`, decoding for decode and sequences for teacher_outputs: vLLM's own env
    (vLLM 0.32 on the train env's torch and transformers, docs/environments.md) for vllm, the
    train env for hf."""
    engine = config[section]["engine"]
    if engine not in ENGINE_ENVS:
        raise WorkflowError(
            f"{section}.engine: {engine!r} has no conda env; one of {', '.join(ENGINE_ENVS)}"
        )
    return gpu_env(ENGINE_ENVS[engine])


def tokenizer_training():
    """The tokenizer rule's `train` param: tokenizer.train (null: pretrained), with
    prompt.response_newline when not the default (the BPE is trained on the prompts)."""
    train = config["tokenizer"]["train"]
    return {**train, **not_default("prompt", "response_newline")} if train else train


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
        **formatting(),
    }


def outputs_slice(model, generation):
    """What a teacher_outputs job's outputs depend on (params decide reruns): the generation
    setting, the prompts' encoding, the sentence BLEU's tokenizer, how the teacher loads, and
    the engine when not hf."""
    engine = config["sequences"]["engine"]
    try:  # the plan's values of the setting the path names
        values = study.planned_generation(config, generation)
    except ValueError as error:
        raise WorkflowError(str(error)) from None
    return {
        "generation": values,
        "max_length": config["training"]["max_length"],
        "max_new_tokens": config["sequences"]["max_new_tokens"],
        "languages": languages_for(train_directions()),
        "tokenize": config["scoring"]["tokenize"],
        "dtype": config["models"][model]["dtype"],
        "trust_remote_code": config["models"][model]["trust_remote_code"],
        # the default engine is left out: the params of the runs before the key existed stay
        **({} if engine == "hf" else {"engine": engine}),
        **formatting(),
    }


def kd_variant(wildcards):
    """The variant of a KD job: the plan's run of that name (sekd.study.planned_variant), whose
    values it trains with; the name is matched, never read for a value."""
    try:
        return study.planned_variant(config, wildcards.variant)
    except ValueError as error:
        raise WorkflowError(str(error)) from None


def kd_values(wildcards, output):
    """Rule kd's `run` param: the job's objective, hyper-parameter values and run options
    (sekd.variants.Variant.values), from the plan. A function of the output path (the run name
    identifies them one to one), so Snakemake does not record it (its params trigger skips
    params derived from output): a changed value changes the path, i.e. is a new job, as
    before; the recorded params of every existing KD job stay what they were."""
    try:
        return study.kd_values(config, wildcards.variant)
    except ValueError as error:
        raise WorkflowError(str(error)) from None


def kd_teacher_input(wildcards):
    """A KD job's teacher logits: the SFT'd model (online) or its store (<model>.<source>);
    none when the objective reads no teacher logits (sequence-level KD)."""
    model, source = split_teacher(wildcards.teacher)
    objective = kd_variant(wildcards).objective
    if source is not None and not serves(objective, parse_source(source)["mode"]):
        raise WorkflowError(
            f"kd/{wildcards.teacher}/{wildcards.variant}: a {source} teacher store cannot serve "
            f"{objective} (it needs the teacher's full distribution, trains on sequences other "
            "than the gold ones, or reads no teacher logits); name the run kd/{model}/..."
        )
    if not OBJECTIVES[objective].reads_teacher_logits:
        return []
    if source is None:
        return [f"results/models/sft/{model}/seed{wildcards.seed}"]
    return [f"results/teacher_store/{model}/{source}/seed{wildcards.seed}"]


def kd_sequences_input(wildcards):
    """The teacher's outputs a KD job trains on (rule teacher_outputs), if its objective does."""
    model = split_teacher(wildcards.teacher)[0]
    outputs = teacher_outputs_dir(model, kd_variant(wildcards), wildcards.seed)
    return [outputs] if outputs else []


def kd_init(wildcards):
    """Where a KD run's student starts when not from its base model (None): its run option
    `init` (set from student_init.kd, or student_init.fdistill for the f-DISTILL objectives):
    the SFT'd student, or the word_kd run of the same teacher and seed."""
    variant = kd_variant(wildcards)
    init = variant.option("init")
    if init == "word_kd_student" and variant.objective not in FDISTILL:
        raise WorkflowError(
            f"kd/{wildcards.teacher}/{wildcards.variant}: init.word_kd_student is for the "
            f"f-DISTILL objectives ({', '.join(FDISTILL)}) only"
        )
    if init == "base":
        return None
    if init == "sft_student":
        return model_dir("sft/student", wildcards.seed)
    teacher = split_teacher(wildcards.teacher)[0]
    return model_dir(kd_run("word_kd", teacher), wildcards.seed)


def kd_base_input(wildcards):
    """The starting weights of a KD job as an input (when the workflow makes them)."""
    init = kd_init(wildcards)
    return [init] if init else base_model_input("student")


def kd_base(wildcards):
    init = kd_init(wildcards)
    return init or base_model("student")


def kd_job(wildcards):
    """What a KD job computes from (its params): the student's training slice without the
    runtime keys, and the sampling length of objectives that sample from the student."""
    job = drop_runtime_keys(training_slice("student"))
    if kd_init(wildcards):  # a checkpoint of this workflow, not the hub's model
        job.pop("revision", None)
    if OBJECTIVES[kd_variant(wildcards).objective].student_sequences:
        job["sequences"] = {"max_new_tokens": config["sequences"]["max_new_tokens"]}
    return job


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


# GPU jobs sized from the plan (sekd.allocation): the profile describes the cluster in its
# default-resources (profiles/slurm: gpu_mem_gb, gpus_per_node, ...), read here at parse time
# (Snakemake passes them on to every job it submits); each model-loading rule's GPUs, nodes, host
# memory and wall time come from its job's estimate, printed once per rule and model, and the
# plan stops naming the rule and model when a job cannot fit. No gpu_mem_gb (profiles/local, the
# miniature): no job asks for GPUs, and the rules' CPU defaults stand.
CLUSTER = allocation.Cluster.from_resources(
    allocation.constant_resources(workflow.resource_settings.default_resources)
)
_REQUESTS = {}


def gpu_request(rule_name, wildcards):
    """The sekd.allocation.Request of one job (computed once, its line printed once)."""
    key = (rule_name, tuple(sorted(dict(wildcards).items())))
    if key not in _REQUESTS:
        try:
            request = allocation.plan_request(config, CLUSTER, rule_name, wildcards)
        except sizing.SizingError as error:
            raise WorkflowError(str(error)) from None
        if workflow.is_main_process and not any(
            (r.rule, r.label) == (request.rule, request.label)
            for r in _REQUESTS.values()
        ):
            print(f"GPU sizing: {request.line()}", file=sys.stderr)
        _REQUESTS[key] = request
    return _REQUESTS[key]


def sized(rule_name, **cpu):
    """A model-loading rule's resources: on a described GPU cluster, per job from its
    Request (nodes, gres, mem_mb, runtime; tasks_per_node for training); else `cpu`."""
    if CLUSTER is None:
        return cpu
    keys = allocation.request_keys(rule_name)
    return {
        key: lambda wc, key=key: gpu_request(rule_name, wc).resources()[key]
        for key in keys
    }
