"""The study's tables and figures as plain functions of the config; config/paper.yaml declares them.

Torch-free and free of numpy/pandas: the rules call these at parse time. A table's rows are its
SFT'd models (`sft_rows`) and one KD run per objective (§5, Tables 1-2); a figure's points are KD
runs with one hyper-parameter swept (`sweep`) and the others from `kd` or the line's `fixed`
(§5.2-5.3, Figs. 2-5). Nothing here knows a table or a figure by name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sekd.plan.objectives import FDISTILL, HPARAMS, OBJECTIVES, RUN_OPTIONS, param_symbols
from sekd.plan.run_names import teacher_segment
from sekd.plan.sequences import generation_job, generation_name
from sekd.plan.variants import Variant, make_variant
from sekd.plan.yaml_loader import read_yaml
from sekd.report.tables import direction_label

PAPER_PATH = Path(__file__).resolve().parents[3] / "config" / "paper.yaml"
# Keys of `tables` that are settings shared by every table, not tables.
TABLE_SETTINGS = ("baseline", "bootstrap_samples", "bootstrap_seed")
OUTPUT_EXTENSIONS = {"table": ["csv", "md", "tex"], "figure": ["png", "pdf", "csv"]}


def load_paper(path: str | Path = PAPER_PATH) -> dict:
    """The declarations of config/paper.yaml (`tables`, `figures`): the defaults of those keys."""
    return read_yaml(path) or {}


def table_names(config: dict) -> list[str]:
    """The declared tables, in declaration order."""
    return [name for name in config["tables"] if name not in TABLE_SETTINGS]


def figure_names(config: dict) -> list[str]:
    """The declared figures, in declaration order."""
    return list(config["figures"])


def evalset_directions(config: dict, evalset: str) -> list[str]:
    """Directions of an evaluation set: WMT21 validation (valid) or WMT22 test (wmt22)."""
    data = config["data"]
    return data["valid_directions"] if evalset == "valid" else data["test_directions"]


def table_seeds(config: dict, table: str) -> list[int]:
    """The training seeds of a table's rows: its own `seeds` (config/mini.yaml: Table 1 over three
    seeds, for an interval over seeds), else the config's `seeds`."""
    return list(config["tables"][table].get("seeds") or config["seeds"])


def score_files(
    config: dict,
    run: str,
    evalset: str = "wmt22",
    directions: list[str] | None = None,
    kind: str = "scores",
    seeds: list[int] | None = None,
) -> dict[str, list[str]]:
    """{direction: [score file per seed]}; kind: scores (BLEU and chrF), comet, scores_vs_teacher;
    `seeds`: a table's (`table_seeds`), default the config's."""
    return {
        d: [f"results/{kind}/{run}/seed{s}/{evalset}/{d}.json" for s in seeds or config["seeds"]]
        for d in (directions or evalset_directions(config, evalset))
    }


def default_teacher(config: dict) -> str:
    """The teacher of KD runs that name none: the first table's (Table 1's)."""
    return config["tables"][table_names(config)[0]]["teacher"]


def run_options(config: dict, objective: str, **chosen: str) -> dict:
    """{option: value} of a KD run of `objective` from the config's keys of the run options
    (sekd.plan.objectives.RUN_OPTIONS), with `chosen` values instead where given."""
    init = config["student_init"]["fdistill" if objective in FDISTILL else "kd"]
    options = {"init": init}
    for name, option in RUN_OPTIONS.items():
        section, _, key = option.key.partition(".")
        if key:
            options[name] = config[section][key]
    return {**options, **chosen}


def kd_run(
    config: dict,
    objective: str,
    teacher: str | None = None,
    store: dict | None = None,
    options: dict | None = None,
    **overrides: Any,
) -> str:
    """The run path of a KD variant with the config's `kd` hyper-parameters and `overrides`, and
    its run options from the config or `options`; its teacher is read from a store per `store`
    (default: the config's `teacher_store`)."""
    variant = kd_variant(config, objective, options, **overrides)
    teacher = teacher or default_teacher(config)
    segment = teacher_segment(teacher, objective, store or config["teacher_store"])
    return f"kd/{segment}/{variant.name}"


