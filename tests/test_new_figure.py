"""A figure the paper does not have, declared only here (a test config passed as an extra
--configfile): the generic rule family plans it with the right KD runs, and the generic figure
code draws it from score files. Nothing outside this file is edited to add it."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sekd.plan import study
from sekd.plan.config import load_config
from sekd.report import figures

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MINI = ROOT / "config" / "mini.yaml"
NAME = "fig_forward_lam"

# λ of Forward KD (eq. 3: the SFT/KL mix) on the validation set, Self-Evolution KD as reference.
DECLARATION = f"""
figures:
  {NAME}:
    title: "Forward KD: effect of λ (validation)"
    kind: line
    xlabel: λ
    evalset: valid
    sweep: {{param: lam}}
    lam: [0.2, 0.8]
    series: [{{objective: forward_kd}}]
    references: [{{objective: sekd}}]
    caption: "Not in the paper: Forward KD's SFT/KL mix λ against Self-Evolution KD."
"""
RUNS = {
    "kd/teacher/forward_kd-lam0.2",
    "kd/teacher/forward_kd-lam0.8",
    "kd/teacher/sekd-lam0.5-beta0.5-gamma0.4",
}
VALID = ["en-de", "cs-en"]  # data.valid_directions


@pytest.fixture
def declaration(tmp_path, alma_mirror, monkeypatch) -> Path:
    monkeypatch.setenv("SEKD_DATA_MIRROR", str(alma_mirror))
    path = tmp_path / "new_figure.yaml"
    path.write_text(DECLARATION, encoding="utf-8")
    return path


def _planned(output: str) -> list[tuple[str, str]]:
    """(rule, output path) of every job of a dry run."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        outputs = re.search(r"^\s+output: (.*)$", block, re.M)
        if head and outputs:
            jobs += [(head[1], path) for path in outputs[1].split(", ")]
    return jobs


def test_the_declared_figure_is_planned_with_its_kd_runs(declaration, tmp_path):
    workdir = tmp_path / "work"
    cmd = [
        str(SNAKEMAKE), "-n", "--forceall", "-s", str(SNAKEFILE), "-d", str(workdir),
        f"results/figures/{NAME}.png", "--configfile", str(MINI), str(declaration),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    jobs = _planned(proc.stdout + proc.stderr)
    outputs = {rule: {path for r, path in jobs if r == rule} for rule, _ in jobs}
    assert outputs["figure"] == {f"results/figures/{NAME}.{ext}" for ext in ("png", "pdf", "csv")}
    assert outputs["kd"] == {f"results/models/{run}/seed1" for run in RUNS}
    assert outputs["bleu"] == {
        f"results/scores/{run}/seed1/valid/{d}.json" for run in RUNS for d in VALID
    }


def test_the_generic_figure_code_draws_it(declaration, tmp_path, monkeypatch):
    config = load_config(ROOT / "config" / "config.yaml", MINI, declaration)
    assert NAME in study.figure_names(config)
    assert f"results/figures/{NAME}.png" in study.figure_outputs(config)
    spec = study.figure_spec(config, NAME)
    assert (spec["kind"], spec["title"], spec["xlabel"]) == (
        "line",
        "Forward KD: effect of λ (validation)",
        "λ",
    )
    assert {p["run"] for p in spec["points"]} == RUNS
    # fake score files where the rules would write them: BLEU = 20 + 10 λ (+1 on cs-en)
    monkeypatch.chdir(tmp_path)
    for point in spec["points"]:
        lam = point["x"] if point["x"] is not None else 0.5
        for d, paths in point["scores"].items():
            for path in paths:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                bleu = 20 + 10 * lam + (d == "cs-en") + (5 if point["reference"] else 0)
                Path(path).write_text(json.dumps({"bleu": bleu}))
    paths = figures.draw(spec, tmp_path / NAME)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(paths["csv"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(r["series"], r["x"], r["reference"]) for r in rows] == [
        ("Forward KD", "0.2", "False"),
        ("Forward KD", "0.8", "False"),
        ("Self-Evolution KD", "", "True"),
    ]
    assert [float(r["mean"]) for r in rows] == pytest.approx([22.5, 28.5, 30.5])
    assert study.captions(config)[NAME].startswith("Not in the paper")
