"""Adding a hyper-parameter is one declaration (`sekd.plan.objectives.HParam`), here in this file
alone, with an objective that reads it (its declaration and one function taking only its own
hyper-parameters): the new key validates in the config's `kd` section (the schema's entry and its
default come from the declaration), names runs, is swept by a figure (its axis symbol and the
figure's key of values come from the declaration), reaches the loss as a checked keyword and
trains a tiny model. Nothing else in the workflow is edited."""

from __future__ import annotations

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
from sekd.plan.objectives import HPARAMS, OBJECTIVES, HParam, Objective, declared
from sekd.plan.variants import make_variant
from sekd.train import job as train
from sekd.train import trainer
from sekd.train.chunked import Hyper
from sekd.train.losses import distill_loss, register_objective

ROOT = Path(__file__).resolve().parents[1]

# --- the new hyper-parameter, an objective reading it and its function ---------------------------

TAU = HParam(
    "kd_tau",
    "tau",
    "τ, the temperature of the teacher's distribution p^(1/τ) in tempered KD.",
    1.0,
    exclusive_minimum=True,
    symbol="τ",
)


def tempered_kd_loss(log_q, log_p, labels, *, lam, kd_tau):
    """Per token [n]: (1-λ)·(-log q[y]) + λ·KL(p_τ||q), p_τ = softmax(log p / τ) (eq. 3 with a
    tempered teacher)."""
    nll = -log_q.gather(-1, labels[:, None]).squeeze(-1)
    log_t = (log_p / kd_tau).log_softmax(-1)
    t = log_t.exp()
    kl = torch.where(t > 0, t * (log_t - log_q), 0.0).sum(-1)
    return (1 - lam) * nll + lam * kl, None, None


# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tempered():
    """The hyper-parameter and the objective, declared for this module's tests, then removed."""
    with declared(TAU):
        objective = Objective("tempered_kd", "Tempered KD", ("lam", "kd_tau"), True)
        with declared(objective):
            register_objective(objective.name)(tempered_kd_loss)
            yield objective
    assert "kd_tau" not in HPARAMS and "tempered_kd" not in OBJECTIVES


def _config(kd: dict | None = None, figure: dict | None = None) -> dict:
    paper = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    mini = yaml.safe_load((ROOT / "config" / "mini.yaml").read_text())
    config = deep_merge(deep_merge(paper, study.load_paper()), mini)
    config["kd"] = {**config.get("kd", {}), **(kd or {})}
    if figure:
        config["figures"] = {**config["figures"], "tau": figure}
    return config


FIGURE = {
    "title": "Tempered KD: effect of τ",
    "kind": "line",
    "xlabel": "τ",
    "evalset": "valid",
    "sweep": {"param": "kd_tau"},
    "kd_tau": [0.5, 2],
    "series": [{"objective": "tempered_kd"}],
}


def test_it_is_unknown_to_the_config_without_its_declaration():
    """(Before the module's declaration: the key is the declaration's, nothing else's.)"""
    with pytest.raises(ConfigError, match=r"kd\.kd_tau"):
        validate_config(_config({"kd_tau": 2.0}), environ={})


def test_it_validates_with_its_declared_default_and_range(tempered):
    environ: dict = {}
    entry = load_schema()["properties"]["kd"]["properties"]["kd_tau"]
    assert entry["default"] == 1.0 and entry["exclusiveMinimum"] == 0
    assert "Read by: tempered_kd." in entry["description"]
    assert validate_config(_config(), environ=environ)["kd"]["kd_tau"] == 1.0
    assert validate_config(_config({"kd_tau": 2.5}), environ=environ)["kd"]["kd_tau"] == 2.5
    with pytest.raises(ConfigError, match=r"kd\.kd_tau"):
        validate_config(_config({"kd_tau": 0}), environ=environ)


def test_it_names_runs(tempered):
    variant = make_variant("tempered_kd", {"lam": 0.5, "kd_tau": 2.0, "gamma": 0.4})
    assert variant.name == "tempered_kd-lam0.5-tau2"
    assert variant.loss_kwargs() == {"lam": 0.5, "kd_tau": 2.0}
    assert make_variant("tempered_kd", {"lam": 0.5, "kd_tau": 0.5}).name != variant.name


def test_a_figure_sweeps_it(tempered):
    config = validate_config(_config(figure=FIGURE), environ={})
    spec = study.figure_spec(config, "tau")
    runs = [p["run"] for p in spec["points"]]
    assert [r.rsplit("/", 1)[1] for r in runs] == [
        "tempered_kd-lam0.5-tau0.5",
        "tempered_kd-lam0.5-tau2",
    ]
    assert [p["x"] for p in spec["points"]] == [0.5, 2]
    # the curve figures' legends name it by its declared symbol
    assert [label for label, _ in study._swept_runs(config, "tau")] == [
        "Tempered KD, τ = 0.5",
        "Tempered KD, τ = 2",
    ]
    # and the KD jobs of those points get their values from the plan
    assert study.planned_variant(config, runs[1].rsplit("/", 1)[1]).hparams["kd_tau"] == 2.0


def test_the_loss_checks_it_and_hands_it_to_its_objective_only(tempered):
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 11), torch.randn(2, 3, 11)
    labels = torch.randint(0, 11, (2, 3))
    at_one = distill_loss(s, t, labels, "tempered_kd", chunk_size=None)  # its default, τ = 1
    forward = distill_loss(s, t, labels, "forward_kd", chunk_size=None)
    torch.testing.assert_close(at_one.loss, forward.loss)
    hotter = distill_loss(s, t, labels, "tempered_kd", kd_tau=2.0)
    assert not torch.allclose(hotter.loss, forward.loss)
    with pytest.raises(ValueError, match=r"kd_tau must be in \[0, inf\)"):
        distill_loss(s, t, labels, "tempered_kd", kd_tau=-1.0)
    # forward_kd's function does not take it; the kernels read it as a Hyper attribute
    assert (
        distill_loss(s, t, labels, "forward_kd", kd_tau=2.0, chunk_size=None).loss == forward.loss
    )
    assert Hyper({"lam": 0.5, "kd_tau": 2.0}, 1.0, False, "kl", False).kd_tau == 2.0


def test_it_trains_a_tiny_model(tempered, tiny_records, tiny_model_dir, tmp_path, monkeypatch):
    data.write_jsonl(tiny_records, tmp_path / "train.jsonl")
    variant = make_variant("tempered_kd", {"lam": 0.5, "kd_tau": 2.0})
    seen = []
    loss = trainer.distill_loss

    def spy(*args, **kwargs):
        seen.append(kwargs["kd_tau"])
        return loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "distill_loss", spy)
    job = tiny_job(
        tmp_path / "kd",
        tiny_model_dir,
        tmp_path / "train.jsonl",
        variant=variant,
        teacher=tiny_model_dir,
        training={"epochs": 1},
    )
    summary = train.run(job)
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    assert losses and all(math.isfinite(v) for v in losses)
    assert summary["objective"] == "tempered_kd" and seen and set(seen) == {2.0}