_COLLECTING: list[dict[str, Variant]] = []
"""While `_planned_runs` names a config's runs: the variants `kd_variant` makes, by run name."""
_PLANS: dict[str, dict[str, Variant]] = {}
"""Every KD run of a config's plan, by run name, per config (its canonical JSON): a cache of
what `_plan_every_run` names, never a second source, and never shared between configs."""


def kd_variant(
    config: dict, objective: str, options: dict | None = None, **overrides: Any
) -> Variant:
    """The KD variant of `objective` with the config's `kd` hyper-parameters and `overrides` and
    its run options from the config or `options`: the values its job trains with
    (`planned_variant`)."""
    chosen = run_options(config, objective, **(options or {}))
    variant = make_variant(objective, config["kd"], chosen, **overrides)
    if _COLLECTING:
        _COLLECTING[-1].setdefault(variant.name, variant)
    return variant


def _planned_runs(config: dict) -> dict[str, Variant]:
    """{run name: Variant} of every KD run of `config`'s plan (computed once per config)."""
    key = json.dumps(config, sort_keys=True, default=str)
    if key not in _PLANS:
        _COLLECTING.append({})
        try:
            _plan_every_run(config)
        finally:
            _PLANS[key] = _COLLECTING.pop()
    return _PLANS[key]


def planned_variant(config: dict, name: str) -> Variant:
    """The variant the plan names `name`: the values a KD job trains with (rule kd's `run`
    param). Looked up among the plan's runs (its tables, figures, sensitivity alternatives,
    store fidelity runs and the f-DISTILL word_kd start), never read from the name; a ValueError
    for a name the plan does not make."""
    runs = _planned_runs(config)
    if name not in runs:
        raise ValueError(
            f"KD run {name!r} is not a run of this config's plan (its tables, figures, "
            "sensitivity alternatives or teacher store fidelity): declare it there to train it"
        )
    return runs[name]


def planned_generation(config: dict, name: str) -> dict:
    """The teacher_outputs job's generation keywords of path segment `name` (``beam5``,
    ``sample-t1-k0-p1``): those of the plan's runs that train on it (`generation_job` of their
    `Variant.teacher_generation`), never read from the segment; a ValueError when no run of the
    plan trains on it."""
    for variant in _planned_runs(config).values():
        if OBJECTIVES[variant.objective].teacher_sequences:
            setting = variant.teacher_generation
            if generation_name(setting) == name:
                return generation_job(setting)
    raise ValueError(
        f"teacher generation {name!r}: no KD run of this config's plan trains on it (its tables, "
        "figures, sensitivity alternatives or teacher store fidelity)"
    )


def _plan_every_run(config: dict) -> None:
    """Name every KD run of the plan (each call of `kd_variant` records its variant)."""
    for table in table_names(config):
        table_rows(config, table)
    for fig in figure_names(config):
        figure_spec(config, fig)
    if config["sensitivity"]["alternatives"]:
        sensitivity_spec(config)
    for objective in [*config["teacher_store"]["fidelity"]["objectives"], "word_kd"]:
        kd_variant(config, objective)


# Tables

PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
"""A placeholder in a table's title, caption or row label: {teacher}, {student}, {paper}."""
SAME_RUN_SIGNS = ("‡", "§", "¶")
"""The footnote sign of each group of rows that are one training run up to a constant."""


def model_label(config: dict, name: str) -> str:
    """How a table names model `name` (a key of `models`): a hub id or path by its last component
    (huggyllama/llama-13b -> llama-13b); a model built from `init` by its architecture, width and
    depth (tiny Llama 128×3)."""
    model = config["models"][name]
    if model.get("pretrained"):
        return Path(model["pretrained"].rstrip("/")).name
    init = model.get("init") or {}
    if init:
        return f"tiny Llama {init['hidden_size']}×{init['num_hidden_layers']}"
    return name


