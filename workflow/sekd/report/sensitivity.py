"""The sensitivity to the choices the paper leaves open (issue 11): per alternative (a run option
at another value, sekd.plan.study.sensitivity_spec), its Self-Evolution KD row on WMT22 (SacreBLEU
per direction and average, mean over seeds), its Δ to its default run, and the mean hard-token
fraction of both runs over training (eqs. 7-9; their curves CSVs, sekd.report.curves).

Standard library for the table; matplotlib, imported when drawing, for the figure.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

from sekd import atomic
from sekd.report.figures import _new_figure, _save_drawing, _theme


def _bleu(path: str) -> float:
    try:
        value = float(json.loads(Path(path).read_text(encoding="utf-8"))["bleu"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"sensitivity: cannot read 'bleu' from {path}: {exc}") from exc
    if not math.isfinite(value):
        raise ValueError(f"sensitivity: no finite 'bleu' in {path}")
    return value


def mean_bleu(scores: dict[str, list[str]]) -> dict[str, float]:
    """{direction: mean over seeds, "avg": mean over seeds of the mean over directions}."""
    per = {d: [_bleu(p) for p in files] for d, files in scores.items()}
    out = {d: statistics.fmean(v) for d, v in per.items()}
    out["avg"] = statistics.fmean(statistics.fmean(s) for s in zip(*per.values(), strict=True))
    return out


def mean_hard_fraction(curves: list[str]) -> float | None:
    """The mean over logging steps of a run's hard-token fraction, mean over seeds; None when the
    run logs none (an objective that does not split tokens)."""
    per_seed = []
    for path in curves:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                cells = [row["hard_fraction"] for row in csv.DictReader(f)]
        except (OSError, KeyError) as exc:
            raise ValueError(
                f"sensitivity: cannot read 'hard_fraction' from {path}: {exc}"
            ) from exc
        values = [float(c) for c in cells if c != ""]
        if values:
            per_seed.append(statistics.fmean(values))
    return statistics.fmean(per_seed) if per_seed else None


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 4)


def table(spec: dict) -> list[dict]:
    """One record per alternative of `spec` (sekd.plan.study.sensitivity_spec): option, value,
    label, objective, run, default_run, bleu_<d>, bleu_avg, delta_<d>, delta_avg (alternative minus
    default), default_bleu_avg, hard_fraction, default_hard_fraction ("" when not logged)."""
    directions = spec["directions"]
    records = []
    for row in spec["rows"]:
        bleu, default = mean_bleu(row["scores"]), mean_bleu(row["default_scores"])
        record = {
            k: row[k] for k in ("option", "value", "label", "objective", "run", "default_run")
        }
        for d in [*directions, "avg"]:
            record[f"bleu_{d}"] = round(bleu[d], 4)
        for d in [*directions, "avg"]:
            record[f"delta_{d}"] = round(bleu[d] - default[d], 4)
        record["default_bleu_avg"] = round(default["avg"], 4)
        record["hard_fraction"] = _round(mean_hard_fraction(row["curves"]))
        record["default_hard_fraction"] = _round(mean_hard_fraction(row["default_curves"]))
        records.append(record)
    if not records:
        raise ValueError("sensitivity: no alternatives (config key 'sensitivity.alternatives')")
    return records


def write_csv(records: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)


def plot(records: list[dict], out_prefix: str | Path) -> None:
    """<out_prefix>.png/.pdf: the Δ average BLEU of each alternative to its default (bars), and
    the mean hard-token fraction of both runs (markers on a second axis)."""
    with _theme():
        fig, ax = _new_figure(1.4 + 1.1 * len(records), 3.6)
        labels = [r["label"] for r in records]
        x = list(range(len(records)))
        deltas = [r["delta_avg"] for r in records]
        ax.bar(x, deltas, color=["#0173b2" if d >= 0 else "#de8f05" for d in deltas], width=0.6)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_ylabel("Δ average SacreBLEU to the default")
        ax.set_xticks(x, labels, rotation=25, ha="right")
        ax.set_title("Sensitivity to the open choices (WMT22)")
        twin = ax.twinx()
        for key, marker, name in (
            ("hard_fraction", "o", "hard-token fraction"),
            ("default_hard_fraction", "x", "… of the default"),
        ):
            points = [(i, r[key]) for i, r in zip(x, records, strict=True) if r[key] != ""]
            if points:
                twin.scatter(*zip(*points, strict=True), marker=marker, color="black", label=name)
        twin.set_ylabel("mean hard-token fraction")
        twin.set_ylim(0, 1)
        twin.grid(False)
        if twin.get_legend_handles_labels()[0]:
            twin.legend(loc="upper right", fontsize="small")
        _save_drawing(fig, out_prefix)
