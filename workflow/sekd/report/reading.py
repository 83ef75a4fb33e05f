"""The reading of a results table, written from its numbers (results/reading.md and the report's
section "What the miniature shows"; docs/reproduction.md quotes a run of it).

For a table with a Δ row (config/paper.yaml: `delta`), from its CSV (sekd.report.tables):

* the ordering of its rows on the average BLEU and chrF (higher first) and on the validation NLL
  and KL to the teacher (lower first), each mean with its 95% interval over seeds;
* the teacher against the student, and each KD row's validation KL against the student's;
* the Δ row (e.g. Self-Evolution KD minus Forward KD) with its paired interval;
* where the ordering agrees with the paper's (the table's `paper` numbers: average BLEU per row)
  and where it does not, each comparison "resolved" only when the two intervals are apart.

Nothing here is tuned or selected: every comparison listed is made for every run.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

DELTA = "Δ"
METRICS = (
    ("bleu_avg", "Avg. BLEU", True),
    ("chrf_avg", "Avg. chrF", True),
    ("valid_nll", "Valid NLL", False),
    ("valid_kl", "Valid KL to the teacher", False),
)
"""(CSV column, name, higher is better) of the metrics read."""


def _value(row: Mapping[str, str], column: str) -> tuple[float, float | None, float | None] | None:
    """(mean, low, high) of `column` in a CSV row; low/high None with one seed; None if empty."""
    if row.get(column, "") == "":
        return None
    low, high = row.get(f"{column}_lo", ""), row.get(f"{column}_hi", "")
    bounds = (float(low), float(high)) if low != "" and high != "" else (None, None)
    return float(row[column]), *bounds


def _shown(value: tuple[float, float | None, float | None], digits: int, sign: str = "") -> str:
    mean, low, high = value
    text = f"{mean:{sign}.{digits}f}"
    return text if low is None else f"{text} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def _digits(column: str) -> int:
    return 3 if column.startswith("valid_") else 2


def _apart(a, b) -> bool:
    """Whether two (mean, low, high) have intervals that do not overlap (False with one seed)."""
    if a[1] is None or b[1] is None:
        return False
    return a[1] > b[2] or b[1] > a[2]


def _better(a, b, higher: bool) -> bool:
    return a[0] > b[0] if higher else a[0] < b[0]


def ordering(rows: list[Mapping[str, str]]) -> list[str]:
    """One line per metric: the rows best first, each with its mean and interval."""
    lines = []
    for column, name, higher in METRICS:
        found = [(r["system"], _value(r, column)) for r in rows]
        found = [(s, v) for s, v in found if v is not None and s != DELTA]
        if not found:
            continue
        found.sort(key=lambda item: -item[1][0] if higher else item[1][0])
        way = "higher first" if higher else "lower first"
        cells = "; ".join(f"{s} {_shown(v, _digits(column))}" for s, v in found)
        lines.append(f"- {name} ({way}): {cells}")
    return lines


def _comparison(a_name: str, b_name: str, by: dict, column: str, higher: bool) -> str:
    """ "A above/below B by d (intervals apart|overlapping)" on `column`."""
    a, b = by[a_name].get(column), by[b_name].get(column)
    if a is None or b is None:
        return "not computed"
    better = _better(a, b, higher)
    word = "better" if better else "worse" if a[0] != b[0] else "equal"
    apart = "intervals apart" if _apart(a, b) else "intervals overlapping"
    if a[1] is None or b[1] is None:
        apart = "one seed: no interval"
    return f"{word} ({a[0] - b[0]:+.{_digits(column)}f}; {apart})"


def _values(rows: list[Mapping[str, str]]) -> dict[str, dict]:
    return {r["system"]: {c: _value(r, c) for c, _, _ in METRICS} for r in rows}


def teacher_and_students(rows: list[Mapping[str, str]], teacher: str, student: str) -> list[str]:
    """The teacher against the student on each metric, and every other row's validation KL to
    the teacher against the student's."""
    by = _values(rows)
    if teacher not in by or student not in by:
        return []
    lines = [
        f"- {teacher} against {student}, {name}: "
        + _comparison(teacher, student, by, column, higher)
        for column, name, higher in METRICS[:3]
    ]
    for system in by:
        if system in (teacher, student, DELTA):
            continue
        verdict = _comparison(system, student, by, "valid_kl", False)
        lines.append(f"- {system} against {student}, Valid KL to the teacher: {verdict}")
    return lines


