"""The paper's tables from the per-direction score files: CSV (machine-readable), Markdown and
LaTeX (booktabs). Cells are means over seeds (± std with more than one seed); † marks a system
significantly different from the baseline (paired bootstrap over the seeds pooled, p < 0.05,
Table 1's †); the Δ row (Table 1's last) is one system minus the baseline in every column; ‡ (and
§, ¶) marks rows that are one training run up to a constant (sekd.plan.study.table_marks). Beside
BLEU, each trained model's fit on WMT21 validation (sekd.evaluate.validation_fit): the mean NLL of
the references and the mean KL(p||q) of the table's teacher p to the model q, which move where BLEU
cannot show it."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from sekd import atomic

ARROW = "→"
ALPHA = 0.05
DELTA = "Δ"  # the system label of the Δ row
LATEX_SYMBOLS = {
    "→": r"$\rightarrow$",
    "×": r"$\times$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "§": r"$^\S$",
    "¶": r"$^\P$",
    "<": r"$<$",
    ">": r"$>$",
}
LATEX_SPECIALS = {
    **{c: "\\" + c for c in "&%$#_{}"},
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def direction_label(direction: str) -> str:
    src, tgt = direction.split("-")
    return f"{src.capitalize()}{ARROW}{tgt.capitalize()}"


def _read(paths: list[str], key: str, what: str) -> list[float]:
    values = []
    for path in paths:
        try:
            value = float(json.loads(Path(path).read_text())[key])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{what}: cannot read {key!r} from {path}: {exc}") from exc
        if not math.isfinite(value):
            raise ValueError(f"{what}: no finite {key!r} in {path}")
        values.append(value)
    if not values:
        raise ValueError(f"{what}: no score files")
    return values


def _mean_std(per_seed: list[float]) -> tuple[float, float | None]:
    std = statistics.stdev(per_seed) if len(per_seed) > 1 else None
    return statistics.fmean(per_seed), std


FIT_COLUMNS = (("valid_nll", "nll", "Valid NLL"), ("valid_kl", "kl", "Valid KL"))
"""(CSV column, key in the fit JSON, Markdown/LaTeX header) of the validation fit
(sekd.evaluate.validation_fit)."""


def _fit_columns(row: dict, record: dict, stds: dict) -> None:
    """valid_nll and valid_kl of `row` (its "fit": [fit JSON per seed],
    sekd.evaluate.validation_fit) into `record` (mean over seeds) and `stds`; empty when the row has
    no fit files."""
    files = row.get("fit")
    for column, key, _ in FIT_COLUMNS:
        if not files:
            record[column], stds[f"{column}_std"] = "", ""
            continue
        mean, std = _mean_std(_read(files, key, f"{row['system']} validation fit"))
        record[column] = round(mean, 4)
        stds[f"{column}_std"] = "" if std is None else round(std, 4)


def results_table(
    rows: list[dict], directions: list[str], significance: dict | None = None
) -> list[dict]:
    """`rows`: [{"system", "run", "scores": {direction: [score json per seed]},
    "comet": {direction: [...]} or None}] -> one record per row.

    Columns: bleu_<d> and bleu_avg (mean over seeds of the mean over directions), comet_<d> and
    comet_avg (empty when COMET was not computed), valid_nll and valid_kl (the row's "fit": [fit
    JSON per seed], sekd.evaluate.validation_fit; empty without), p_<d> (paired bootstrap against
    the baseline, empty for the baseline and reference rows), n_seeds, then *_std (empty with one
    seed).
    """
    table = []
    for row in rows:
        record: dict = {"system": row["system"], "run": row["run"]}
        stds: dict = {}
        n_seeds = None
        for metric, key in (("bleu", "scores"), ("comet", "comet")):
            files = row.get(key)
            per_direction = {}
            for d in directions:
                if files is None:
                    record[f"{metric}_{d}"] = ""
                    stds[f"{metric}_{d}_std"] = ""
                    continue
                values = _read(files[d], metric, f"{row['system']} {d}")
                per_direction[d] = values
                mean, std = _mean_std(values)
                record[f"{metric}_{d}"] = round(mean, 4)
                stds[f"{metric}_{d}_std"] = "" if std is None else round(std, 4)
                n_seeds = len(values)
            if per_direction:
                seeds = zip(*per_direction.values(), strict=True)
                per_seed_avg = [statistics.fmean(v) for v in seeds]
                mean, std = _mean_std(per_seed_avg)
                record[f"{metric}_avg"] = round(mean, 4)
                stds[f"{metric}_avg_std"] = "" if std is None else round(std, 4)
            else:
                record[f"{metric}_avg"] = ""
                stds[f"{metric}_avg_std"] = ""
        _fit_columns(row, record, stds)
        for d in directions:
            p = (significance or {}).get(row["system"], {}).get(d)
            record[f"p_{d}"] = "" if p is None else round(p, 4)
        record["n_seeds"] = n_seeds
        record.update(stds)
        table.append(record)
    return table


def add_delta(table: list[dict], system: str, baseline: str) -> list[dict]:
    """`table` with the Δ row appended (the paper's Table 1): `system` minus `baseline` in every
    BLEU, COMET and validation-fit column, from the table's own means (4 decimals, as in the
    CSV); empty where either is empty, and in the run, p, n_seeds and std columns. A ValueError
    if either is not a row of `table`."""
    by_system = {rec["system"]: rec for rec in table}
    for name in (system, baseline):
        if name not in by_system:
            raise ValueError(f"Δ row: {name!r} is not a row of the table ({', '.join(by_system)})")
    a, b = by_system[system], by_system[baseline]
    delta: dict = {}
    for key in table[0]:
        if key == "system":
            delta[key] = DELTA
        elif key.startswith(("bleu_", "comet_", "valid_")) and not key.endswith("_std"):
            empty = a[key] == "" or b[key] == ""
            delta[key] = "" if empty else round(a[key] - b[key], 4)
        else:
            delta[key] = ""
    return [*table, delta]


def write_csv(table: list[dict], path: str | Path) -> None:
    path = Path(path)
    with atomic.replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def _cell(record: dict, key: str, dagger_key: str | None = None, latex: bool = False) -> str:
    value = record.get(key, "")
    if value == "":
        return "n/c" if key.startswith("comet") else ""
    digits = 3 if key.startswith("valid_") else 2  # NLL and KL in nats: small differences
    if record["system"] == DELTA:
        return f"{round(value, digits) + 0.0:+.{digits}f}"  # +0.0: no "-0.00"
    text = f"{value:.{digits}f}"
    std = record.get(f"{key}_std", "")
    if std != "":
        text += f" ± {std:.{digits}f}" if not latex else f" $\\pm$ {std:.{digits}f}"
    p = record.get(dagger_key, "") if dagger_key else ""
    if p != "" and p < ALPHA:
        text += "$^\\dagger$" if latex else "†"
    return text


def _columns(
    directions: list[str], with_comet: bool, with_fit: bool = False
) -> list[tuple[str, str, str | None]]:
    """(header, CSV column, its p column) of each shown column: BLEU (and COMET) per direction and
    their average, then the validation fit when any row has it."""
    cols = []
    for d in [*directions, "avg"]:
        label = "Avg." if d == "avg" else direction_label(d)
        cols.append((f"{label} BLEU", f"bleu_{d}", None if d == "avg" else f"p_{d}"))
        if with_comet:
            cols.append((f"{label} COMET", f"comet_{d}", None))
    if with_fit:
        cols += [(header, column, None) for column, _, header in FIT_COLUMNS]
    return cols


def _shown(table: list[dict]) -> tuple[bool, bool]:
    """(with COMET, with the validation fit): whether any system row has them."""
    rows = [r for r in table if r["system"] != DELTA]
    return (
        any(r.get("comet_avg", "") != "" for r in rows),
        any(r.get("valid_nll", "") != "" for r in rows),
    )


def latex_text(text: str) -> str:
    """Plain text (a title, a label, a note) as LaTeX: its special characters escaped, its
    arrows, Δ and footnote signs as math."""
    return "".join(LATEX_SYMBOLS.get(c) or LATEX_SPECIALS.get(c) or c for c in text)


def significance_description(test: dict | None) -> str:
    """Which test the † is (the significance job's "test" record, sekd.evaluate.significance)."""
    if test is None:
        return "paired bootstrap"
    seeds = test["pooled_seeds"]
    pooled = (
        f"the test sentences of {len(seeds)} seeds pooled, each sentence paired with the "
        "baseline's of the same seed"
        if len(seeds) > 1
        else f"the test sentences of seed {seeds[0]}"
    )
    return (
        f"paired bootstrap resampling (Koehn, 2004), {test['n_samples']} resamples, "
        f"seed {test['seed']}, over {pooled}"
    )


def _label(record: dict, marks: list[dict]) -> str:
    """A row's label with the footnote sign of its group of equal runs, if any."""
    signs = "".join(m["sign"] for m in marks if record["system"] in m["systems"])
    return record["system"] + signs


def _notes(
    table: list[dict],
    directions: list[str],
    with_comet: bool,
    with_fit: bool,
    test: dict | None,
    baseline: str | None,
    marks: list[dict],
    delta: dict | None,
) -> list[str]:
    notes = ["SacreBLEU (13a) on WMT22; mean over seeds, ± std with more than one seed."]
    if any(str(r.get(f"p_{d}", "")) != "" for r in table for d in directions):
        against = f"against {baseline}" if baseline else "against the baseline"
        notes.append(f"† p < {ALPHA} {against} ({significance_description(test)}).")
    if delta is not None:
        notes.append(f"{DELTA}: {delta['system']} minus {delta['baseline']}.")
    for mark in marks:
        notes.append(
            f"{mark['sign']} {' and '.join(mark['systems'])}: the same training run up to a "
            "constant and floating-point rounding (their losses differ by a term that does not "
            "depend on the student, so their gradients are equal at these hyper-parameters)."
        )
    if with_fit:
        notes.append(
            "Valid NLL: mean negative log-likelihood per target token of the WMT21 validation "
            "references; Valid KL: mean KL(p||q) per token of the table's teacher p to the model "
            "q on the same tokens (nats; mean over seeds)."
        )
    if not with_comet:
        notes.append("COMET: not computed (no `scoring.comet_model` configured).")
    return notes


def to_markdown(
    table: list[dict],
    directions: list[str],
    title: str,
    *,
    test: dict | None = None,
    baseline: str | None = None,
    marks: list[dict] | None = None,
    delta: dict | None = None,
) -> str:
    """The table in Markdown under its bold title, with its notes: the † test (`test`: the
    significance job's record, against `baseline`), the Δ row (`delta`: {"system", "baseline"}),
    the ‡ rows (`marks`: sekd.plan.study.table_marks)."""
    marks = marks or []
    with_comet, with_fit = _shown(table)
    cols = _columns(directions, with_comet, with_fit)
    lines = [f"**{title}**", "", "| System | " + " | ".join(c[0] for c in cols) + " |"]
    lines.append("|---|" + "---:|" * len(cols))
    for rec in table:
        cells = [_cell(rec, key, dagger) for _, key, dagger in cols]
        lines.append("| " + " | ".join([_label(rec, marks), *cells]) + " |")
    notes = _notes(table, directions, with_comet, with_fit, test, baseline, marks, delta)
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def to_latex(
    table: list[dict],
    directions: list[str],
    caption: str,
    label: str,
    *,
    test: dict | None = None,
    baseline: str | None = None,
    marks: list[dict] | None = None,
    delta: dict | None = None,
) -> str:
    """The table in LaTeX (booktabs); its caption is `caption` followed by the Markdown notes
    (which test the † is, the Δ row, the ‡ rows); the Δ row after a rule."""
    marks = marks or []
    with_comet, with_fit = _shown(table)
    cols = _columns(directions, with_comet, with_fit)
    header = " & ".join(["System", *[latex_text(c[0]) for c in cols]])
    body = []
    for rec in table:
        if rec["system"] == DELTA:
            body.append(r"\midrule")
        cells = [_cell(rec, key, dagger, latex=True) for _, key, dagger in cols]
        body.append(" & ".join([latex_text(_label(rec, marks)), *cells]) + r" \\")
    notes = _notes(table, directions, with_comet, with_fit, test, baseline, marks, delta)
    title = caption if caption.endswith((".", "!", "?")) else caption + "."
    full_caption = " ".join(latex_text(t) for t in [title, *notes])
    return "\n".join(
        [
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{l" + "r" * len(cols) + "}",
            r"\toprule",
            header + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            f"\\caption{{{full_caption}}}",
            f"\\label{{{label}}}",
            r"\end{table}",
            "",
        ]
    )
