"""The paper's tables from the per-direction score files: CSV (machine-readable), Markdown and
LaTeX (booktabs). Cells are means over seeds (± std with more than one seed); † marks a system
significantly different from the baseline (paired bootstrap, p < 0.05, Table 1's †)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

ARROW = "→"
ALPHA = 0.05


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


def results_table(
    rows: list[dict], directions: list[str], significance: dict | None = None
) -> list[dict]:
    """`rows`: [{"system", "run", "scores": {direction: [score json per seed]},
    "comet": {direction: [...]} or None}] -> one record per row.

    Columns: bleu_<d> and bleu_avg (mean over seeds of the mean over directions), comet_<d> and
    comet_avg (empty when COMET was not computed), p_<d> (paired bootstrap against the baseline,
    empty for the baseline and reference rows), n_seeds, then *_std (empty with one seed).
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
        for d in directions:
            p = (significance or {}).get(row["system"], {}).get(d)
            record[f"p_{d}"] = "" if p is None else round(p, 4)
        record["n_seeds"] = n_seeds
        record.update(stds)
        table.append(record)
    return table


def write_csv(table: list[dict], path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    tmp.replace(path)


def _cell(record: dict, key: str, dagger_key: str | None = None, latex: bool = False) -> str:
    value = record.get(key, "")
    if value == "":
        return "n/c" if key.startswith("comet") else ""
    text = f"{value:.2f}"
    std = record.get(f"{key}_std", "")
    if std != "":
        text += f" ± {std:.2f}" if not latex else f" $\\pm$ {std:.2f}"
    p = record.get(dagger_key, "") if dagger_key else ""
    if p != "" and p < ALPHA:
        text += "$^\\dagger$" if latex else "†"
    return text


def _columns(directions: list[str], with_comet: bool) -> list[tuple[str, str, str | None]]:
    cols = []
    for d in [*directions, "avg"]:
        label = "Avg." if d == "avg" else direction_label(d)
        cols.append((f"{label} BLEU", f"bleu_{d}", None if d == "avg" else f"p_{d}"))
        if with_comet:
            cols.append((f"{label} COMET", f"comet_{d}", None))
    return cols


def to_markdown(table: list[dict], directions: list[str], title: str) -> str:
    with_comet = any(r.get("comet_avg", "") != "" for r in table)
    cols = _columns(directions, with_comet)
    lines = [f"**{title}**", "", "| System | " + " | ".join(c[0] for c in cols) + " |"]
    lines.append("|---|" + "---:|" * len(cols))
    for rec in table:
        cells = [_cell(rec, key, dagger) for _, key, dagger in cols]
        lines.append("| " + " | ".join([rec["system"], *cells]) + " |")
    notes = ["SacreBLEU (13a) on WMT22; mean over seeds, ± std with more than one seed."]
    if any(str(r.get(f"p_{d}", "")) != "" for r in table for d in directions):
        notes.append(f"† p < {ALPHA} against the baseline (paired bootstrap).")
    if not with_comet:
        notes.append("COMET: not computed (no `scoring.comet_model` configured).")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def to_latex(table: list[dict], directions: list[str], caption: str, label: str) -> str:
    with_comet = any(r.get("comet_avg", "") != "" for r in table)
    cols = _columns(directions, with_comet)
    header = " & ".join(["System", *[c[0].replace("→", r"$\rightarrow$") for c in cols]])
    body = [
        " & ".join(
            [rec["system"], *[_cell(rec, key, dagger, latex=True) for _, key, dagger in cols]]
        )
        + r" \\"
        for rec in table
    ]
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
            f"\\caption{{{caption}}}",
            f"\\label{{{label}}}",
            r"\end{table}",
            "",
        ]
    )