def table_placeholders(config: dict, table: str) -> dict[str, str]:
    """What {teacher} and {student} stand for in a table's title, caption and row labels: its
    teacher (`tables.<table>.teacher`) and models.student, as `model_label` names them."""
    spec = config["tables"][table]
    return {
        "teacher": model_label(config, spec["teacher"]),
        "student": model_label(config, "student"),
    }


def fill_placeholders(text: str, values: dict[str, str], where: str) -> str:
    """`text` with every {name} replaced by values[name]; a ValueError naming `where` (a config
    key) for a placeholder that is not one of `values`."""

    def value(match: re.Match) -> str:
        if match[1] not in values:
            raise ValueError(
                f"config key {where!r}: unknown placeholder {{{match[1]}}} "
                f"(known: {', '.join('{' + k + '}' for k in values)})"
            )
        return values[match[1]]

    return PLACEHOLDER_RE.sub(value, text)


def table_title(config: dict, table: str) -> str:
    """The declared title with {teacher}/{student} filled from the configured models: the
    Markdown table's heading and the LaTeX table's caption."""
    title = config["tables"][table]["title"]
    return fill_placeholders(title, table_placeholders(config, table), f"tables.{table}.title")


def table_rows(config: dict, table: str) -> list[tuple[str, str]]:
    """(label, run) rows: the declared SFT'd models, then one KD run per objective (§5)."""
    spec = config["tables"][table]
    model = {"teacher": spec["teacher"], "student": "student"}
    values = table_placeholders(config, table)
    rows = [
        (
            fill_placeholders(row["label"], values, f"tables.{table}.sft_rows.{i}.label"),
            f"sft/{model[row['role']]}",
        )
        for i, row in enumerate(spec["sft_rows"])
    ]
    rows += [(OBJECTIVES[o].label, kd_run(config, o, spec["teacher"])) for o in spec["objectives"]]
    return rows


def table_delta(config: dict, table: str) -> dict | None:
    """The table's Δ row (the paper's Table 1): {"system": the row label of `tables.<table>.delta`,
    "baseline": that of `tables.baseline`}, the row showing system minus baseline in every column;
    None when the table has no Δ row."""
    objective = config["tables"][table].get("delta")
    if objective is None:
        return None
    return {
        "system": OBJECTIVES[objective].label,
        "baseline": OBJECTIVES[config["tables"]["baseline"]].label,
    }


def table_reading(config: dict, table: str) -> dict | None:
    """What the reading of a table with a Δ row needs (sekd.report.reading): its title ("What the
    miniature shows" when every model is built from `init`), the paper's numbers, the Δ row, and
    the row labels of its teacher and student; None without a Δ row or without both SFT rows."""
    delta = table_delta(config, table)
    labels = dict((run, label) for label, run in table_rows(config, table))
    spec = config["tables"][table]
    roles = (labels.get(f"sft/{spec['teacher']}"), labels.get("sft/student"))
    if delta is None or None in roles:
        return None
    miniature = all(model["init"] for model in config["models"].values())
    what = "the miniature" if miniature else "this run"
    return {
        "title": f"What {what} shows: {table}",
        "paper": spec.get("paper") or {},
        "delta": delta,
        "roles": list(roles),
    }


def same_run_groups(config: dict, table: str) -> list[list[str]]:
    """The row labels of each group of KD rows that are one training run up to a constant: their
    objectives have the same gradient (`Objective.same_gradient_as`) and the table trains them with
    equal hyper-parameters from the same teacher source. Groups of one row are left out."""
    spec = config["tables"][table]
    groups: dict[tuple, list[str]] = {}
    for objective in spec["objectives"]:
        o = OBJECTIVES[objective]
        hparams = tuple(sorted(make_variant(objective, config["kd"]).hparams.items()))
        source = teacher_segment(spec["teacher"], objective, config["teacher_store"])
        key = (o.same_gradient_as or o.name, source, hparams)
        groups.setdefault(key, []).append(o.label)
    return [labels for labels in groups.values() if len(labels) > 1]


