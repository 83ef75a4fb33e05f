"""SacreBLEU wrapper and table building."""

from __future__ import annotations

import json

import pytest

from sekd import score, tables


def test_bleu_matches_sacrebleu_and_keeps_the_signature():
    import sacrebleu

    hyps = ["The cat sat on the mat.", "A dog barked loudly at night."]
    refs = ["The cat sat on the mat.", "The dog barked loudly in the night."]
    result = score.bleu(hyps, refs)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert "tok:13a" in result["signature"] and result["n_sentences"] == 2


def test_bleu_rejects_a_length_mismatch():
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        score.bleu(["a", "b"], ["a"])


def test_read_lines_keeps_empty_hypotheses(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("one\n\nthree\n")
    assert score.read_lines(path) == ["one", "", "three"]


def _score(tmp_path, name, value):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"bleu": value}))
    return str(path)


def test_table_averages_seeds_then_directions(tmp_path):
    rows = [
        {
            "system": "A",
            "run": "sft/a",
            "scores": {
                "en-de": [_score(tmp_path, "a1", 10.0), _score(tmp_path, "a2", 12.0)],
                "de-en": [_score(tmp_path, "a3", 20.0), _score(tmp_path, "a4", 20.0)],
            },
            "comet": None,
        }
    ]
    (rec,) = tables.results_table(rows, ["en-de", "de-en"])
    assert rec["bleu_en-de"] == 11.0 and rec["bleu_de-en"] == 20.0 and rec["bleu_avg"] == 15.5
    assert rec["bleu_en-de_std"] == pytest.approx(1.4142, abs=1e-4)
    assert rec["bleu_avg_std"] == pytest.approx(0.7071, abs=1e-4)  # std of per-seed averages
    assert rec["comet_avg"] == "" and rec["n_seeds"] == 2
    md = tables.to_markdown([rec], ["en-de", "de-en"], "T")
    assert "| A | 11.00 ± 1.41 | 20.00 ± 0.00 | 15.50 ± 0.71 |" in md
    assert "COMET: not computed" in md
    tables.write_csv([rec], tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert header.startswith("system,run,bleu_en-de,bleu_de-en,bleu_avg,comet_en-de")


def _comet(tmp_path, name, value):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"comet": value}))
    return str(path)


def test_table_with_comet_and_daggers(tmp_path):
    rows = [
        {"system": s, "run": s, "scores": {"en-de": [_score(tmp_path, s, b)]},
         "comet": {"en-de": [_comet(tmp_path, s + "c", c)]}}
        for s, b, c in (("Forward KD", 20.0, 80.0), ("Self-Evolution KD", 22.0, 81.0))
    ]  # fmt: skip
    significance = {"Self-Evolution KD": {"en-de": 0.01}, "Forward KD": {}}
    table = tables.results_table(rows, ["en-de"], significance)
    assert table[1]["p_en-de"] == 0.01 and table[0]["p_en-de"] == ""
    md = tables.to_markdown(table, ["en-de"], "T")
    assert "| Self-Evolution KD | 22.00† | 81.00 | 22.00 | 81.00 |" in md
    assert "† p < 0.05" in md
    tex = tables.to_latex(table, ["en-de"], "Caption", "tab:t")
    assert r"\toprule" in tex and r"22.00$^\dagger$" in tex and r"En$\rightarrow$De" in tex


def test_table_rejects_non_finite_or_missing_scores(tmp_path):
    rows = [{"system": "A", "run": "r", "scores": {"en-de": [_score(tmp_path, "n", float("nan"))]}}]
    with pytest.raises(ValueError, match="no finite"):
        tables.results_table(rows, ["en-de"])
    rows[0]["scores"]["en-de"] = [str(tmp_path / "missing.json")]
    with pytest.raises(ValueError, match=r"missing\.json"):
        tables.results_table(rows, ["en-de"])


@pytest.fixture(scope="module")
def paper_config():
    from pathlib import Path

    from sekd.config import load_config

    return load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")


def test_declared_tables_give_their_rows_and_comet(paper_config):
    from sekd import study

    assert study.table_names(paper_config) == ["table1", "table2"]
    rows = study.table_rows(paper_config, "table1")
    assert rows[:3] == [
        ("Teacher", "sft/teacher"),
        ("Student", "sft/student"),
        ("Forward KD", "kd/teacher/forward_kd-lam0.5"),
    ]
    assert [label for label, _ in study.table_rows(paper_config, "table2")][:2] == [
        "Teacher",
        "Forward KD",
    ]
    assert study.table_spec(paper_config, "table1")[0]["comet"] is not None
    assert study.table_spec(paper_config, "table2")[0]["comet"] is None
    significance = study.significance_spec(paper_config, "table2")
    assert significance["baseline"] == "Forward KD" and "Teacher" not in significance["systems"]
    caption = study.captions(paper_config)["table1"]
    assert "Self-Evolution KD 28.83 / 82.48" in caption and "{paper}" not in caption
