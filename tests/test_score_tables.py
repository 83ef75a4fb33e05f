"""SacreBLEU wrapper and table building."""

from __future__ import annotations

import json

import pytest

from sekd.evaluate import bleu as score
from sekd.report import tables


def test_bleu_matches_sacrebleu_and_keeps_the_signature():
    import sacrebleu

    hyps = ["The cat sat on the mat.", "A dog barked loudly at night."]
    refs = ["The cat sat on the mat.", "The dog barked loudly in the night."]
    result = score.bleu(hyps, refs)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert "tok:13a" in result["signature"] and result["n_sentences"] == 2


def test_chrf_matches_sacrebleu_and_keeps_its_signature():
    import sacrebleu

    hyps = ["The cat sat on the mat.", "A dog barked loudly at night."]
    refs = ["The cat sat on the mat.", "The dog barked loudly in the night."]
    result = score.chrf(hyps, refs)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert 0 < result["chrf"] < 100 and "nc:6|nw:0" in result["chrf_signature"]
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        score.chrf(hyps, refs[:1])


def test_the_score_file_has_bleu_and_chrf_with_their_signatures(tmp_path):
    hyps = tmp_path / "h.txt"
    hyps.write_text("das ist gut\nvoellig falsch\n")
    refs = ["das ist gut", "ganz richtig"]
    out = tmp_path / "s.json"
    score.write_bleu(str(hyps), refs, "13a", str(out))
    written = json.loads(out.read_text())
    lines = ["das ist gut", "voellig falsch"]
    assert written["bleu"] == pytest.approx(score.bleu(lines, refs)["bleu"])
    assert written["chrf"] == pytest.approx(score.chrf(lines, refs)["chrf"])
    assert written["signature"].startswith("nrefs:1") and "nc:6" in written["chrf_signature"]


def test_bleu_rejects_a_length_mismatch():
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        score.bleu(["a", "b"], ["a"])