def table_marks(config: dict, table: str) -> list[dict]:
    """[{"sign", "systems"}]: the footnote sign (SAME_RUN_SIGNS) of each `same_run_groups` group."""
    groups = same_run_groups(config, table)
    if len(groups) > len(SAME_RUN_SIGNS):
        raise ValueError(f"tables.{table}: more than {len(SAME_RUN_SIGNS)} groups of equal runs")
    return [
        {"sign": sign, "systems": labels}
        for sign, labels in zip(SAME_RUN_SIGNS, groups, strict=False)
    ]


def fit_files(config: dict, run: str, teacher: str, seeds: list[int] | None = None) -> list[str]:
    """The validation fit of a trained run against teacher model `teacher`
    (sekd.evaluate.validation_fit: mean NLL of the WMT21 references, mean KL(p||q) of the teacher p
    to the run's model q), one per seed (`seeds`, default the config's; rule fit). The teacher is
    in the path: a model may sit in tables of different teachers."""
    return [f"results/fit/{run}/seed{s}/{teacher}.json" for s in seeds or config["seeds"]]


def table_spec(config: dict, table: str) -> list[dict]:
    """Everything a table job reads, i.e. its rows with their score files (COMET if declared)
    and their validation fit against the table's teacher, one per seed of the table."""
    with_comet = config["tables"][table]["comet"] and config["scoring"]["comet_model"] is not None
    teacher = config["tables"][table]["teacher"]
    seeds = table_seeds(config, table)
    return [
        {
            "system": label,
            "run": run,
            "scores": score_files(config, run, seeds=seeds),
            "comet": score_files(config, run, kind="comet", seeds=seeds) if with_comet else None,
            "fit": fit_files(config, run, teacher, seeds),
        }
        for label, run in table_rows(config, table)
    ]


def table_inputs(config: dict, table: str) -> list[str]:
    """Every score file of a table (BLEU, and COMET when shown) and every fit file."""
    spec = table_spec(config, table)
    scores = [
        f
        for row in spec
        for kind in ("scores", "comet")
        if row[kind]
        for fs in row[kind].values()
        for f in fs
    ]
    return scores + [f for row in spec for f in row["fit"]]


def significance_spec(config: dict, table: str) -> dict:
    """The baseline and the systems tested against it on WMT22: {"baseline": label, "seeds",
    "systems": {label: {direction: [hypotheses file per seed]}}, "references": {direction: file}}.
    The test pools the seeds (sekd.evaluate.significance.pooled_paired_bootstrap)."""
    directions = config["data"]["test_directions"]
    seeds = table_seeds(config, table)

    def hyps(run: str) -> dict[str, list[str]]:
        return {d: [f"results/hyps/{run}/seed{s}/wmt22/{d}.txt" for s in seeds] for d in directions}

    return {
        "baseline": OBJECTIVES[config["tables"]["baseline"]].label,
        "seeds": seeds,
        "systems": {
            label: hyps(run) for label, run in table_rows(config, table) if run.startswith("kd/")
        },
        "references": {d: f"results/data/wmt22/{d}.jsonl" for d in directions},
    }


def significance_inputs(config: dict, table: str) -> list[str]:
    """Every file the significance job reads: each seed's hypotheses of each KD row, the
    references."""
    spec = significance_spec(config, table)
    hyps = [f for h in spec["systems"].values() for files in h.values() for f in files]
    return [*hyps, *spec["references"].values()]


def _paper_numbers(numbers: dict[str, list[float]]) -> str:
    return ", ".join(
        f"{label} " + " / ".join(f"{v:.2f}" for v in values) for label, values in numbers.items()
    )


def table_caption(config: dict, table: str) -> str:
    """The declared caption, with "{paper}" replaced by the paper's numbers and {teacher} and
    {student} by the configured models (`table_placeholders`)."""
    spec = config["tables"][table]
    values = {**table_placeholders(config, table), "paper": _paper_numbers(spec["paper"])}
    return fill_placeholders(spec["caption"], values, f"tables.{table}.caption")


def table_outputs(config: dict) -> list[str]:
    extensions = OUTPUT_EXTENSIONS["table"]
    return [f"results/{name}.{ext}" for name in table_names(config) for ext in extensions]


# Figures


