"""The mechanism visible (issue 11): each training run's curves as CSV (rule curves), the curve
figure of the hard-token fraction under Γ (Fig. 2a) and top-K% (Fig. 2b), each table's runs'
curves, and the report's Training curves section."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sekd.errors import ConfigError
from sekd.plan import study
from sekd.plan.config import load_config
from sekd.report import curves, figures
from sekd.report import html as report

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MINI = ROOT / "config" / "mini.yaml"
PNG = b"\x89PNG\r\n\x1a\n"

# A Trainer log as sekd.train.job writes it: logging steps out of order, an evaluation entry, the
# end-of-training summary; β only under a schedule, hard_fraction only for token-splitting KD.
LOG = [
    {"loss": 0.5, "learning_rate": 0.001, "hard_fraction": 0.25, "epoch": 0.4, "step": 4},
    {"loss": 0.7, "learning_rate": 0.002, "hard_fraction": 0.5, "epoch": 0.2, "step": 2},
    {"eval_loss": 0.9, "epoch": 0.4, "step": 4},
    {"train_runtime": 1.0, "train_loss": 0.6, "epoch": 0.4, "step": 4},
]


def _summary(tmp_path: Path, log: list[dict]) -> Path:
    model = tmp_path / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "train_summary.json").write_text(json.dumps({"log_history": log}))
    return model


def _read(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_curves_csv_has_the_columns_in_step_order_with_empty_cells(tmp_path):
    out = curves.write(_summary(tmp_path, LOG), tmp_path / "curves" / "seed1.csv")
    assert out.read_text().splitlines()[0] == "step,epoch,loss,learning_rate,hard_fraction,beta"
    rows = _read(out)
    assert [r["step"] for r in rows] == ["2", "4"]  # logging steps only, in order
    assert [r["loss"] for r in rows] == ["0.7", "0.5"]
    assert [r["hard_fraction"] for r in rows] == ["0.5", "0.25"]
    assert [r["beta"] for r in rows] == ["", ""]  # not logged: empty, not 0


def test_curves_csv_refuses_a_log_without_logging_steps_or_with_a_nan(tmp_path):
    with pytest.raises(ValueError, match="no logging step"):
        curves.write(_summary(tmp_path, LOG[2:]), tmp_path / "a.csv")
    bad = [{"loss": float("nan"), "epoch": 0.2, "step": 2}]
    with pytest.raises(ValueError, match=r"log_history\[0\].*'loss'"):
        curves.write(_summary(tmp_path, bad), tmp_path / "b.csv")
    with pytest.raises(ValueError, match="does not exist"):
        curves.write(tmp_path / "missing", tmp_path / "c.csv")
    assert not (tmp_path / "a.csv").exists() and not (tmp_path / "b.csv").exists()


@pytest.fixture
def mini(alma_mirror, monkeypatch) -> dict:
    monkeypatch.setenv("SEKD_DATA_MIRROR", str(alma_mirror))
    return load_config(ROOT / "config" / "config.yaml", MINI)


def test_the_curve_figure_follows_the_swept_runs_of_fig2a_and_fig2b(mini):
    spec = study.figure_spec(mini, "hard_fraction")
    assert (spec["kind"], spec["x"], spec["y"]) == ("curve", "step", "hard_fraction")
    runs = [line["run"] for line in spec["lines"]]
    swept = [
        p["run"]
        for fig in ("fig2a", "fig2b")
        for p in study.figure_spec(mini, fig)["points"]
        if not p["reference"]
    ]
    assert runs == list(dict.fromkeys(swept))
    gammas = mini["figures"]["fig2a"]["gamma"]
    ks = mini["figures"]["fig2b"]["top_k_percent"]
    assert len(runs) == len(gammas) + len(ks)
    assert spec["lines"][0]["series"].endswith(f"Γ = {gammas[0]:g}")
    assert spec["lines"][-1]["series"].endswith(f"K% = {ks[-1]:g}")
    assert study.figure_inputs(mini, "hard_fraction") == sorted(
        f"results/curves/{run}/seed{s}.csv" for run in runs for s in mini["seeds"]
    )


def test_a_curve_figure_must_name_line_or_bar_figures(alma_mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("SEKD_DATA_MIRROR", str(alma_mirror))
    extra = tmp_path / "extra.yaml"
    extra.write_text("figures:\n  hard_fraction: {from: [fig2a, nofig]}\n")
    with pytest.raises(ConfigError, match=r"figures\.hard_fraction\.from.*'nofig'"):
        load_config(ROOT / "config" / "config.yaml", MINI, extra)


def _fake_curves(paths: list[str], hard: list[float | None]) -> None:
    for seed, path in enumerate(paths):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        rows = ["step,epoch,loss,learning_rate,hard_fraction,beta"]
        for i, value in enumerate(hard, start=1):
            cell = "" if value is None else f"{value + 0.1 * seed:g}"
            rows.append(f"{2 * i},{0.2 * i:g},{1.0 / i:g},0.001,{cell},")
        Path(path).write_text("\n".join(rows) + "\n")


def test_the_curve_figure_is_drawn_from_curves_csvs(mini, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = study.figure_spec(mini, "hard_fraction")
    for line in spec["lines"]:
        _fake_curves(line["curves"], [0.6, 0.3, 0.0])
    paths = figures.draw(spec, tmp_path / "hard_fraction")
    assert paths["png"].read_bytes()[:8] == PNG
    rows = _read(paths["csv"])
    first = [r for r in rows if r["run"] == spec["lines"][0]["run"]]
    assert [(r["x"], float(r["mean"])) for r in first] == [
        ("2", pytest.approx(0.6)),
        ("4", pytest.approx(0.3)),
        ("6", pytest.approx(0.0)),
    ]
    # a run that logs no hard fraction is named, not drawn as an empty line
    _fake_curves(spec["lines"][0]["curves"], [None, None])
    with pytest.raises(ValueError, match=re.escape(spec["lines"][0]["run"])):
        figures.draw(spec, tmp_path / "again")


def test_table_curves_and_the_report_section(mini, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = study.table_curves_spec(mini, "table1")
    assert [line["run"] for line in spec["lines"]] == [
        r for _, r in study.table_rows(mini, "table1")
    ]
    for line in spec["lines"]:
        sft = line["run"].startswith("sft/")
        _fake_curves(line["curves"], [None, None] if sft else [0.5, 0.4])
    paths = figures.table_curves(spec, tmp_path / "curves" / "table1")
    assert paths["png"].read_bytes()[:8] == PNG
    assert {r["value"] for r in _read(paths["csv"])} == {"loss", "learning_rate", "hard_fraction"}
    hard = figures.draw(
        {**study.figure_spec(mini, "hard_fraction"), "lines": spec["lines"][2:]},
        tmp_path / "figures" / "hard_fraction",
    )
    out = tmp_path / "report.html"
    report.build([], [hard["png"]], mini, out, captions=study.captions(mini), curves=[paths["png"]])
    page = out.read_text()
    section = page[page.index("<h2>Training curves</h2>") :]
    assert "<h3>hard_fraction</h3>" in section and "<h3>table1</h3>" in section
    assert "§5.2.1" in section


def test_a_dry_run_of_the_miniature_plans_the_curve_jobs(alma_mirror, tmp_path):
    cmd = [
        str(SNAKEMAKE), "-n", "--forceall", "-s", str(SNAKEFILE), "-d", str(tmp_path),
        "--configfile", str(MINI),
    ]  # fmt: skip
    env = {**os.environ, "SEKD_DATA_MIRROR": str(alma_mirror)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    config = load_config(ROOT / "config" / "config.yaml", MINI)
    planned = proc.stdout + proc.stderr
    for path in [
        *study.figure_inputs(config, "hard_fraction"),
        *study.table_curves_outputs(config),
        "results/figures/hard_fraction.png",
    ]:
        assert path in planned, path
    assert re.search(r"rule curves:", planned) and re.search(r"rule table_curves:", planned)