def delta_lines(rows: list[Mapping[str, str]], delta: Mapping[str, str]) -> list[str]:
    """The Δ row on each metric, with its interval and whether it excludes zero."""
    row = next((r for r in rows if r["system"] == DELTA), None)
    if row is None:
        return []
    lines = []
    for column, name, higher in METRICS:
        value = _value(row, column)
        if value is None:
            continue
        text = _shown(value, _digits(column), "+")
        if value[1] is None:
            verdict = "one seed: no interval"
        elif value[1] > 0 or value[2] < 0:
            verdict = "its interval excludes 0: " + (
                "better" if (value[0] > 0) == higher else "worse"
            )
        else:
            verdict = "its interval contains 0: no difference resolved"
        lines.append(f"- {delta['system']} minus {delta['baseline']}, {name}: {text} ({verdict})")
    return lines


def _resolution(a, b) -> str:
    """ " (resolved)" when the intervals of two (mean, low, high) are apart; one seed says so."""
    if a[1] is None or b[1] is None:
        return " (one seed)"
    return " (resolved)" if _apart(a, b) else " (not resolved)"


def paper_agreement(
    rows: list[Mapping[str, str]], paper: Mapping[str, list], delta: Mapping
) -> list[str]:
    """Each ordering the paper's average BLEU states between two rows of the table (the teacher,
    the student, each KD row against the student and against the Δ row's baseline, and the Δ
    system against each other row), and whether this run's BLEU and chrF agree."""
    by = _values(rows)
    named = [s for s in paper if s in by]
    pairs = [(a, b) for i, a in enumerate(named) for b in named[i + 1 :]]
    focus = {delta.get("system"), named[0] if named else None, named[1] if len(named) > 1 else None}
    lines = []
    for a, b in pairs:
        if a not in focus and b not in focus:
            continue
        paper_a, paper_b = float(paper[a][0]), float(paper[b][0])
        if paper_a == paper_b:
            continue
        high, low = (a, b) if paper_a > paper_b else (b, a)
        here = [
            f"{metric}: "
            + ("agrees" if _better(by[high][c], by[low][c], True) else "disagrees")
            + _resolution(by[high][c], by[low][c])
            for c, metric in (("bleu_avg", "BLEU"), ("chrf_avg", "chrF"))
            if by[high][c] is not None and by[low][c] is not None
        ]
        gap = max(paper_a, paper_b) - min(paper_a, paper_b)
        lines.append(f"- paper: {high} above {low} (+{gap:.2f} BLEU); here {', '.join(here)}")
    return lines


def markdown(
    rows: list[Mapping[str, str]],
    paper: Mapping[str, list],
    delta: Mapping[str, str],
    title: str,
    roles: tuple[str, str] = ("Teacher", "Student"),
) -> str:
    """The reading of one table (module docstring) under `title`; `roles`: the row labels of the
    teacher and the student."""
    seeds = {r.get("n_seeds", "") for r in rows if r["system"] != DELTA} - {""}
    parts = [
        f"## {title}",
        "",
        f"Seeds per row: {', '.join(sorted(seeds)) or 'unknown'}. Intervals: 95% t-intervals over "
        "seeds; two rows count as resolved only when their intervals are apart.",
        "",
        "Ordering of the rows:",
        *ordering(rows),
        "",
        "Teacher and student:",
        *teacher_and_students(rows, *roles),
        "",
        f"{delta['system']} against {delta['baseline']} (the Δ row, paired over seeds):",
        *delta_lines(rows, delta),
        "",
        "Against the paper (its average BLEU per row):",
        *(paper_agreement(rows, paper, delta) or ["- the table has no paper numbers"]),
    ]
    return "\n".join(parts) + "\n"


def from_csv(path: Path, spec: Mapping) -> str:
    """`markdown` of a table's CSV (rule table) with its reading `spec` (sekd.plan.study.
    table_reading: title, paper, delta, roles)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return markdown(rows, spec["paper"], spec["delta"], spec["title"], tuple(spec["roles"]))