def _line_label(line: dict) -> str:
    return line.get("label", "{label}").replace("{label}", OBJECTIVES[line["objective"]].label)


def _x_label(value: Any) -> str:
    """A bar's category: 0.5, or 0.9→0.5 for a [start, end] schedule."""
    if isinstance(value, list):
        return "→".join(f"{v:g}" for v in value)
    return f"{value:g}"


def curve_files(config: dict, run: str, seeds: list[int] | None = None) -> list[str]:
    """The curves CSV of a training run, one per seed (`seeds`, default the config's; rule
    curves)."""
    return [f"results/curves/{run}/seed{s}.csv" for s in seeds or config["seeds"]]


def _swept_runs(config: dict, fig: str) -> list[tuple[str, str]]:
    """(legend label, run) of each swept point of a line or bar figure (its references left
    out): the runs a curve figure follows over training."""
    f = config["figures"][fig]
    param = f["sweep"]["param"]
    symbol = param_symbols().get(param, param)  # HParam.symbol
    seen: dict[str, str] = {}
    for point in figure_spec(config, fig)["points"]:
        if point["reference"]:
            continue
        x = point["x"] if isinstance(point["x"], str) else _x_label(point["x"])
        seen.setdefault(point["run"], f"{point['series']}, {symbol} = {x}")
    return [(label, run) for run, label in seen.items()]


def curve_figure_spec(config: dict, fig: str) -> dict:
    """A `kind: curve` figure: `y` against `x` over training, one line per swept run of the
    figures named in `from` (their curves CSVs, mean over seeds)."""
    f = config["figures"][fig]
    lines = [
        {"series": label, "run": run, "curves": curve_files(config, run)}
        for source in f["from"]
        for label, run in _swept_runs(config, source)
    ]
    return {
        "kind": "curve",
        "title": f["title"],
        "xlabel": f["xlabel"],
        "ylabel": f["ylabel"],
        "x": f["x"],
        "y": f["y"],
        "lines": lines,
    }


def table_curves_spec(config: dict, table: str) -> dict:
    """The training curves of every trained run of a table (its KD rows and the SFT'd models),
    one panel per logged value (rule table_curves), over the table's seeds."""
    seeds = table_seeds(config, table)
    return {
        "title": f"Training curves: {table}",
        "lines": [
            {"series": label, "run": run, "curves": curve_files(config, run, seeds)}
            for label, run in table_rows(config, table)
        ],
    }


def table_curves_inputs(config: dict, table: str) -> list[str]:
    return [f for line in table_curves_spec(config, table)["lines"] for f in line["curves"]]


def table_curves_outputs(config: dict) -> list[str]:
    """results/curves/<table>.png/.pdf/.csv for every declared table."""
    return [
        f"results/curves/{name}.{ext}"
        for name in table_names(config)
        for ext in OUTPUT_EXTENSIONS["figure"]
    ]


def figure_spec(config: dict, fig: str) -> dict:
    """The points of one figure (sekd.report.figures' input) and how to draw it.

    Each series contributes a point per swept value (a KD run with that value of `sweep.param`,
    or per direction of the evalset when the param is `direction`), each reference line one point
    at the config's hyper-parameters.
    """
    f = config["figures"][fig]
    if f["kind"] == "curve":
        return curve_figure_spec(config, fig)
    evalset, kind = f["evalset"], f["kind"]
    directions = evalset_directions(config, evalset)
    teacher = f["teacher"]
    param = f["sweep"]["param"]
    points: list[dict] = []

    def point(series: str, x: Any, run: str, dirs: list[str], reference: bool = False) -> None:
        scores = score_files(config, run, evalset, dirs, kind=f["scores"])
        points.append(
            {"series": series, "x": x, "run": run, "scores": scores, "reference": reference}
        )

    for line in f["series"]:
        label, fixed = _line_label(line), line.get("fixed", {})
        if param == "direction":
            run = kd_run(config, line["objective"], teacher, **fixed)
            for d in directions:
                point(label, direction_label(d), run, [d])
            continue
        default_label = f["sweep"]["default_label"]
        if default_label is not None:
            x = default_label.format(value={**config["kd"], **fixed}[param])
            point(label, x, kd_run(config, line["objective"], teacher, **fixed), directions)
        for value in f[f["sweep"]["key"] or param]:
            run = kd_run(config, line["objective"], teacher, **{**fixed, param: value})
            point(label, value if kind == "line" else _x_label(value), run, directions)
    for line in f["references"]:
        run = kd_run(config, line["objective"], teacher, **line.get("fixed", {}))
        point(_line_label(line), None, run, directions, reference=True)
    return {
        "kind": kind,
        "title": f["title"],
        "xlabel": f["xlabel"],
        "ylabel": f["ylabel"],
        "points": points,
    }


