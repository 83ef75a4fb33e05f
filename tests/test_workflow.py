"""The workflow through Snakemake on the micro config: Table 1 from real runs, and re-planning.

One module-scoped run (a few minutes on 2 cores) feeds every test here.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sekd import data, score

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
CONFIGS = [str(ROOT / "config" / "mini.yaml"), str(ROOT / "tests" / "micro.yaml")]
DIRECTIONS = ["en-de", "de-en", "en-cs", "cs-en"]
SYSTEMS = [
    "Teacher",
    "Student",
    "Forward KD",
    "Reverse KD",
    "NoEvo KD",
    "SKEW KD",
    "Self-Evolution KD",
]

pytestmark = pytest.mark.e2e


def snakemake(workdir: Path, *args: str, extra_configs: tuple[str, ...] = ()) -> str:
    """Run Snakemake on the repository's Snakefile in `workdir`; return its output."""
    cmd = [
        str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(workdir),
        "--cores", "2", *args, "--configfile", *CONFIGS, *extra_configs,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    return output


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}; {} when nothing is to be done."""
    if "Nothing to be done" in output:
        return {}
    block = output.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def read_table(workdir: Path) -> list[dict]:
    with open(workdir / "results" / "table1.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def study(tmp_path_factory, alma_mirror) -> Path:
    os.environ.setdefault("SEKD_DATA_MIRROR", str(alma_mirror))
    workdir = tmp_path_factory.mktemp("study")
    snakemake(workdir, "results/table1.csv")
    return workdir


def test_table1_has_the_papers_shape(study):
    rows = read_table(study)
    assert [r["system"] for r in rows] == SYSTEMS
    assert list(rows[0]) == [
        "system", "run", *[f"bleu_{d}" for d in DIRECTIONS], "bleu_avg", "n_seeds"
    ]  # fmt: skip
    for row in rows:
        values = [float(row[f"bleu_{d}"]) for d in DIRECTIONS]
        assert all(math.isfinite(v) and 0 <= v <= 100 for v in values)
        assert float(row["bleu_avg"]) == pytest.approx(sum(values) / 4, abs=1e-3)
    md = (study / "results" / "table1.md").read_text()
    assert "| Self-Evolution KD |" in md and "En→De" in md


def test_every_score_comes_from_real_hypotheses(study):
    rows = read_table(study)
    for row in rows:
        for d in DIRECTIONS:
            hyp_file = study / "results" / "hyps" / row["run"] / "seed1" / "wmt22" / f"{d}.txt"
            refs = [r["target"] for r in data.read_jsonl(study / f"results/data/wmt22/{d}.jsonl")]
            hyps = score.read_lines(hyp_file)
            assert len(hyps) == len(refs) == 5
            assert any(h.strip() for h in hyps), f"{hyp_file} is empty"
            recomputed = score.bleu(hyps, refs)["bleu"]
            assert float(row[f"bleu_{d}"]) == pytest.approx(recomputed, abs=1e-3)
            saved = json.loads(
                (study / "results/scores" / row["run"] / "seed1/wmt22" / f"{d}.json").read_text()
            )
            assert saved["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_kd_students_start_from_the_student_base_model(study):
    logs = sorted((study / "results" / "logs" / "kd").rglob("*.log"))
    assert len(logs) == 5
    for log in logs:
        text = log.read_text()
        assert "base model results/models/base/student" in text
        assert "teacher results/models/sft/teacher/seed1" in text
        assert "hard_fraction" in text or "forward_kd" in str(log) or "reverse_kd" in str(log)


def test_up_to_date_workflow_plans_nothing(study):
    assert planned_jobs(snakemake(study, "-n", "results/table1.csv")) == {}


def test_changing_the_beam_plans_no_training(study, tmp_path):
    beam = tmp_path / "beam.yaml"
    beam.write_text("decoding: {num_beams: 2}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table1.csv", extra_configs=(str(beam),)))
    assert jobs == {"decode": 28, "bleu": 28, "table1": 1}


def test_changing_gamma_reruns_only_self_evolution_kd(study, tmp_path):
    gamma = tmp_path / "gamma.yaml"
    gamma.write_text("kd: {gamma: 0.3}\n")
    jobs = planned_jobs(snakemake(study, "-n", "results/table1.csv", extra_configs=(str(gamma),)))
    assert jobs == {"kd": 1, "decode": 4, "bleu": 4, "table1": 1}


def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: {learning_rate: fast}\n")
    cmd = [
        str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "w"), "-n",
        "--configfile", *CONFIGS, str(bad),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config key 'training.learning_rate'" in proc.stdout + proc.stderr
