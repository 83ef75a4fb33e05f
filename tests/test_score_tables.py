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
        }
    ]
    table = tables.bleu_table(rows, ["en-de", "de-en"])
    assert table == [
        {"system": "A", "run": "sft/a", "bleu_en-de": 11.0, "bleu_de-en": 20.0,
         "bleu_avg": 15.5, "n_seeds": 2}
    ]  # fmt: skip
    md = tables.to_markdown(table, ["en-de", "de-en"], "T")
    assert "| A | 11.00 | 20.00 | 15.50 |" in md and "En→De" in md
    tables.write_csv(table, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("system,run,bleu_en-de")


def test_table_rejects_non_finite_scores(tmp_path):
    rows = [{"system": "A", "run": "r", "scores": {"en-de": [_score(tmp_path, "n", float("nan"))]}}]
    with pytest.raises(ValueError, match="no finite BLEU"):
        tables.bleu_table(rows, ["en-de"])
