"""The paper's tables from the per-direction score files: CSV (machine-readable) and Markdown."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

ARROW = "→"


def direction_label(direction: str) -> str:
    src, tgt = direction.split("-")
    return f"{src.capitalize()}{ARROW}{tgt.capitalize()}"


def bleu_table(rows: list[dict], directions: list[str]) -> list[dict]:
    """`rows`: [{"system", "run", "scores": {direction: [score.json per seed]}}] -> table records.

    Each cell is the mean over seeds of SacreBLEU; `bleu_avg` is the mean over directions (the
    paper's "Avg."); `n_seeds` says how many seeds each cell averages.
    """
    table = []
    for row in rows:
        record = {"system": row["system"], "run": row["run"]}
        means = []
        n_seeds = None
        for direction in directions:
            paths = row["scores"][direction]
            values = [json.loads(Path(p).read_text())["bleu"] for p in paths]
            if not values or not all(math.isfinite(v) for v in values):
                raise ValueError(f"{row['system']} {direction}: no finite BLEU in {paths}")
            record[f"bleu_{direction}"] = round(statistics.fmean(values), 4)
            means.append(statistics.fmean(values))
            n_seeds = len(values)
        record["bleu_avg"] = round(statistics.fmean(means), 4)
        record["n_seeds"] = n_seeds
        table.append(record)
    return table


def write_csv(table: list[dict], path: str | Path) -> None:
    import csv

    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    tmp.replace(path)


def to_markdown(table: list[dict], directions: list[str], title: str) -> str:
    header = ["System", *[direction_label(d) for d in directions], "Avg."]
    lines = [f"**{title}** (SacreBLEU)", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    for rec in table:
        cells = [f"{rec[f'bleu_{d}']:.2f}" for d in directions] + [f"{rec['bleu_avg']:.2f}"]
        lines.append("| " + " | ".join([rec["system"], *cells]) + " |")
    return "\n".join(lines) + "\n"
