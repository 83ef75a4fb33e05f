"""The paper's tables from the per-direction score files: CSV (machine-readable), Markdown and
LaTeX (booktabs). Each metric is BLEU and chrF (SacreBLEU's, with their signatures; chrF still
moves where BLEU is near zero) per direction and averaged, COMET when computed. Cells are means
over seeds, with more than one seed with the 95% t-interval over seeds (mean ± t_{0.975,n-1}·s/√n,
s the sample std of the n seeds' values; CSV: <column>_lo and <column>_hi, beside <column>_std);
† marks a system significantly different from the baseline in that metric (paired bootstrap over
the seeds pooled, p < 0.05, Table 1's †); the Δ row (Table 1's last) is one system minus the
baseline in every column; ‡ (and §, ¶) marks rows that are one training run up to a constant
(sekd.plan.study.table_marks). Beside them, each trained model's fit on WMT21 validation
(sekd.evaluate.validation_fit): the mean NLL of the references and the mean KL(p||q) of the table's
teacher p to the model q, which move where BLEU cannot show it, with the validation examples it
dropped (prompt alone longer than training.max_length) counted, never silently left out."""

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
    "·": r"$\cdot$",
    "√": r"$\surd$",
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


LEVEL = 0.95
"""The coverage of the interval over seeds."""
SPREAD = ("_std", "_lo", "_hi")
"""The suffixes of a metric column's spread over seeds: sample std, the interval's bounds."""


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with `df` (integer) degrees of freedom, in closed form
    (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    total = 0.0
    if df % 2:
        term = math.cos(theta)
        for k in range((df - 1) // 2):
            total += term
            term *= c2 * (2 * k + 2) / (2 * k + 3)
        return 2 / math.pi * (theta + math.sin(theta) * total)
    term = 1.0
    for k in range(df // 2):
        total += term
        term *= c2 * (2 * k + 1) / (2 * k + 2)
    return math.sin(theta) * total


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The t with P(|T| <= t) = `level` for Student's t with `df` degrees of freedom: t_{0.975,df}
    for the default 0.95 (bisection on the exact CDF, to double precision)."""
    if df < 1 or not 0 < level < 1:
        raise ValueError(f"t quantile: df {df} (>= 1) and level {level} (in (0, 1))")
    low, high = 0.0, 1.0
    while _t_central(high, df) < level:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_central(middle, df) < level else (low, middle)
    return (low + high) / 2


def t_interval(values: list[float], level: float = LEVEL) -> tuple[float, float] | None:
    """The `level` t-interval of the mean of `values` (one per seed): mean ± t·s/√n, t the
    two-sided quantile with n-1 degrees of freedom, s the sample std (ddof 1); None with one."""
    n = len(values)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(n - 1, level) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


def _put(record: dict, spread: dict, column: str, values: list[float] | None) -> None:
    """`column` of `record`: the mean over seeds of `values` (4 decimals), and into `spread` its
    std and interval bounds (empty with one seed); all empty when `values` is None."""
    if values is None:
        record[column] = ""
        spread.update({column + suffix: "" for suffix in SPREAD})
        return
    record[column] = round(statistics.fmean(values), 4)
    interval = t_interval(values)
    std = statistics.stdev(values) if len(values) > 1 else None
    spread[f"{column}_std"] = "" if std is None else round(std, 4)
    spread[f"{column}_lo"] = "" if interval is None else round(interval[0], 4)
    spread[f"{column}_hi"] = "" if interval is None else round(interval[1], 4)


FIT_COLUMNS = (("valid_nll", "nll", "Valid NLL"), ("valid_kl", "kl", "Valid KL"))
"""(CSV column, key in the fit JSON, Markdown/LaTeX header) of the validation fit
(sekd.evaluate.validation_fit)."""
COUNT_COLUMNS = (
    ("valid_examples", "examples"),
    ("valid_dropped", "dropped"),
    ("valid_truncated", "truncated"),
)
"""(CSV column, key in the fit JSON) of the validation examples read, dropped (prompt alone longer
than training.max_length: not in the NLL and KL) and truncated (target cut at max_length): the
largest over seeds (every seed reads the same set)."""


def _count_columns(row: dict, record: dict) -> None:
    """The counts of `row`'s validation examples read, dropped and truncated (the largest over
    its fit files, one per seed; sekd.evaluate.validation_fit) into `record`; empty without."""
    files = row.get("fit")
    what = f"{row['system']} validation fit"
    for column, key in COUNT_COLUMNS:
        record[column] = int(max(_read(files, key, what))) if files else ""


METRICS = (("bleu", "scores"), ("chrf", "scores"), ("comet", "comet"))
"""(metric, the row's key of its score files): BLEU and chrF from the same score file (rule bleu),
COMET from its own (rule comet)."""


def seed_values(row: dict, directions: list[str]) -> dict[str, list[float] | None]:
    """Every mean column of `row` (see `results_table`) -> its values, one per seed in the order
    of the row's files, or None where the row has no files: <metric>_<d> per direction,
    <metric>_avg (each seed's mean over the directions), valid_nll and valid_kl."""
    values: dict[str, list[float] | None] = {}
    for metric, key in METRICS:
        files = row.get(key)
        if files is None:
            values.update({f"{metric}_{d}": None for d in [*directions, "avg"]})
            continue
        per_direction = {d: _read(files[d], metric, f"{row['system']} {d}") for d in directions}
        values.update({f"{metric}_{d}": v for d, v in per_direction.items()})
        seeds = zip(*per_direction.values(), strict=True)
        values[f"{metric}_avg"] = [statistics.fmean(v) for v in seeds]
    files = row.get("fit")
    for column, key, _ in FIT_COLUMNS:
        values[column] = _read(files, key, f"{row['system']} validation fit") if files else None
    return values


def results_table(
    rows: list[dict],
    directions: list[str],
    significance: dict | None = None,
    chrf_significance: dict | None = None,
) -> list[dict]:
    """`rows`: [{"system", "run", "scores": {direction: [score json per seed]},
    "comet": {direction: [...]} or None, "fit": [fit json per seed] (optional)}] -> one record per
    row; `significance` and `chrf_significance`: {system: {direction: p}} of BLEU and chrF.

    Columns: bleu_<d> and bleu_avg, chrf_<d> and chrf_avg (the same score files), comet_<d> and
    comet_avg (empty when COMET was not computed), valid_nll and valid_kl and the counts of
    validation examples (valid_examples, valid_dropped, valid_truncated; empty without fit files),
    p_<d> and p_chrf_<d> (paired bootstrap against the baseline, empty for the baseline and
    reference rows), n_seeds, then each mean column's *_std, then its *_lo and *_hi (the 95%
    t-interval over seeds; empty with one seed).
    """
    table = []
    for row in rows:
        record: dict = {"system": row["system"], "run": row["run"]}
        spread: dict = {}
        values = seed_values(row, directions)
        for column, per_seed in values.items():
            _put(record, spread, column, per_seed)
        _count_columns(row, record)
        n_seeds = [len(v) for c, v in values.items() if v is not None and not c.startswith("valid")]
        for prefix, tests in (("p_", significance), ("p_chrf_", chrf_significance)):
            for d in directions:
                p = (tests or {}).get(row["system"], {}).get(d)
                record[f"{prefix}{d}"] = "" if p is None else round(p, 4)
        record["n_seeds"] = n_seeds[0] if n_seeds else None
        record.update({k: v for k, v in spread.items() if k.endswith("_std")})
        record.update({k: v for k, v in spread.items() if not k.endswith("_std")})
        table.append(record)
    return table


def add_delta(
    table: list[dict],
    system: str,
    baseline: str,
    rows: list[dict] | None = None,
    directions: list[str] | None = None,
) -> list[dict]:
    """`table` with the Δ row appended (the paper's Table 1): `system` minus `baseline` in every
    BLEU, chrF, COMET and validation-fit column, from the table's own means (4 decimals, as in
    the CSV); empty where either is empty, and in the run, p, n_seeds and count columns. With the
    table's `rows` and `directions` (`results_table`'s), each column's std and 95% interval are
    those of the paired per-seed differences (seed i of `system` minus seed i of `baseline`),
    when both have the same two or more seeds; else empty. A ValueError if either is not a row."""
    by_system = {rec["system"]: rec for rec in table}
    for name in (system, baseline):
        if name not in by_system:
            raise ValueError(f"Δ row: {name!r} is not a row of the table ({', '.join(by_system)})")
    a, b = by_system[system], by_system[baseline]
    delta: dict = {}
    for key in table[0]:
        if key == "system":
            delta[key] = DELTA
        elif _is_mean(key):
            empty = a[key] == "" or b[key] == ""
            delta[key] = "" if empty else round(a[key] - b[key], 4)
        else:
            delta[key] = ""
    if rows is not None and directions is not None:
        _delta_spread(delta, rows, system, baseline, directions)
    return [*table, delta]


def _delta_spread(
    delta: dict, rows: list[dict], system: str, baseline: str, directions: list[str]
) -> None:
    """The Δ row's *_std, *_lo and *_hi: of the paired per-seed differences (`add_delta`)."""
    found = {
        row["system"]: seed_values(row, directions)
        for row in rows
        if row["system"] in (system, baseline)  # the two rows' files only, not every row's
    }
    if system not in found or baseline not in found:
        return
    for column, values in found[system].items():
        base = found[baseline][column]
        if values is None or base is None or len(values) != len(base) or column not in delta:
            continue
        differences = [x - y for x, y in zip(values, base, strict=True)]
        interval = t_interval(differences)
        if interval is not None and f"{column}_lo" in delta:
            delta[f"{column}_std"] = round(statistics.stdev(differences), 4)
            delta[f"{column}_lo"], delta[f"{column}_hi"] = (round(x, 4) for x in interval)


def _is_mean(column: str) -> bool:
    """Whether a CSV column is a metric's mean over seeds (not its spread, not a count)."""
    counts = {c for c, _ in COUNT_COLUMNS}
    metric = column.startswith(("bleu_", "chrf_", "comet_", "valid_"))
    return metric and column not in counts and not column.endswith(SPREAD)


def write_csv(table: list[dict], path: str | Path) -> None:
    path = Path(path)
    with atomic.replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def _cell(record: dict, key: str, dagger_key: str | None = None, latex: bool = False) -> str:
    """A mean as shown: with more than one seed followed by its 95% interval over seeds,
    "mean [lo, hi]"; † when `dagger_key` holds p < ALPHA; the Δ row signed."""
    value = record.get(key, "")
    if value == "":
        return "n/c" if key.startswith("comet") else ""
    digits = 3 if key.startswith("valid_") else 2  # NLL and KL in nats: small differences
    # the Δ row signed (+0.0: no "-0.00"), its interval too
    sign = "+" if record["system"] == DELTA else ""

    def shown(x: float) -> str:
        return format(round(x, digits) + 0.0, f"{sign}.{digits}f")

    text = shown(value)
    low, high = record.get(f"{key}_lo", ""), record.get(f"{key}_hi", "")
    if low != "" and high != "":
        text += f" [{shown(low)}, {shown(high)}]"
    p = record.get(dagger_key, "") if dagger_key else ""
    if p != "" and p < ALPHA:
        text += "$^\\dagger$" if latex else "†"
    return text


def _columns(
    directions: list[str], with_comet: bool, with_fit: bool = False
) -> list[tuple[str, str, str | None]]:
    """(header, CSV column, its p column) of each shown column: BLEU, chrF (and COMET) per
    direction and their average, then the validation fit when any row has it."""
    cols = []
    for d in [*directions, "avg"]:
        label = "Avg." if d == "avg" else direction_label(d)
        cols.append((f"{label} BLEU", f"bleu_{d}", None if d == "avg" else f"p_{d}"))
        cols.append((f"{label} chrF", f"chrf_{d}", None if d == "avg" else f"p_chrf_{d}"))
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


def signatures(rows: list[dict]) -> dict[str, str]:
    """{"bleu", "chrf"}: the SacreBLEU signatures of the table's scores, from its first score file
    (every score file of a table is written by the same rule, with the same settings)."""
    first = next(files[0] for row in rows for files in row["scores"].values())
    scores = json.loads(Path(first).read_text(encoding="utf-8"))
    return {"bleu": scores.get("signature", ""), "chrf": scores.get("chrf_signature", "")}


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


def _metric_notes(table: list[dict], sigs: dict | None) -> list[str]:
    """What the cells are: the metrics with their signatures, the mean and its interval."""
    seeds = {r["n_seeds"] for r in table if r["system"] != DELTA and r["n_seeds"]}
    notes = ["BLEU and chrF (SacreBLEU) on WMT22."]
    if sigs:
        notes.append(f"Signatures: BLEU {sigs['bleu']}; chrF {sigs['chrf']}.")
    if seeds and max(seeds) > 1:
        notes.append(
            f"Cells: mean over {'/'.join(str(n) for n in sorted(seeds))} seeds [95% interval over "
            "seeds: mean ± t(0.975, n-1)·s/√n, s the sample std of the n seeds' values]."
        )
    else:
        notes.append("Cells: one seed (no interval over seeds).")
    return notes


def _fit_notes(table: list[dict]) -> list[str]:
    """What the validation-fit columns are, and how many validation examples they leave out."""
    notes = [
        "Valid NLL: mean negative log-likelihood per target token of the WMT21 validation "
        "references; Valid KL: mean KL(p||q) per token of the table's teacher p to the model "
        "q on the same tokens (nats; mean over seeds)."
    ]
    rows = [r for r in table if r["system"] != DELTA and r.get("valid_examples", "") != ""]
    if rows:
        examples = max(r["valid_examples"] for r in rows)
        dropped = max(r["valid_dropped"] for r in rows)
        truncated = max(r["valid_truncated"] for r in rows)
        notes.append(
            f"Of the {examples} validation examples, {dropped} dropped (prompt alone longer than "
            f"training.max_length: not in Valid NLL/KL) and {truncated} with their target cut at "
            "training.max_length (CSV: valid_dropped, valid_truncated)."
        )
    return notes


def _notes(
    table: list[dict],
    directions: list[str],
    with_comet: bool,
    with_fit: bool,
    notes_of: dict,
) -> list[str]:
    """The table's notes; `notes_of`: to_markdown's keyword arguments (test, baseline, marks,
    delta, signatures)."""
    notes = _metric_notes(table, notes_of.get("signatures"))
    tested = [f"p_{d}" for d in directions] + [f"p_chrf_{d}" for d in directions]
    if any(str(r.get(column, "")) != "" for r in table for column in tested):
        baseline = notes_of.get("baseline")
        against = f"against {baseline}" if baseline else "against the baseline"
        test = significance_description(notes_of.get("test"))
        notes.append(f"† p < {ALPHA} {against}, in that cell's metric ({test}).")
    delta = notes_of.get("delta")
    if delta is not None:
        paired = any(r["system"] == DELTA and r.get("bleu_avg_lo", "") != "" for r in table)
        notes.append(
            f"{DELTA}: {delta['system']} minus {delta['baseline']}"
            + (
                " [95% interval: the same t-interval of the paired per-seed differences]."
                if paired
                else "."
            )
        )
    for mark in notes_of.get("marks") or []:
        notes.append(
            f"{mark['sign']} {' and '.join(mark['systems'])}: the same training run up to a "
            "constant and floating-point rounding (their losses differ by a term that does not "
            "depend on the student, so their gradients are equal at these hyper-parameters)."
        )
    if with_fit:
        notes += _fit_notes(table)
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
    signatures: dict | None = None,
) -> str:
    """The table in Markdown under its bold title, with its notes: the metrics' `signatures`
    ({"bleu", "chrf"}) and what a cell is, the † test (`test`: the significance job's record,
    against `baseline`), the Δ row (`delta`: {"system", "baseline"}), the ‡ rows (`marks`:
    sekd.plan.study.table_marks), the validation examples dropped."""
    with_comet, with_fit = _shown(table)
    cols = _columns(directions, with_comet, with_fit)
    marks = marks or []
    lines = [f"**{title}**", "", "| System | " + " | ".join(c[0] for c in cols) + " |"]
    lines.append("|---|" + "---:|" * len(cols))
    for rec in table:
        cells = [_cell(rec, key, dagger) for _, key, dagger in cols]
        lines.append("| " + " | ".join([_label(rec, marks), *cells]) + " |")
    notes_of = {"test": test, "baseline": baseline, "marks": marks, "delta": delta}
    notes = _notes(table, directions, with_comet, with_fit, {**notes_of, "signatures": signatures})
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def to_latex(
    table: list[dict],
    directions: list[str],
    caption: str,
    label: str,
    **notes_of,
) -> str:
    """The table in LaTeX (booktabs); its caption is `caption` followed by the Markdown notes
    (`notes_of`: to_markdown's keyword arguments); the Δ row after a rule."""
    marks = notes_of.get("marks") or []
    with_comet, with_fit = _shown(table)
    cols = _columns(directions, with_comet, with_fit)
    header = " & ".join(["System", *[latex_text(c[0]) for c in cols]])
    body = []
    for rec in table:
        if rec["system"] == DELTA:
            body.append(r"\midrule")
        cells = [_cell(rec, key, dagger, latex=True) for _, key, dagger in cols]
        body.append(" & ".join([latex_text(_label(rec, marks)), *cells]) + r" \\")
    notes = _notes(table, directions, with_comet, with_fit, notes_of)
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
