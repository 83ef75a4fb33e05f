"""Figures 2-5: the tidy score table, its summary, and the PNG/PDF/CSV each figure writes."""

from __future__ import annotations

import csv
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from sekd.report import figures

DIRECTIONS = ["en-de", "de-en"]


def _score(tmp_path, name, value):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"bleu": value, "signature": "nrefs:1|tok:13a"}))
    return str(path)


def _point(tmp_path, series, x, per_seed, reference=False):
    """`per_seed`: [{direction: bleu}] one dict per seed."""
    tag = re.sub(r"[^\w.→-]+", "_", f"{series}-{x}").strip("_")
    scores = {
        d: [_score(tmp_path, f"{tag}-{d}-s{i}", seed[d]) for i, seed in enumerate(per_seed)]
        for d in per_seed[0]
    }
    point = {"series": series, "x": x, "run": f"run-{tag}", "scores": scores}
    if reference:
        point["reference"] = True
    return point


def _fig5_points(tmp_path):
    """SKEW KD (teacher) over λ with three seeds (one λ with a single seed), SE-KD as reference."""
    points = [
        _point(
            tmp_path,
            "SKEW KD (teacher)",
            lam,
            [{"en-de": base + s, "de-en": base + 1.0 + 2 * s} for s in (0.0, 0.3, 0.6)],
        )
        for lam, base in [(0.3, 25.0), (0.5, 25.5), (0.7, 25.2)]
    ]
    points.append(_point(tmp_path, "SKEW KD (teacher)", 1.0, [{"en-de": 22.0, "de-en": 23.0}]))
    points.append(
        _point(
            tmp_path,
            "SE-KD",
            None,
            [{"en-de": 26.7, "de-en": 28.6}, {"en-de": 26.9, "de-en": 28.4}],
            reference=True,
        )
    )
    return points


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _assert_valid_images(paths):
    png = paths["png"].read_bytes()
    pdf = paths["pdf"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert pdf[:5] == b"%PDF-" and len(pdf) > 5_000 and pdf.rstrip().endswith(b"%%EOF")


def test_importing_the_module_is_cheap():
    code = (
        "import sys, sekd.report.figures; print(sorted({'pandas', 'matplotlib'} & {*sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_collect_has_one_row_per_point_and_seed(tmp_path):
    df = figures.collect(_fig5_points(tmp_path))
    assert len(df) == 3 * 3 + 1 + 2
    assert list(df.columns) == [
        "series",
        "x",
        "run",
        "reference",
        "seed_index",
        "bleu_en-de",
        "bleu_de-en",
        "bleu_avg",
    ]
    first = df[(df["x"] == 0.3) & (df["seed_index"] == 1)].iloc[0]
    assert first["bleu_en-de"] == pytest.approx(25.3)
    assert first["bleu_de-en"] == pytest.approx(26.6)
    assert first["bleu_avg"] == pytest.approx((25.3 + 26.6) / 2)
    assert first["run"] == "run-SKEW_KD_teacher_-0.3"
    assert df[df["series"] == "SE-KD"]["reference"].all()
    assert not df[df["series"] != "SE-KD"]["reference"].any()


def test_summarize_gives_mean_std_and_seed_count(tmp_path):
    summary = figures.summarize(figures.collect(_fig5_points(tmp_path)))
    assert list(summary["series"]) == ["SKEW KD (teacher)"] * 4 + ["SE-KD"]
    row = summary.iloc[0]
    avgs = [(25.0 + s + 26.0 + 2 * s) / 2 for s in (0.0, 0.3, 0.6)]  # 25.5, 25.95, 26.4
    assert row["n_seeds"] == 3
    assert row["mean"] == pytest.approx(statistics.fmean(avgs)) == pytest.approx(25.95)
    assert row["std"] == pytest.approx(statistics.stdev(avgs)) == pytest.approx(0.45)
    assert row["bleu_en-de"] == pytest.approx(25.3) and row["bleu_de-en"] == pytest.approx(26.6)
    single = summary.iloc[3]
    assert (single["n_seeds"], single["mean"], single["std"]) == (1, 22.5, 0.0)
    ref = summary.iloc[4]
    assert ref["reference"] and ref["n_seeds"] == 2
    assert ref["mean"] == pytest.approx(27.65) and ref["std"] == pytest.approx(0.0)


def test_line_figure_writes_png_pdf_and_the_summary_csv(tmp_path):
    paths = figures.line_figure(
        _fig5_points(tmp_path),
        tmp_path / "figs" / "fig5",
        title="Effect of the loss weight λ of SKEW KD (teacher)",
        xlabel="λ",
    )
    assert paths == {ext: tmp_path / "figs" / f"fig5.{ext}" for ext in ("png", "pdf", "csv")}
    _assert_valid_images(paths)
    rows = _read_csv(paths["csv"])
    assert [(r["series"], r["x"], r["reference"]) for r in rows] == [
        ("SKEW KD (teacher)", "0.3", "False"),
        ("SKEW KD (teacher)", "0.5", "False"),
        ("SKEW KD (teacher)", "0.7", "False"),
        ("SKEW KD (teacher)", "1.0", "False"),
        ("SE-KD", "", "True"),
    ]
    assert float(rows[0]["mean"]) == pytest.approx(25.95) and float(rows[0]["std"]) == 0.45
    assert float(rows[1]["mean"]) == pytest.approx(26.45)
    assert (rows[3]["n_seeds"], float(rows[3]["std"])) == ("1", 0.0)
    assert float(rows[4]["mean"]) == pytest.approx(27.65) and rows[4]["n_seeds"] == "2"
    assert not list(tmp_path.glob("figs/*.tmp"))


def test_line_figure_is_deterministic(tmp_path):
    points = _fig5_points(tmp_path)
    a = figures.line_figure(points, tmp_path / "a", "Γ", "Γ")
    b = figures.line_figure(points, tmp_path / "b", "Γ", "Γ")
    for ext in ("png", "pdf", "csv"):
        assert a[ext].read_bytes() == b[ext].read_bytes(), ext


def test_line_figure_rejects_a_non_numeric_x(tmp_path):
    points = [_point(tmp_path, "SE-KD", "high", [{"en-de": 20.0}])]
    with pytest.raises(ValueError, match="'high' is not a number"):
        figures.line_figure(points, tmp_path / "f", "t", "x")


def test_bar_figure_fig3_one_series_of_strategies(tmp_path):
    strategies = {"static 0.5": (28.8, 28.6), "0.5→0.0": (28.5, 28.7), "0.9→0.5": (28.6, 28.6)}
    points = [
        _point(tmp_path, "SE-KD", label, [{"en-de": a, "de-en": b}, {"en-de": a + 0.2, "de-en": b}])
        for label, (a, b) in strategies.items()
    ]
    paths = figures.bar_figure(points, tmp_path / "fig3", "Static vs progressive β", "β strategy")
    _assert_valid_images(paths)
    rows = _read_csv(paths["csv"])
    assert [r["x"] for r in rows] == list(strategies)
    # static 0.5: seed averages 28.7 and 28.8
    assert float(rows[0]["mean"]) == pytest.approx(28.75)
    assert float(rows[0]["std"]) == pytest.approx(statistics.stdev([28.7, 28.8]), abs=1e-4)


def test_bar_figure_fig4_one_direction_per_point(tmp_path):
    labels = {"en-de": "En→De", "de-en": "De→En", "en-cs": "En→Cs", "cs-en": "Cs→En"}
    strategies = {"Forward KD": 30.0, "SKEW KD": 31.0, "Self-Evolution KD": 33.0}
    points = [
        _point(tmp_path, name, labels[d], [{d: base + i}, {d: base + i + 0.4}])
        for name, base in strategies.items()
        for i, d in enumerate(labels)
    ]
    paths = figures.bar_figure(
        points, tmp_path / "fig4", "Knowledge transfer", "Direction", "SacreBLEU vs. teacher"
    )
    _assert_valid_images(paths)
    rows = _read_csv(paths["csv"])
    assert len(rows) == 12
    row = next(r for r in rows if r["series"] == "SKEW KD" and r["x"] == "En→Cs")
    assert float(row["mean"]) == pytest.approx(33.2) == pytest.approx(float(row["bleu_en-cs"]))
    assert row["bleu_en-de"] == "" and row["n_seeds"] == "2"


def test_a_missing_score_file_is_named(tmp_path):
    points = _fig5_points(tmp_path)
    missing = tmp_path / "SE-KD-None-de-en-s1.json"
    missing.unlink()
    with pytest.raises(ValueError, match=re.escape("SE-KD-None-de-en-s1.json")):
        figures.collect(points)
    with pytest.raises(ValueError, match="does not exist"):
        figures.line_figure(points, tmp_path / "f", "t", "x")
    assert not (tmp_path / "f.png").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"chrf": 50}', "no finite number"), ('{"bleu": NaN}', "")],
)
def test_an_invalid_score_file_is_named(tmp_path, content, message):
    points = [_point(tmp_path, "A", 1, [{"en-de": 20.0}, {"en-de": 21.0}])]
    bad = tmp_path / "A-1-en-de-s1.json"
    bad.write_text(content)
    with pytest.raises(ValueError, match=re.escape("A-1-en-de-s1.json") + f".*{message}"):
        figures.collect(points)