def figure_inputs(config: dict, fig: str) -> list[str]:
    """Every score file a figure reads (a curve figure: every curves CSV)."""
    spec = figure_spec(config, fig)
    if spec["kind"] == "curve":
        return sorted({f for line in spec["lines"] for f in line["curves"]})
    return sorted({f for p in spec["points"] for fs in p["scores"].values() for f in fs})


def figure_outputs(config: dict) -> list[str]:
    return [
        f"results/figures/{name}.{ext}"
        for name in figure_names(config)
        for ext in OUTPUT_EXTENSIONS["figure"]
    ]


# Sensitivity (issue 11): the open choices' alternatives, each its own KD run


def sensitivity_teacher(config: dict) -> str:
    """The teacher of the sensitivity runs: `sensitivity.teacher`, else Table 1's."""
    return config["sensitivity"].get("teacher") or default_teacher(config)


def sensitivity_spec(config: dict) -> dict:
    """The alternatives of `sensitivity` (config/paper.yaml) as runs: each alternative is a KD run
    of its objective (`sensitivity.objective` unless it names one) with one run option
    (sekd.plan.objectives.RUN_OPTIONS) set to another value and its `fixed` hyper-parameters, beside
    its default: the same objective and hyper-parameters, this option at its declared default
    and the config's other options (for the plain objective and the paper's options, the run of
    Table 1; a config that sets the option itself is still compared with the default).
    {"directions", "rows": [{"option", "value", "label", "objective", "run", "default_run",
    "scores", "default_scores", "curves", "default_curves"}]}."""
    section = config["sensitivity"]
    teacher = sensitivity_teacher(config)
    rows = []
    for alt in section["alternatives"]:
        objective = alt.get("objective") or section["objective"]
        fixed = alt.get("fixed", {})
        run = kd_run(config, objective, teacher, options={alt["option"]: alt["value"]}, **fixed)
        # this option at its declared default, the config's other options as they are
        at_default = {alt["option"]: RUN_OPTIONS[alt["option"]].default}
        default = kd_run(config, objective, teacher, options=at_default, **fixed)
        rows.append(
            {
                "option": alt["option"],
                "value": alt["value"],
                "label": alt.get("label") or f"{alt['option']}={alt['value']}",
                "objective": objective,
                "run": run,
                "default_run": default,
                "scores": score_files(config, run),
                "default_scores": score_files(config, default),
                "curves": curve_files(config, run),
                "default_curves": curve_files(config, default),
            }
        )
    return {"directions": config["data"]["test_directions"], "rows": rows}


def sensitivity_inputs(config: dict) -> list[str]:
    """Every score and curves file the sensitivity job reads (rule sensitivity)."""
    files = []
    for row in sensitivity_spec(config)["rows"]:
        for key in ("scores", "default_scores"):
            files += [f for fs in row[key].values() for f in fs]
        files += row["curves"] + row["default_curves"]
    return sorted(set(files))


def sensitivity_outputs(config: dict, in_all: bool = True) -> list[str]:
    """results/sensitivity.csv and its figure; none when no alternative is declared, or (with
    `in_all`: what `all` and the report plan) when `sensitivity.in_all` is false."""
    section = config["sensitivity"]
    if not section["alternatives"] or (in_all and not section["in_all"]):
        return []
    return [
        "results/sensitivity.csv",
        *(f"results/figures/sensitivity.{ext}" for ext in ("png", "pdf")),
    ]


