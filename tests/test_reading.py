"""The reading of a table, written from its numbers (sekd.report.reading): orderings with
intervals, the teacher against the student, the Δ row, and the agreement with the paper."""

from __future__ import annotations

from pathlib import Path

from sekd.plan import study
from sekd.plan.config import load_config, validate_config
from sekd.report import html, reading, tables

ROOT = Path(__file__).resolve().parents[1]
DELTA = {"system": "Self-Evolution KD", "baseline": "Forward KD"}
PAPER = {
    "Teacher": [28.48],
    "Student": [27.19],
    "Forward KD": [27.39],
    "Self-Evolution KD": [28.83],
}


def _row(system: str, bleu: tuple, chrf: tuple, nll: tuple, kl: tuple) -> dict[str, str]:
    """A CSV row (strings, as csv.DictReader gives): each metric (mean, lo, hi)."""
    row = {"system": system, "n_seeds": "3"}
    for column, (mean, low, high) in (
        ("bleu_avg", bleu),
        ("chrf_avg", chrf),
        ("valid_nll", nll),
        ("valid_kl", kl),
    ):
        row.update({column: str(mean), f"{column}_lo": str(low), f"{column}_hi": str(high)})
    return row


ROWS = [
    _row("Teacher", (3.0, 2.8, 3.2), (20.0, 19.5, 20.5), (4.4, 4.38, 4.42), (0.0, 0.0, 0.0)),
    _row("Student", (1.0, 0.8, 1.2), (15.0, 14.5, 15.5), (4.6, 4.58, 4.62), (0.3, 0.29, 0.31)),
    _row("Forward KD", (1.6, 1.2, 2.0), (16.0, 15.0, 17.0), (4.55, 4.5, 4.6), (0.2, 0.19, 0.21)),
    _row(
        "Self-Evolution KD",
        (1.4, 1.0, 1.8),
        (16.5, 15.5, 17.5),
        (4.56, 4.5, 4.62),
        (0.35, 0.3, 0.4),
    ),
    _row("Δ", (-0.2, -0.5, 0.1), (0.5, 0.2, 0.8), (0.01, -0.02, 0.04), (0.15, 0.1, 0.2)),
]


def test_the_rows_are_ordered_best_first_with_their_intervals():
    lines = reading.ordering(ROWS)
    assert lines[0] == (
        "- Avg. BLEU (higher first): Teacher 3.00 [2.80, 3.20]; Forward KD 1.60 [1.20, 2.00]; "
        "Self-Evolution KD 1.40 [1.00, 1.80]; Student 1.00 [0.80, 1.20]"
    )
    assert lines[2].startswith("- Valid NLL (lower first): Teacher 4.400 [4.380, 4.420]; Forward")
    assert all("Δ" not in line for line in lines)


def test_teacher_against_student_and_each_kd_rows_kl_against_the_students():
    lines = reading.teacher_and_students(ROWS, "Teacher", "Student")
    assert "- Teacher against Student, Avg. chrF: better (+5.00; intervals apart)" in lines
    assert "- Teacher against Student, Valid NLL: better (-0.200; intervals apart)" in lines
    assert (
        "- Forward KD against Student, Valid KL to the teacher: better (-0.100; intervals apart)"
        in lines
    )
    assert (
        "- Self-Evolution KD against Student, Valid KL to the teacher: worse (+0.050; "
        "intervals overlapping)"
    ) in lines


def test_the_delta_row_says_whether_its_interval_excludes_zero():
    lines = reading.delta_lines(ROWS, DELTA)
    assert lines[0] == (
        "- Self-Evolution KD minus Forward KD, Avg. BLEU: -0.20 [-0.50, +0.10] "
        "(its interval contains 0: no difference resolved)"
    )
    assert lines[1].endswith("(its interval excludes 0: better)")  # chrF up
    assert lines[3].endswith("(its interval excludes 0: worse)")  # KL up: further from the teacher


def test_the_papers_orderings_are_checked_in_bleu_and_chrf():
    lines = reading.paper_agreement(ROWS, PAPER, DELTA)
    assert (
        "- paper: Self-Evolution KD above Forward KD (+1.44 BLEU); here BLEU: disagrees "
        "(not resolved), chrF: agrees (not resolved)"
    ) in lines
    assert (
        "- paper: Teacher above Student (+1.29 BLEU); here BLEU: agrees (resolved), "
        "chrF: agrees (resolved)"
    ) in lines


def test_the_reading_from_a_tables_csv_and_in_the_report(tmp_path):
    from test_score_tables import _rows

    scores = {"Teacher": [3.0, 3.2], "Student": [1.0, 1.1], "Forward KD": [2.0, 2.1]}
    rows = _rows(tmp_path, {**scores, "Self-Evolution KD": [2.5, 2.4]})
    table = tables.add_delta(
        tables.results_table(rows, ["en-de"]), **DELTA, rows=rows, directions=["en-de"]
    )
    tables.write_csv(table, tmp_path / "table1.csv")
    spec = {"title": "What the miniature shows: table1", "paper": PAPER, "delta": DELTA}
    text = reading.from_csv(tmp_path / "table1.csv", {**spec, "roles": ["Teacher", "Student"]})
    assert text.startswith("## What the miniature shows: table1\n\nSeeds per row: 2.")
    assert "Self-Evolution KD minus Forward KD, Avg. BLEU: +0.40 [" in text
    section = "".join(html._readings_section({"table1": text}))
    assert "<h2>What the miniature shows: table1</h2>" in section
    assert "<li>Teacher against Student, Avg. BLEU: better" in section


def test_the_reading_of_the_declared_tables():
    mini = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")
    spec = study.table_reading(validate_config(mini, environ={}), "table1")
    assert spec["title"] == "What the miniature shows: table1"
    assert spec["roles"] == ["Teacher", "Student"] and spec["delta"] == DELTA
    assert spec["paper"]["Self-Evolution KD"][0] == 28.83
    paper = validate_config(load_config(ROOT / "config" / "config.yaml"), environ={})
    assert study.table_reading(paper, "table1")["title"] == "What this run shows: table1"
    assert study.table_reading(paper, "table2") is None  # no Student row


def test_one_seed_says_so_instead_of_comparing_intervals():
    one = [{k: v for k, v in row.items() if not k.endswith(("_lo", "_hi"))} for row in ROWS]
    lines = reading.teacher_and_students(one, "Teacher", "Student")
    assert "- Teacher against Student, Avg. chrF: better (+5.00; one seed: no interval)" in lines
    agreement = reading.paper_agreement(one, PAPER, DELTA)
    assert agreement[0] == (
        "- paper: Teacher above Student (+1.29 BLEU); here BLEU: agrees (one seed), "
        "chrF: agrees (one seed)"
    )