def test_points_must_agree_on_seeds_and_be_unique(tmp_path):
    point = _point(tmp_path, "A", 1, [{"en-de": 20.0, "de-en": 21.0}])
    point["scores"]["en-de"] = [*point["scores"]["en-de"], point["scores"]["en-de"][0]]
    with pytest.raises(ValueError, match="same, non-zero number of seeds"):
        figures.collect([point])
    twice = _point(tmp_path, "B", 1, [{"en-de": 20.0}])
    with pytest.raises(ValueError, match="same series and x"):
        figures.collect([twice, twice])


def test_the_study_layer_is_importable_without_torch_numpy_pandas():
    code = (
        "import sys, sekd.plan.study; "
        "print(sorted({'torch', 'numpy', 'pandas', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def mini_config():
    from pathlib import Path

    from sekd.plan.config import load_config

    root = Path(__file__).resolve().parents[1]
    return load_config(root / "config" / "config.yaml", root / "config" / "mini.yaml")


def test_declared_figures_give_the_papers_points(mini_config):
    from sekd.plan import study

    fig3 = study.figure_spec(mini_config, "fig3")
    assert fig3["kind"] == "bar" and fig3["xlabel"] == "β strategy"
    assert [p["x"] for p in fig3["points"]] == ["static 0.5", "0.5→0", "0.9→0.5"]
    fig2b = study.figure_spec(mini_config, "fig2b")
    references = [(p["series"], p["x"]) for p in fig2b["points"] if p["reference"]]
    assert references == [("NoEvo KD", None), ("SKEW KD", None), ("Self-Evolution KD w/ Γ", None)]
    assert [p["x"] for p in fig2b["points"] if not p["reference"]] == [10, 30, 50]
    fig4 = study.figure_spec(mini_config, "fig4")
    assert fig4["ylabel"] == "SacreBLEU vs. teacher outputs"
    first = fig4["points"][0]
    assert (first["series"], first["x"]) == ("Forward KD", "En→De")
    assert list(first["scores"]) == ["en-de"]
    assert first["scores"]["en-de"][0].startswith("results/scores_vs_teacher/")
    fig5 = study.figure_spec(mini_config, "fig5")
    assert fig5["points"][0]["run"] == "kd/teacher/skew_teacher_kd-lam0.3-beta0.9"
    assert fig5["title"] == "Fig. 5: SKEW KD (teacher), eq. 10, β=0.9, by λ"


def test_draw_takes_kind_title_and_labels_from_the_spec(tmp_path):
    spec = {
        "kind": "bar",
        "title": "Static vs progressive β",
        "xlabel": "β strategy",
        "ylabel": "SacreBLEU vs. teacher",
        "points": [_point(tmp_path, "SE-KD", "static 0.5", [{"en-de": 28.0}])],
    }
    paths = figures.draw(spec, tmp_path / "fig")
    _assert_valid_images(paths)
    assert _read_csv(paths["csv"])[0]["x"] == "static 0.5"


def _with_chrf(point, offset=30.0):
    """`point` with a chrF (its BLEU + `offset`) in every score file, as rule bleu writes them."""
    for paths in point["scores"].values():
        for path in paths:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            data["chrf"] = data["bleu"] + offset
            with open(path, "w", encoding="utf-8") as f:
                json.dump(data, f)
    return point


def test_line_and_bar_figures_draw_chrf_beside_bleu(tmp_path):
    from PIL import Image

    points = [_with_chrf(p) for p in _fig5_points(tmp_path)]
    assert figures.metrics_of(points) == ["bleu", "chrf"]
    paths = figures.line_figure(points, tmp_path / "both", "λ", "λ")
    _assert_valid_images(paths)
    rows = _read_csv(paths["csv"])
    assert float(rows[0]["mean"]) == pytest.approx(25.95)
    assert float(rows[0]["chrf_mean"]) == pytest.approx(55.95)
    assert float(rows[0]["chrf_std"]) == pytest.approx(float(rows[0]["std"]))
    assert float(rows[4]["chrf_en-de"]) == pytest.approx(56.8)  # the reference's mean
    (tmp_path / "plain").mkdir()
    bleu_only = figures.line_figure(_fig5_points(tmp_path / "plain"), tmp_path / "one", "λ", "λ")
    assert "chrf_mean" not in _read_csv(bleu_only["csv"])[0]
    two, one = Image.open(paths["png"]), Image.open(bleu_only["png"])
    assert two.width > 1.4 * one.width  # a second panel
    bars = figures.bar_figure(
        [_with_chrf(_point(tmp_path, "SE-KD", x, [{"en-de": v}])) for x, v in (("a", 1), ("b", 2))],
        tmp_path / "bars",
        "Bars",
        "x",
        "SacreBLEU vs. teacher outputs",
    )
    assert [float(r["chrf_mean"]) for r in _read_csv(bars["csv"])] == [31.0, 32.0]
    assert figures._ylabel("SacreBLEU vs. teacher outputs", "chrf") == "chrF vs. teacher outputs"


def test_a_score_file_without_chrf_leaves_the_figure_to_bleu(tmp_path):
    points = [_with_chrf(p) for p in _fig5_points(tmp_path)]
    points.append(_point(tmp_path, "old", 2.0, [{"en-de": 1.0, "de-en": 1.0}]))
    assert figures.metrics_of(points) == ["bleu"]