def _sensitivity_errors(config: dict) -> list[str]:
    """Each alternative names a run option, one of its values other than the default, and
    hyper-parameters of `kd`, and its run differs from its default run (the option applies)."""
    section, errors = config["sensitivity"], []
    teacher = section.get("teacher")
    if teacher is not None and teacher not in config["models"]:
        errors.append(f"config key 'sensitivity.teacher': no model {teacher!r}")
        return errors
    for i, alt in enumerate(section["alternatives"]):
        where = f"config key 'sensitivity.alternatives.{i}"
        option = RUN_OPTIONS.get(alt["option"])
        if option is None:
            errors.append(
                f"{where}.option': {alt['option']!r} is not a run option "
                f"(known: {', '.join(RUN_OPTIONS)})"
            )
            continue
        if alt["value"] not in option.values:
            errors.append(f"{where}.value': {alt['value']!r} is not one of {option.values}")
            continue
        bad = [hp for hp in alt.get("fixed", {}) if hp not in config["kd"]]
        if bad:
            errors.append(f"{where}.fixed': not keys of kd: {', '.join(bad)}")
            continue
        try:
            row = sensitivity_spec({**config, "sensitivity": {**section, "alternatives": [alt]}})
        except ValueError as exc:
            errors.append(f"{where}': {exc}")
            continue
        if row["rows"][0]["run"] == row["rows"][0]["default_run"]:
            objective = alt.get("objective") or section["objective"]
            errors.append(
                f"{where}': {alt['option']}={alt['value']} does not change the {objective} run "
                f"({row['rows'][0]['run']}): the option does not apply to it"
            )
    return errors


def captions(config: dict) -> dict[str, str]:
    """What the paper reports for every table and figure, by name (the reports' captions)."""
    out = {name: table_caption(config, name) for name in table_names(config)}
    out.update({name: config["figures"][name]["caption"] for name in figure_names(config)})
    return out


def consistency_errors(config: dict) -> list[str]:
    """Cross-key checks of the declarations that the schema cannot express."""
    errors = _same_gradient_errors() + _sensitivity_errors(config)
    for i, alt in enumerate(config["sensitivity"]["alternatives"]):
        for hp, value in alt.get("fixed", {}).items():
            where = f"sensitivity.alternatives.{i}.fixed.{hp}"
            errors += hparam_value_errors(where, hp, value) if hp in HPARAMS else []
    models, kd = config["models"], config["kd"]
    for name in table_names(config):
        teacher = config["tables"][name]["teacher"]
        if teacher not in models:
            errors.append(f"config key 'tables.{name}.teacher': no model {teacher!r}")
            continue
        errors += _table_errors(config, name)
    for name, f in config["figures"].items():
        where = f"config key 'figures.{name}"
        if f["teacher"] is not None and f["teacher"] not in models:
            errors.append(f"{where}.teacher': no model {f['teacher']!r}")
        if f["kind"] == "curve":
            errors += _curve_errors(config, name)
            continue
        if not f["series"]:
            errors.append(f"{where}.series': a {f['kind']} figure needs at least one series")
        param, key = f["sweep"]["param"], f["sweep"]["key"] or f["sweep"]["param"]
        if param != "direction":
            if param not in kd:
                errors.append(f"{where}.sweep.param': {param!r} is not a key of kd")
            elif not isinstance(f.get(key), list):
                errors.append(f"{where}.{key}': the swept values (a list) are missing")
        for kind in ("series", "references"):
            for i, line in enumerate(f[kind]):
                for hp in line.get("fixed", {}):
                    if hp not in kd:
                        errors.append(f"{where}.{kind}.{i}.fixed.{hp}': not a key of kd")
        errors += _figure_value_errors(config, name)
    return errors