def test_read_lines_keeps_empty_hypotheses(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("one\n\nthree\n")
    assert score.read_lines(path) == ["one", "", "three"]


def _score(tmp_path, name, value, chrf=None):
    """A score file (rule bleu) with BLEU `value` and chrF `chrf` (default: BLEU + 30)."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"bleu": value, "chrf": value + 30 if chrf is None else chrf}))
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
    # chrF from the same files; 95% t-intervals over the 2 seeds: mean ± t(0.975, 1)·s/√2
    assert rec["chrf_en-de"] == 41.0 and rec["chrf_avg"] == 45.5
    t1 = 12.706204736  # t(0.975, 1), from tables of Student's t
    assert rec["bleu_en-de_lo"] == pytest.approx(11.0 - t1, abs=1e-4)
    assert rec["bleu_en-de_hi"] == pytest.approx(11.0 + t1, abs=1e-4)
    assert rec["bleu_de-en_lo"] == rec["bleu_de-en_hi"] == 20.0
    assert rec["chrf_avg_hi"] == pytest.approx(45.5 + t1 * 0.70710678 / 2**0.5, abs=1e-4)
    assert rec["comet_avg_lo"] == ""
    md = tables.to_markdown([rec], ["en-de", "de-en"], "T")
    assert (
        "| A | 11.00 [-1.71, 23.71] | 41.00 [28.29, 53.71] | 20.00 [20.00, 20.00] | "
        "50.00 [50.00, 50.00] | 15.50 [9.15, 21.85] | 45.50 [39.15, 51.85] |"
    ) in md
    assert "COMET: not computed" in md
    assert "Cells: mean over 2 seeds [95% interval over seeds: mean ± t(0.975, n-1)·s/√n" in md
    tables.write_csv([rec], tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert header.startswith(
        "system,run,bleu_en-de,bleu_de-en,bleu_avg,chrf_en-de,chrf_de-en,chrf_avg,comet_en-de"
    )
    assert ",bleu_avg_lo,bleu_avg_hi," in header and header.endswith("valid_kl_lo,valid_kl_hi")


def test_t_quantiles_and_the_interval_by_hand():
    # two-sided 95% quantiles of Student's t (t(0.975, df)), from any table
    expected = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 9: 2.2622, 30: 2.0423}
    for df, t in expected.items():
        assert tables.t_quantile(df) == pytest.approx(t, abs=5e-5)
    assert tables.t_quantile(1, 0.5) == pytest.approx(1.0)  # Cauchy: P(|T| <= 1) = 1/2
    # three seeds: mean 21, s = 1, half-width t(0.975, 2)·1/√3
    low, high = tables.t_interval([20.0, 21.0, 22.0])
    assert (low, high) == pytest.approx((21 - 4.302653 / 3**0.5, 21 + 4.302653 / 3**0.5))
    assert tables.t_interval([5.0]) is None
    with pytest.raises(ValueError, match="df 0"):
        tables.t_quantile(0)


def test_one_seed_has_no_interval(tmp_path):
    rows = [{"system": "A", "run": "r", "scores": {"en-de": [_score(tmp_path, "a", 9.5)]}}]
    (rec,) = tables.results_table(rows, ["en-de"])
    assert rec["bleu_avg_lo"] == rec["bleu_avg_hi"] == rec["bleu_avg_std"] == ""
    md = tables.to_markdown([rec], ["en-de"], "T")
    assert "| A | 9.50 | 39.50 | 9.50 | 39.50 |" in md
    assert "Cells: one seed (no interval over seeds)." in md


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
    chrf = {"Self-Evolution KD": {"en-de": 0.2}}
    table = tables.results_table(rows, ["en-de"], significance, chrf)
    assert table[1]["p_en-de"] == 0.01 and table[0]["p_en-de"] == ""
    assert table[1]["p_chrf_en-de"] == 0.2 and table[0]["p_chrf_en-de"] == ""
    md = tables.to_markdown(table, ["en-de"], "T")
    assert "| Self-Evolution KD | 22.00† | 52.00 | 81.00 | 22.00 | 52.00 | 81.00 |" in md
    assert "† p < 0.05" in md
    # a chrF p below 0.05 marks the chrF cell alone
    table = tables.results_table(rows, ["en-de"], {}, {"Self-Evolution KD": {"en-de": 0.03}})
    assert "| Self-Evolution KD | 22.00 | 52.00† | 81.00 |" in tables.to_markdown(
        table, ["en-de"], "T"
    )
    tex = tables.to_latex(table, ["en-de"], "Caption", "tab:t")
    assert r"\toprule" in tex and r"52.00$^\dagger$" in tex and r"En$\rightarrow$De" in tex


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

    from sekd.plan.config import load_config

    return load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")


def test_declared_tables_give_their_rows_and_comet(paper_config):
    from sekd.plan import study

    assert study.table_names(paper_config) == ["table1", "table2", "table3"]
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


# Table 1 as the paper prints it (issue 11): the Δ row, the † test, the ‡ rows, the titles

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _rows(tmp_path, scores: dict[str, list[float]], comet: dict[str, float] | None = None):
    """Rows of a one-direction table with the given BLEU per seed (and COMET, one seed)."""
    return [
        {
            "system": system,
            "run": f"kd/teacher/{i}",
            "scores": {"en-de": [_score(tmp_path, f"{i}s{j}", v) for j, v in enumerate(values)]},
            "comet": {"en-de": [_comet(tmp_path, f"{i}c", comet[system])]} if comet else None,
        }
        for i, (system, values) in enumerate(scores.items())
    ]


def test_delta_row_is_the_system_minus_the_baseline_from_the_tables_means(tmp_path):
    scores = {
        "Forward KD": [20.0, 21.0],
        "NoEvo KD": [20.5, 20.5],
        "Self-Evolution KD": [22.0, 22.38],
    }
    table = tables.results_table(_rows(tmp_path, scores), ["en-de"])
    table = tables.add_delta(table, "Self-Evolution KD", "Forward KD")
    delta = table[-1]
    assert delta["system"] == "Δ" and delta["run"] == "" and delta["n_seeds"] == ""
    assert delta["bleu_en-de"] == pytest.approx(22.19 - 20.5) and delta["bleu_avg"] == 1.69
    assert delta["p_en-de"] == "" and delta["bleu_en-de_std"] == "" and delta["comet_avg"] == ""
    tables.write_csv(table, tmp_path / "t.csv")
    last = (tmp_path / "t.csv").read_text().splitlines()[-1]
    assert last.startswith("Δ,,1.69,1.69,1.69,1.69,,,")  # BLEU, chrF, no COMET
    md = tables.to_markdown(
        table, ["en-de"], "T", delta={"system": "Self-Evolution KD", "baseline": "Forward KD"}
    )
    assert "| Δ | +1.69 | +1.69 |" in md and "Δ: Self-Evolution KD minus Forward KD." in md
    tex = tables.to_latex(table, ["en-de"], "T", "tab:t")
    assert r"$\Delta$ & +1.69 & +1.69 & +1.69 & +1.69 \\" in tex
    assert r"t(0.975, n-1)$\cdot$s/$\surd$n" in tex  # the interval's formula, in math
    # a negative Δ keeps its sign, a zero one is +0.00
    worse = tables.add_delta(table[:-1], "NoEvo KD", "Forward KD")
    assert worse[-1]["bleu_avg"] == 0.0
    assert "| Δ | +0.00 | +0.00 |" in tables.to_markdown(worse, ["en-de"], "T")
    assert "| Δ | -1.69 |" in tables.to_markdown(
        tables.add_delta(table[:-1], "Forward KD", "Self-Evolution KD"), ["en-de"], "T"
    )


def test_delta_interval_is_that_of_the_paired_per_seed_differences(tmp_path):
    scores = {"Forward KD": [20.0, 21.0, 23.0], "Self-Evolution KD": [21.0, 22.5, 23.5]}
    rows = _rows(tmp_path, scores)
    table = tables.results_table(rows, ["en-de"])
    delta = tables.add_delta(table, "Self-Evolution KD", "Forward KD", rows, ["en-de"])[-1]
    differences = [1.0, 1.5, 0.5]
    low, high = tables.t_interval(differences)
    assert delta["bleu_avg"] == 1.0
    assert (delta["bleu_avg_lo"], delta["bleu_avg_hi"]) == (round(low, 4), round(high, 4))
    # paired: narrower than the two rows' own intervals, which the seeds' spread widens
    assert high - low < table[1]["bleu_avg_hi"] - table[1]["bleu_avg_lo"]
    assert delta["bleu_avg_std"] == pytest.approx(0.5) and delta["chrf_en-de_lo"] == round(low, 4)
    md = tables.to_markdown(
        [*table, delta],
        ["en-de"],
        "T",
        delta={"system": "Self-Evolution KD", "baseline": "Forward KD"},
    )
    assert f"| Δ | +1.00 [{low:+.2f}, +{high:.2f}] |" in md
    assert "paired per-seed differences" in md
    one_seed = _rows(tmp_path, {"Forward KD": [20.0], "Self-Evolution KD": [21.0]})
    single = tables.add_delta(
        tables.results_table(one_seed, ["en-de"]),
        "Self-Evolution KD",
        "Forward KD",
        one_seed,
        ["en-de"],
    )[-1]
    assert single["bleu_avg"] == 1.0 and single["bleu_avg_lo"] == ""


def test_delta_row_with_comet(tmp_path):
    rows = _rows(tmp_path, {"Forward KD": [27.39], "Self-Evolution KD": [28.83]},
                 comet={"Forward KD": 82.20, "Self-Evolution KD": 82.48})  # fmt: skip
    table = tables.add_delta(
        tables.results_table(rows, ["en-de"]), "Self-Evolution KD", "Forward KD"
    )
    assert table[-1]["bleu_avg"] == 1.44 and table[-1]["comet_avg"] == 0.28
    md = tables.to_markdown(table, ["en-de"], "T")
    assert "| Δ | +1.44 | +1.44 | +0.28 | +1.44 | +1.44 | +0.28 |" in md


def test_delta_row_needs_both_rows(tmp_path):
    table = tables.results_table(_rows(tmp_path, {"Forward KD": [20.0]}), ["en-de"])
    with pytest.raises(ValueError, match="'Self-Evolution KD' is not a row"):
        tables.add_delta(table, "Self-Evolution KD", "Forward KD")


def test_notes_and_caption_say_which_test(tmp_path):
    rows = _rows(tmp_path, {"Forward KD": [20.0, 20.0], "Self-Evolution KD": [22.0, 23.0]})
    table = tables.results_table(rows, ["en-de"], {"Self-Evolution KD": {"en-de": 0.001}})
    test = {"method": "paired_bootstrap", "pooled_seeds": [1, 2], "n_samples": 1000, "seed": 12345}
    md = tables.to_markdown(table, ["en-de"], "T", test=test, baseline="Forward KD")
    expected = (
        "† p < 0.05 against Forward KD, in that cell's metric (paired bootstrap resampling "
        "(Koehn, 2004), 1000 resamples, seed 12345, over the test sentences of 2 seeds pooled, "
        "each sentence paired with the baseline's of the same seed)."
    )
    assert expected in md
    tex = tables.to_latex(table, ["en-de"], "T", "tab:t", test=test, baseline="Forward KD")
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption"))
    assert r"$^\dagger$ p $<$ 0.05 against Forward KD, in that cell's metric (paired" in caption
    assert "2 seeds pooled" in caption
    one = {**test, "pooled_seeds": [1]}
    assert "over the test sentences of seed 1)" in tables.to_markdown(
        table, ["en-de"], "T", test=one
    )


def test_latex_text_escapes_and_sets_symbols_in_math():
    assert tables.latex_text("tiny Llama 128×3 & 50% a_b") == (
        r"tiny Llama 128$\times$3 \& 50\% a\_b"
    )
    assert tables.latex_text("Forward KD‡") == r"Forward KD$^\ddagger$"


@pytest.fixture(scope="module")
def mini_config():
    from sekd.plan.config import load_config

    return load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")


def test_the_declared_tables_have_a_delta_row(paper_config):
    from sekd.plan import study

    for name in ("table1", "table2", "table3"):
        assert study.table_delta(paper_config, name) == {
            "system": "Self-Evolution KD",
            "baseline": "Forward KD",
        }
    config = {**paper_config, "tables": {**paper_config["tables"]}}
    config["tables"]["table1"] = {**config["tables"]["table1"], "delta": None}
    assert study.table_delta(config, "table1") is None


def _validate_with(changes: dict) -> None:
    """validate_config on config/config.yaml with `changes` (dotted key -> value) applied."""
    import copy

    import yaml

    from sekd.plan.config import validate_config

    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    raw = copy.deepcopy(raw)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = raw
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    validate_config(raw, environ={})


def test_a_delta_objective_missing_from_the_table_is_a_config_error():
    from sekd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'tables\.table2\.delta': 'seq_kd' is not a row"):
        _validate_with({"tables.table2.delta": "seq_kd"})
    with pytest.raises(ConfigError, match=r"'tables\.table2\.delta': the baseline 'forward_kd'"):
        _validate_with({"tables.table2.objectives": ["noevo_kd", "sekd"]})
    with pytest.raises(ConfigError, match=r"'tables\.table2\.delta': 'forward_kd' is the baseline"):
        _validate_with({"tables.table2.delta": "forward_kd"})
    # without a Δ row the baseline need not be a row (the significance job says so if it runs)
    _validate_with({"tables.table2.objectives": ["noevo_kd", "sekd"], "tables.table2.delta": None})


def test_rows_that_are_one_run_up_to_a_constant_are_marked(paper_config, tmp_path):
    from sekd.plan import study

    assert study.table_marks(paper_config, "table1") == [
        {"sign": "‡", "systems": ["Forward KD", "NoEvo KD"]}
    ]
    assert study.table_marks(paper_config, "table3") == [
        {"sign": "‡", "systems": ["Forward KD", "Word-KD"]}
    ]
    only_one = {**paper_config, "tables": {**paper_config["tables"]}}
    only_one["tables"]["table2"] = {
        **only_one["tables"]["table2"],
        "objectives": ["noevo_kd", "sekd"],
    }
    assert study.table_marks(only_one, "table2") == []
    # noevo_kd and word_kd both have forward_kd's gradient: one group even without forward_kd
    twins = {**paper_config, "tables": {**paper_config["tables"]}}
    twins["tables"]["table2"] = {**twins["tables"]["table2"], "objectives": ["noevo_kd", "word_kd"]}
    assert study.table_marks(twins, "table2") == [{"sign": "‡", "systems": ["NoEvo KD", "Word-KD"]}]

    marks = study.table_marks(paper_config, "table1")
    rows = _rows(tmp_path, {"Forward KD": [20.0], "NoEvo KD": [20.01], "SKEW KD": [21.0]})
    table = tables.results_table(rows, ["en-de"])
    md = tables.to_markdown(table, ["en-de"], "T", marks=marks)
    assert "| Forward KD‡ | 20.00 |" in md and "| NoEvo KD‡ | 20.01 |" in md
    assert "| SKEW KD | 21.00 |" in md
    assert "‡ Forward KD and NoEvo KD: the same training run up to a constant and floating-point " \
        "rounding" in md  # fmt: skip
    tex = tables.to_latex(table, ["en-de"], "T", "tab:t", marks=marks)
    assert r"Forward KD$^\ddagger$ & 20.00" in tex and r"NoEvo KD$^\ddagger$ & 20.01" in tex
    assert "the same training run up to a constant" in tex


def test_same_gradient_declarations_are_checked():
    from sekd.plan import study
    from sekd.plan.objectives import OBJECTIVES, Objective, declared

    assert OBJECTIVES["noevo_kd"].same_gradient_as == "forward_kd"
    assert OBJECTIVES["word_kd"].same_gradient_as == "forward_kd"
    assert OBJECTIVES["forward_kd"].same_gradient_as == ""
    assert study._same_gradient_errors() == []
    with declared(Objective("ghost_kd", "Ghost", ("lam",), True, same_gradient_as="nope_kd")):
        assert study._same_gradient_errors() == [
            "objective 'ghost_kd': same_gradient_as 'nope_kd' is not another declared objective"
        ]
    with declared(
        Objective("other_kd", "Other", ("lam", "beta"), True, same_gradient_as="forward_kd")
    ):
        (error,) = study._same_gradient_errors()
        assert "'other_kd'" in error and "other hyper-parameters" in error


def test_titles_and_captions_name_the_configured_models(paper_config, mini_config):
    from sekd.plan import study

    title = study.table_title(paper_config, "table1")
    assert "llama-13b teacher" in title and "llama-7b student" in title
    assert "llama-30b teacher" in study.table_title(paper_config, "table2")
    assert study.model_label(paper_config, "teacher") == "llama-13b"
    mini = study.table_title(mini_config, "table1")
    assert "13b" not in mini.lower() and "tiny Llama 128×3 teacher" in mini
    assert "tiny Llama 64×2 student" in mini
    assert "tiny Llama 192×4 teacher" in study.table_title(mini_config, "table2")
    caption = study.captions(mini_config)["table1"]
    assert "here with the tiny Llama 128×3 teacher" in caption and "{" not in caption
    for config in (paper_config, mini_config):
        for name in study.table_names(config):
            assert "{" not in study.table_title(config, name) + study.table_caption(config, name)


def test_row_labels_take_the_placeholders_too(paper_config):
    from sekd.plan import study

    config = {**paper_config, "tables": {**paper_config["tables"]}}
    sft_rows = [{"label": "Teacher ({teacher})", "role": "teacher"}]
    config["tables"]["table2"] = {**config["tables"]["table2"], "sft_rows": sft_rows}
    assert study.table_rows(config, "table2")[0] == ("Teacher (llama-30b)", "sft/teacher_l")


def test_an_unknown_placeholder_is_a_config_error():
    from sekd.errors import ConfigError

    with pytest.raises(
        ConfigError, match=r"'tables\.table1\.title': unknown placeholder \{model\}"
    ):
        _validate_with({"tables.table1.title": "Table 1 ({model})"})
    with pytest.raises(ConfigError, match=r"'tables\.table1\.sft_rows\.0\.label'"):
        _validate_with({"tables.table1.sft_rows": [{"label": "T {paper}", "role": "teacher"}]})


def test_the_report_shows_chrf_intervals_counts_and_chrf_daggers(tmp_path):
    from sekd.report import html

    rows = _rows(tmp_path, {"Forward KD": [20.0, 22.0], "Self-Evolution KD": [21.0, 23.0]})
    fit = tmp_path / "fit.json"
    fit.write_text(
        json.dumps({"nll": 2.0, "kl": 0.5, "examples": 40, "dropped": 3, "truncated": 1})
    )
    for row in rows:
        row["fit"] = [str(fit), str(fit)]
    table = tables.results_table(rows, ["en-de"], {}, {"Self-Evolution KD": {"en-de": 0.01}})
    assert table[1]["valid_dropped"] == 3 and table[1]["valid_examples"] == 40
    tables.write_csv(table, tmp_path / "t.csv")
    page = html._csv_table(tmp_path / "t.csv")
    assert "<th>chrf_en-de</th>" in page and "_lo</th>" not in page and "_std</th>" not in page
    assert "<td>52.00 [39.29, 64.71]†</td>" in page  # chrF's † from p_chrf_en-de
    assert "<td>22.00 [9.29, 34.71]</td>" in page and "<td>3</td>" in page
    md = tables.to_markdown(table, ["en-de"], "T")
    assert "Of the 40 validation examples, 3 dropped (prompt alone longer than" in md


def test_a_table_may_have_its_own_seeds(paper_config, mini_config):
    from sekd.plan import study

    # the miniature: Table 1 over three seeds, the other tables over the config's
    assert study.table_seeds(mini_config, "table1") == [1, 2, 3]
    assert study.table_seeds(mini_config, "table2") == mini_config["seeds"] == [1]
    row = study.table_spec(mini_config, "table1")[2]
    assert [f.split("/")[-3] for f in row["scores"]["en-de"]] == ["seed1", "seed2", "seed3"]
    assert [f.split("/")[-2] for f in row["fit"]] == ["seed1", "seed2", "seed3"]
    test = study.significance_spec(mini_config, "table1")
    assert test["seeds"] == [1, 2, 3] and len(test["systems"]["Forward KD"]["en-de"]) == 3
    curves = study.table_curves_spec(mini_config, "table1")["lines"][0]["curves"]
    assert len(curves) == 3
    assert len(study.table_spec(mini_config, "table2")[0]["scores"]["en-de"]) == 1
    # the paper's config: no table overrides the config's seeds
    for table in study.table_names(paper_config):
        assert study.table_seeds(paper_config, table) == paper_config["seeds"]
