# Helpers shared by the rules: config validation at parse time, paths, and each job's config slice.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from snakemake.exceptions import WorkflowError

from sekd import data as alma
from sekd.config import validate_config
from sekd.errors import ConfigError
from sekd.objectives import KD_OBJECTIVES, OBJECTIVES
from sekd.tables import direction_label
from sekd.runs import SOURCE_PATTERN, as_resource, parse_source, serves, source_name
from sekd.runs import split_teacher, teacher_segment
from sekd.variants import NAME_PATTERN, make_variant, parse_variant

try:
    _validated = validate_config(dict(config))
except ConfigError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(_validated)

MODEL_NAME = "[a-z][a-z0-9_]*"
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
    table="table1|table2",
    fig="fig2a|fig2b|fig2c|fig3|fig4|fig5",
    run=f"sft/{MODEL_NAME}|kd/{TEACHER}/{NAME_PATTERN}",
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


def training_slice(model_name):
    """The config a training job reads; nothing else, so unrelated edits rerun nothing."""
    model = config["models"][model_name]
    return {
        "training": config["training"],
        "languages": languages_for(train_directions()),
        "dtype": model["dtype"],
        "trust_remote_code": model["trust_remote_code"],
    }


def kd_run(objective, teacher=None, store=None, **overrides):
    """The run path of a KD variant with the config's `kd` hyper-parameters and overrides; its
    teacher is read from a store per `store` (default: the config's `teacher_store`)."""
    variant = make_variant(objective, config["kd"], **overrides)
    teacher = teacher or config["tables"]["table1"]["teacher"]
    segment = teacher_segment(teacher, objective, store or config["teacher_store"])
    return f"kd/{segment}/{variant.name}"


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
    teacher = config["tables"]["table1"]["teacher"]
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


def evalset_directions(evalset):
    """Directions of an evaluation set: WMT21 validation or WMT22 test."""
    data = config["data"]
    return data["valid_directions"] if evalset == "valid" else data["test_directions"]


def score_files(run, evalset="wmt22", directions=None, kind="scores"):
    """{direction: [score file per seed]}; kind: scores (BLEU), comet, scores_vs_teacher."""
    return {
        d: [f"results/{kind}/{run}/seed{s}/{evalset}/{d}.json" for s in SEEDS]
        for d in (directions or evalset_directions(evalset))
    }


TABLES = ["table1", "table2"]


def table_rows(table):
    """(label, run) rows: Teacher (and Student in Table 1), then the KD objectives (§5)."""
    spec = config["tables"][table]
    rows = [("Teacher", f"sft/{spec['teacher']}")]
    if table == "table1":
        rows.append(("Student", "sft/student"))
    rows += [
        (OBJECTIVES[o].label, kd_run(o, spec["teacher"])) for o in spec["objectives"]
    ]
    return rows


def table_spec(table):
    """Everything a table job reads, i.e. its rows with their score files."""
    with_comet = table == "table1" and config["scoring"]["comet_model"] is not None
    rows = []
    for label, run in table_rows(table):
        rows.append(
            {
                "system": label,
                "run": run,
                "scores": score_files(run),
                "comet": score_files(run, kind="comet") if with_comet else None,
            }
        )
    return rows


def significance_spec(table):
    """The baseline and the systems tested against it (first seed's hypotheses, WMT22)."""
    baseline = OBJECTIVES[config["tables"]["baseline"]].label
    rows = [(label, run) for label, run in table_rows(table) if run.startswith("kd/")]
    hyps = lambda run: {
        d: f"results/hyps/{run}/seed{SEEDS[0]}/wmt22/{d}.txt" for d in TEST_DIRECTIONS
    }
    return {
        "baseline": baseline,
        "systems": {label: hyps(run) for label, run in rows},
        "references": {d: f"results/data/wmt22/{d}.jsonl" for d in TEST_DIRECTIONS},
    }


FIGURES = ["fig2a", "fig2b", "fig2c", "fig3", "fig4", "fig5"]


def figure_spec(fig):
    """The points of one figure (sekd.figures' input) and how to draw it."""
    f = config["figures"][fig]
    kd = config["kd"]
    evalset = f["evalset"]
    directions = evalset_directions(evalset)

    def point(series, x, run, reference=False):
        return {
            "series": series,
            "x": x,
            "run": run,
            "scores": score_files(run, evalset, directions),
            "reference": reference,
        }

    sekd = OBJECTIVES["sekd"].label
    if fig == "fig2a":
        points = [point(sekd, g, kd_run("sekd", gamma=g)) for g in f["gamma"]]
        return {"kind": "line", "xlabel": "Γ", "points": points}
    if fig == "fig2b":
        topk = OBJECTIVES["sekd_topk"].label
        points = [
            point(topk, k, kd_run("sekd_topk", top_k_percent=k))
            for k in f["top_k_percent"]
        ]
        for objective in ("noevo_kd", "skew_kd", "sekd"):
            label = OBJECTIVES[objective].label + (
                " w/ Γ" if objective == "sekd" else ""
            )
            points.append(point(label, None, kd_run(objective), reference=True))
        return {
            "kind": "line",
            "xlabel": "K (% of tokens selected as hard)",
            "points": points,
        }
    if fig == "fig2c":
        points = [point(sekd, b, kd_run("sekd", beta=b)) for b in f["beta"]]
        return {"kind": "line", "xlabel": "β", "points": points}
    if fig == "fig3":
        points = [point(sekd, f"static {kd['beta']:g}", kd_run("sekd"))]
        for b, e in f["beta_schedules"]:
            points.append(point(sekd, f"{b:g}→{e:g}", kd_run("sekd", beta=[b, e])))
        return {"kind": "bar", "xlabel": "β strategy", "points": points}
    if fig == "fig4":
        points = []
        for objective in f["objectives"]:
            run = kd_run(objective)
            for d in directions:
                points.append(
                    {
                        "series": OBJECTIVES[objective].label,
                        "x": direction_label(d),
                        "run": run,
                        "scores": score_files(
                            run, evalset, [d], kind="scores_vs_teacher"
                        ),
                    }
                )
        return {"kind": "bar", "xlabel": "Direction", "points": points}
    if fig == "fig5":
        label = OBJECTIVES["skew_teacher_kd"].label
        points = [
            point(label, lam, kd_run("skew_teacher_kd", lam=lam, beta=f["beta"]))
            for lam in f["lam"]
        ]
        points.append(point(sekd, None, kd_run("sekd"), reference=True))
        return {"kind": "line", "xlabel": "λ", "points": points}
    raise ValueError(f"unknown figure {fig!r}")


def figure_inputs(fig):
    return sorted(
        {
            f
            for p in figure_spec(fig)["points"]
            for fs in p["scores"].values()
            for f in fs
        }
    )


def figure_outputs():
    return expand("results/figures/{fig}.{ext}", fig=FIGURES, ext=["png", "pdf", "csv"])


def table_outputs():
    return expand("results/{table}.{ext}", table=TABLES, ext=["csv", "md", "tex"])
