"""The sensitivity study (issue 11): its alternatives (config/paper.yaml `sensitivity`) as KD runs
beside their defaults, checked at plan time, and its aggregation (results/sensitivity.csv, the
figure) from made-up score and curves files; the dry run plans it and the fit jobs."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sekd.errors import ConfigError
from sekd.plan import study
from sekd.plan.config import load_config, validate_config
from sekd.report import sensitivity

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.fixture(scope="module")
def paper_config():
    return load_config(ROOT / "config" / "config.yaml")


@pytest.fixture(scope="module")
def mini_config():
    return load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")


def test_each_alternative_is_its_own_run_beside_its_default(paper_config):
    spec = study.sensitivity_spec(paper_config)
    declared = paper_config["sensitivity"]["alternatives"]
    assert len(spec["rows"]) == len(declared) > 0
    table1_sekd = dict(study.table_rows(paper_config, "table1"))["Self-Evolution KD"]
    for alt, row in zip(declared, spec["rows"], strict=True):
        assert row["run"].endswith(f"-{alt['option']}.{alt['value']}")
        assert row["run"] != row["default_run"]
        assert row["run"].startswith("kd/teacher/")  # Table 1's teacher
        if alt.get("objective") is None and not alt.get("fixed"):
            assert row["default_run"] == table1_sekd
        assert set(row["scores"]) == set(spec["directions"])
        assert row["curves"] == study.curve_files(paper_config, row["run"])
    by_option = {row["option"]: row for row in spec["rows"]}
    assert "beta0.5to0" in by_option["betatokens"]["default_run"]
    assert by_option["pool"]["objective"] == "sekd_topk"
    inputs = study.sensitivity_inputs(paper_config)
    assert all(f in inputs for row in spec["rows"] for f in row["curves"] + row["default_curves"])


def test_an_option_the_config_sets_itself_is_still_compared_with_its_default(paper_config):
    config = validate_config(copy.deepcopy(paper_config))
    config["student_init"]["kd"] = "sft_student"  # every KD run from the SFT'd student
    rows = {row["option"]: row for row in study.sensitivity_spec(config)["rows"]}
    assert rows["init"]["run"].endswith("-init.sft_student")
    assert rows["init"]["default_run"] == "kd/teacher/sekd-lam0.5-beta0.5-gamma0.4"
    # the other alternatives keep the config's start on both sides
    assert rows["difficulty"]["default_run"].endswith("-init.sft_student")


def test_the_miniature_keeps_the_sensitivity_out_of_all(paper_config, mini_config):
    outputs = ["results/sensitivity.csv", "results/figures/sensitivity.png"]
    assert set(outputs) <= set(study.sensitivity_outputs(paper_config))
    assert study.sensitivity_outputs(mini_config) == []
    assert set(outputs) <= set(study.sensitivity_outputs(mini_config, in_all=False))
    none = copy.deepcopy(paper_config)
    none["sensitivity"]["alternatives"] = []
    assert study.sensitivity_outputs(none) == []


@pytest.mark.parametrize(
    ("alternative", "message"),
    [
        ({"option": "colour", "value": "red"}, "'colour' is not a run option"),
        ({"option": "difficulty", "value": "hinge"}, "'hinge' is not one of"),
        ({"option": "difficulty", "value": "kl"}, "does not change the sekd run"),
        ({"option": "betatokens", "value": "all"}, "does not change the sekd run"),
        ({"option": "pool", "value": "optimizer_batch"}, "does not change the sekd run"),
        ({"option": "norm", "value": "optimizer_batch", "fixed": {"delta": 1}}, "not keys of kd"),
        ({"option": "norm", "value": "optimizer_batch", "objective": "nope"}, "nope"),
    ],
)
def test_a_wrong_alternative_is_a_config_error(paper_config, alternative, message):
    config = copy.deepcopy(paper_config)
    config["sensitivity"]["alternatives"] = [alternative]
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def _json(path: Path, **values) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    return str(path)


def _curves(path: Path, fractions: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["step,epoch,loss,learning_rate,hard_fraction,beta"]
    lines += [f"{i + 1},0.1,1.0,0.001,{h}," for i, h in enumerate(fractions)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _made_up(tmp_path: Path) -> dict:
    """Two alternatives of one default, two seeds, two directions."""
    directions = ["en-de", "de-en"]

    def scores(run, values):  # values[direction] = [bleu per seed]
        return {
            d: [_json(tmp_path / run / f"s{s}" / f"{d}.json", bleu=v) for s, v in enumerate(vs)]
            for d, vs in zip(directions, values, strict=True)
        }

    default = scores("default", [[10.0, 12.0], [20.0, 20.0]])  # avg 15.5
    default_curves = [_curves(tmp_path / "default" / f"c{s}.csv", ["0.5", "0.3"]) for s in (0, 1)]
    rows = [
        {
            "option": "difficulty",
            "value": "cross_entropy",
            "label": "CE",
            "objective": "sekd",
            "run": "kd/t/a",
            "default_run": "kd/t/d",
            "scores": scores("a", [[12.0, 14.0], [21.0, 21.0]]),  # avg 17.0
            "default_scores": default,
            "curves": [
                _curves(tmp_path / "a" / "c0.csv", ["0.9", "0.7"]),
                _curves(tmp_path / "a" / "c1.csv", ["0.6", ""]),
            ],
            "default_curves": default_curves,
        },
        {
            "option": "norm",
            "value": "optimizer_batch",
            "label": "norm",
            "objective": "sekd",
            "run": "kd/t/b",
            "default_run": "kd/t/d",
            "scores": scores("b", [[9.0, 9.0], [19.0, 19.0]]),  # avg 14.0
            "default_scores": default,
            "curves": [_curves(tmp_path / "b" / f"c{s}.csv", ["", ""]) for s in (0, 1)],
            "default_curves": default_curves,
        },
    ]
    return {"directions": directions, "rows": rows}


def test_the_table_has_bleu_delta_and_hard_fraction_per_alternative(tmp_path):
    records = sensitivity.table(_made_up(tmp_path))
    a, b = records
    assert (a["bleu_en-de"], a["bleu_de-en"], a["bleu_avg"]) == (13.0, 21.0, 17.0)
    assert (a["delta_en-de"], a["delta_de-en"], a["delta_avg"]) == (2.0, 1.0, 1.5)
    assert a["default_bleu_avg"] == 15.5 and b["delta_avg"] == -1.5
    assert a["hard_fraction"] == pytest.approx((0.8 + 0.6) / 2)  # per seed over steps, then seeds
    assert a["default_hard_fraction"] == pytest.approx(0.4)
    assert b["hard_fraction"] == ""  # not logged
    sensitivity.write_csv(records, tmp_path / "out" / "sensitivity.csv")
    with open(tmp_path / "out" / "sensitivity.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["option"] for r in rows] == ["difficulty", "norm"]
    assert {"bleu_avg", "delta_avg", "hard_fraction", "default_hard_fraction"} <= set(rows[0])
    sensitivity.plot(records, tmp_path / "out" / "sensitivity")
    assert (tmp_path / "out" / "sensitivity.png").stat().st_size > 0
    assert (tmp_path / "out" / "sensitivity.pdf").stat().st_size > 0


def test_a_missing_or_non_finite_score_is_named(tmp_path):
    spec = _made_up(tmp_path)
    spec["rows"][0]["scores"]["en-de"][0] = _json(tmp_path / "nan.json", bleu=float("nan"))
    with pytest.raises(ValueError, match=r"nan\.json"):
        sensitivity.table(spec)
    spec["rows"][0]["curves"][0] = str(tmp_path / "missing.csv")
    spec["rows"][0]["scores"] = spec["rows"][0]["default_scores"]
    with pytest.raises(ValueError, match=r"missing\.csv"):
        sensitivity.table(spec)


def test_the_report_has_a_sensitivity_section(tmp_path, paper_config):
    from sekd.report import html as report

    records = sensitivity.table(_made_up(tmp_path))
    sensitivity.write_csv(records, tmp_path / "sensitivity.csv")
    sensitivity.plot(records, tmp_path / "sensitivity")
    out = tmp_path / "report.html"
    files = [tmp_path / "sensitivity.csv", tmp_path / "sensitivity.png"]
    report.build([], [], paper_config, out, sensitivity=files)
    page = out.read_text()
    assert "Sensitivity to the open choices" in page and "delta_avg" in page and "CE" in page


def _dry_run(target: str, *configfiles: str) -> str:
    extra = ["--configfile", *configfiles] if configfiles else []
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [
            str(SNAKEMAKE), "-n", "--forceall", "-s", str(ROOT / "workflow" / "Snakefile"),
            "-d", workdir, target, *extra,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return output


def test_the_paper_plan_has_the_fit_jobs_and_the_sensitivity(paper_config):
    output = _dry_run("all")
    fit_jobs = {
        f
        for table in study.table_names(paper_config)
        for row in study.table_spec(paper_config, table)
        for f in row["fit"]
    }
    for path in fit_jobs:
        assert f"output: {path}" in output
    assert "rule sensitivity:" in output or "localrule sensitivity:" in output
    for row in study.sensitivity_spec(paper_config)["rows"]:
        assert f"results/models/{row['run']}/seed1" in output