def _figure_value_errors(config: dict, name: str) -> list[str]:
    """Each hyper-parameter value a figure plans a run with (its swept values, its lines'
    `fixed`) is in the range the hyper-parameter declares (`HParam.check`, as `kd`'s schema
    entry): else the plan names a run (`k150`) whose job fails."""
    f, values = config["figures"][name], []
    swept = {p: p for p in param_symbols() if isinstance(f.get(p), list)}
    param, key = f["sweep"]["param"], f["sweep"]["key"]
    if key and param in HPARAMS and isinstance(f.get(key), list):
        swept[key] = param
    for key, param in swept.items():
        values += [(f"{key}.{i}", param, value) for i, value in enumerate(f[key])]
    for kind in ("series", "references"):
        for i, line in enumerate(f[kind]):
            fixed = line.get("fixed", {}).items()
            values += [(f"{kind}.{i}.fixed.{hp}", hp, v) for hp, v in fixed if hp in HPARAMS]
    return [
        error
        for where, param, value in values
        for error in hparam_value_errors(f"figures.{name}.{where}", param, value)
    ]


def hparam_value_errors(key: str, param: str, value: Any) -> list[str]:
    """A value of hyper-parameter `param` at config key `key` outside its declared range (a
    [start, end] schedule: each end in the loss's range, which includes the minimum)."""
    try:
        if isinstance(value, list):
            for end in value:
                HPARAMS[param].check(end)
        else:
            HPARAMS[param].check(value, config=True)
    except ValueError as exc:
        return [f"config key '{key}': {exc} (the range of kd.{param})"]
    return []


def _table_errors(config: dict, name: str) -> list[str]:
    """A table's Δ row names two of its rows; its title, caption and labels name known
    placeholders."""
    spec, errors = config["tables"][name], []
    delta, baseline = spec.get("delta"), config["tables"]["baseline"]
    where = f"config key 'tables.{name}.delta'"
    if delta is not None:
        if delta not in spec["objectives"]:
            errors.append(
                f"{where}: {delta!r} is not a row of this table "
                f"(its objectives: {', '.join(spec['objectives'])})"
            )
        if baseline not in spec["objectives"]:
            errors.append(
                f"{where}: the baseline {baseline!r} (tables.baseline) is not a row of this table "
                f"(its objectives: {', '.join(spec['objectives'])})"
            )
        elif delta == baseline:
            errors.append(f"{where}: {delta!r} is the baseline itself (Δ would be 0)")
    values = table_placeholders(config, name)
    texts = {"title": spec["title"], "caption": spec["caption"]}
    texts.update({f"sft_rows.{i}.label": row["label"] for i, row in enumerate(spec["sft_rows"])})
    for key, text in texts.items():
        known = {**values, "paper": ""} if key == "caption" else values
        try:
            fill_placeholders(text, known, f"tables.{name}.{key}")
        except ValueError as exc:
            errors.append(str(exc))
    return errors


def _same_gradient_errors() -> list[str]:
    """`Objective.same_gradient_as` names another declared objective that reads the same
    hyper-parameters and trains on the same sequences (else the two runs differ)."""
    errors = []
    for o in OBJECTIVES.values():
        twin = OBJECTIVES.get(o.same_gradient_as) if o.same_gradient_as else None
        where = f"objective {o.name!r}: same_gradient_as {o.same_gradient_as!r}"
        if not o.same_gradient_as:
            continue
        if twin is None or twin.name == o.name:
            errors.append(f"{where} is not another declared objective")
        elif (twin.hparams, twin.sequences) != (o.hparams, o.sequences):
            errors.append(
                f"{where} reads other hyper-parameters or sequences ({twin.hparams}, "
                f"{twin.sequences!r} against {o.hparams}, {o.sequences!r})"
            )
    return errors


def _curve_errors(config: dict, name: str) -> list[str]:
    """A curve figure follows the swept runs of line or bar figures declared in `from`."""
    f = config["figures"][name]
    where = f"config key 'figures.{name}.from'"
    if not f["from"]:
        return [f"{where}: a curve figure needs the figures whose runs it follows"]
    errors = []
    for source in f["from"]:
        other = config["figures"].get(source)
        if other is None:
            errors.append(f"{where}: no figure {source!r}")
        elif other["kind"] == "curve":
            errors.append(f"{where}: {source!r} is a curve figure (name a line or bar figure)")
    return errors
