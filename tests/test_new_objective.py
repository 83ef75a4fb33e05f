"""Adding an objective is one declaration and one reference loss function, here in this file
alone: the new objective validates in a config, gets a run name, trains a tiny model and
appears as a row in a table. Nothing else in the workflow is edited."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_job

from sekd.data import alma as data
from sekd.errors import ConfigError
from sekd.plan import study
from sekd.plan.config import deep_merge, load_schema, validate_config
from sekd.plan.objectives import OBJECTIVES, Objective, declared
from sekd.plan.variants import Variant, make_variant
from sekd.report import tables
from sekd.train import job as train
from sekd.train.losses import register_objective

ROOT = Path(__file__).resolve().parents[1]

# --- the new objective: its declaration and its one function ------------------------------------

HALF_KD = Objective(
    name="half_kd",
    label="Half Forward KD",
    hparams=("lam",),
    needs_teacher=True,
    doc="(1-λ)·SFT + λ/2·KL(p||q): forward KD (eq. 3) with half the teacher term",
)


def half_kd_loss(log_q, log_p, labels, *, lam):
    """Per token [n]: (1-λ)·(-log q[y]) + λ/2·KL(p||q), from log q, log p [n, V], labels [n]."""
    nll = -log_q.gather(-1, labels[:, None]).squeeze(-1)
    p = log_p.exp()
    kl = torch.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)
    return (1 - lam) * nll + lam / 2 * kl, None, None


# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def half_kd():
    """The objective, declared and registered for this module's tests, then removed."""
    with declared(HALF_KD):
        register_objective(HALF_KD.name)(half_kd_loss)
        yield HALF_KD
    assert HALF_KD.name not in OBJECTIVES


def _mini_config_with(objective: str) -> dict:
    paper = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    mini = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    config = deep_merge(deep_merge(paper, study.load_paper()), mini)
    config["tables"]["table1"]["objectives"] = [
        *config["tables"]["table1"]["objectives"],
        objective,
    ]
    return config


def test_an_undeclared_objective_is_refused_by_the_config():
    with pytest.raises(ConfigError, match=r"'tables\.table1\.objectives\.\d+'"):
        validate_config(_mini_config_with("half_kd"), environ={})


def test_it_validates_in_a_config(half_kd):
    config = validate_config(_mini_config_with(half_kd.name), environ={})
    assert config["tables"]["table1"]["objectives"][-1] == half_kd.name
    assert half_kd.name in load_schema()["$defs"]["objective"]["enum"]


def test_it_gets_a_run_name(half_kd):
    variant = make_variant(half_kd.name, {"lam": 0.5, "beta": 0.5, "gamma": 0.4})
    assert variant.name == "half_kd-lam0.5"
    assert Variant.from_values(variant.values()) == variant
    assert variant.label == half_kd.label


def test_it_trains_a_tiny_model(half_kd, tiny_records, tiny_model_dir, tmp_path):
    data.write_jsonl(tiny_records, tmp_path / "train.jsonl")
    variant = make_variant(half_kd.name, {"lam": 0.5})
    out = tmp_path / "kd"
    summary = train.run(
        tiny_job(
            out,
            tiny_model_dir,
            tmp_path / "train.jsonl",
            variant=variant,
            teacher=tiny_model_dir,
            training={"epochs": 1},
        )
    )
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    assert losses and all(math.isfinite(v) for v in losses)
    assert summary["objective"] == half_kd.name
    assert (out / "model.safetensors").is_file()


def test_it_appears_in_a_table(half_kd, tmp_path, monkeypatch):
    """Table 1's declared rows (sekd.plan.study, as the rule `table` gets them) read the new row's
    score files like any other."""
    config = validate_config(_mini_config_with(half_kd.name), environ={})
    monkeypatch.chdir(tmp_path)
    rows = study.table_spec(config, "table1")
    for i, row in enumerate(rows):
        for files in row["scores"].values():
            for path in files:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(json.dumps({"bleu": 10.0 + i, "chrf": 40.0 + i}))
        for path in row["fit"]:  # its validation NLL and KL to the teacher (rule fit)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fit = {"nll": 2.0 + i, "kl": 0.1 * i, "examples": 80, "dropped": 0, "truncated": 0}
            Path(path).write_text(json.dumps(fit))
    directions = config["data"]["test_directions"]
    table = tables.results_table(copy.deepcopy(rows), directions)
    (record,) = [r for r in table if r["system"] == half_kd.label]
    assert record["run"].endswith("/half_kd-lam0.5")
    assert record["bleu_avg"] == 10.0 + len(rows) - 1
    assert record["valid_nll"] == 2.0 + len(rows) - 1
    assert half_kd.label in tables.to_markdown(table, directions, "Table 1")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "half-kd"}, "lower-case letters"),
        ({"name": "HalfKD"}, "lower-case letters"),
        ({"label": ""}, "label"),
        ({"hparams": ("lam", "temperature")}, "unknown hyper-parameters"),
        ({"hparams": ["lam"]}, "tuple"),
        ({"hparams": ("lam", "lam")}, "repeated"),
        ({"sequences": "student"}, "sequences"),
        ({"needs_teacher": False, "needs_full_teacher": True}, "without a teacher"),
    ],
)
def test_a_bad_declaration_is_a_clear_error(fields, message):
    declaration = {
        "name": "half_kd",
        "label": "Half Forward KD",
        "hparams": ("lam",),
        "needs_teacher": True,
    }
    with pytest.raises(ValueError, match=message):
        Objective(**{**declaration, **fields})


def test_names_are_declared_once(half_kd):
    from sekd.plan.objectives import declare, undeclare

    with pytest.raises(ValueError, match="already declared"):
        declare(half_kd)
    with pytest.raises(ValueError, match="already registered"):
        register_objective(half_kd.name)(half_kd_loss)
    with pytest.raises(ValueError, match="unknown objective"):
        undeclare("_never_declared")
