"""Run names: only the hyper-parameters an objective reads, one name per variant (an identifier,
never read back for a value: the plan hands a job its values, sekd.plan.study.planned_variant)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sekd.plan import study
from sekd.plan.config import load_config
from sekd.plan.objectives import OBJECTIVES
from sekd.plan.variants import NAME_PATTERN, Variant, format_number, make_variant

KD = {
    "lam": 0.5,
    "beta": 0.5,
    "gamma": 0.4,
    "top_k_percent": 20,
    "jsd_beta": 0.5,
    "onpolicy_fraction": 0.5,
    "num_beams": 5,
    "teacher_temperature": 1.0,
    "teacher_top_k": 0,
    "teacher_top_p": 1.0,
    "student_temperature": 1.0,
    "student_top_k": 0,
    "student_top_p": 1.0,
}


@pytest.mark.parametrize("objective", [o for o in OBJECTIVES if o != "sft"])
def test_names_identify_values_and_values_travel_as_values(objective):
    variant = make_variant(objective, KD)
    # the values travel as values (rule kd's `run` param, job.json), not through the name
    assert Variant.from_values(variant.values()) == variant
    assert re.fullmatch(NAME_PATTERN, variant.name)
    assert set(variant.hparams) == set(OBJECTIVES[objective].hparams)
    # one name per variant: every value the objective reads changes the name
    for key in OBJECTIVES[objective].hparams:
        other = make_variant(objective, {**KD, key: KD[key] + 1})
        assert other.name != variant.name, key


def test_names_hold_only_what_the_objective_reads():
    assert make_variant("forward_kd", KD).name == "forward_kd-lam0.5"
    assert make_variant("sekd", KD).name == "sekd-lam0.5-beta0.5-gamma0.4"
    assert make_variant("sekd_topk", KD).name == "sekd_topk-lam0.5-beta0.5-k20"
    # changing Γ changes the name of sekd runs only
    assert make_variant("skew_kd", {**KD, "gamma": 0.9}).name == make_variant("skew_kd", KD).name


def test_tags_come_from_the_hyper_parameter_declarations():
    from sekd.plan.objectives import HPARAMS, hparam_tags

    tags = hparam_tags()
    assert tags == {
        "lam": "lam",
        "beta": "beta",
        "gamma": "gamma",
        "top_k_percent": "k",
        "jsd_beta": "jsd",
        "onpolicy_fraction": "onp",
        "num_beams": "beam",
        "teacher_temperature": "ttemp",
        "teacher_top_k": "ttopk",
        "teacher_top_p": "ttopp",
        "student_temperature": "stemp",
        "student_top_k": "stopk",
        "student_top_p": "stopp",
    }
    assert len(set(tags.values())) == len(HPARAMS)
    for name in OBJECTIVES:
        for key in OBJECTIVES[name].hparams:
            assert key in HPARAMS


def test_progressive_beta():
    variant = make_variant("sekd", {**KD, "beta": [0.5, 0.0]})
    assert variant.name == "sekd-lam0.5-beta0.5to0-gamma0.4"
    assert variant.beta_schedule == (0.5, 0.0)
    assert variant.loss_kwargs()["beta"] == 0.5
    assert Variant.from_values(variant.values()) == variant
    assert variant.name != make_variant("sekd", {**KD, "beta": [0.5, 0.1]}).name


def test_number_format():
    assert [format_number(x) for x in (0.5, 1.0, 20, 0.125, 1e-5)] == [
        "0.5", "1", "20", "0.125", "0.00001"
    ]  # fmt: skip
    with pytest.raises(ValueError):
        format_number(-1)


@pytest.mark.parametrize(
    "name",
    [
        "magic-lam0.5",
        "sekd-lam0.5",
        "sekd-lam0.50-beta0.5-gamma0.4",
        "forward_kd-x1",
        "sekd-beta0.5",
    ],
)
def test_names_the_plan_does_not_make_are_rejected(name):
    with pytest.raises(ValueError, match="not a run of this config's plan"):
        study.planned_variant(_mini(), name)


def _mini() -> dict:
    root = Path(__file__).resolve().parents[1]
    return load_config(root / "config" / "config.yaml", root / "config" / "mini.yaml")


def test_the_plan_hands_each_run_its_values():
    """Every KD run of the plan is found by its name, with the values the plan computed it from:
    the config's Γ (a float that a text round trip once rounded) reaches the job as itself."""
    config = _mini()
    config["kd"]["gamma"] = 1e-7
    run = study.kd_run(config, "sekd")
    variant = study.planned_variant(config, run.rsplit("/", 1)[1])
    assert variant.hparams["gamma"] == 1e-7 and variant.loss_kwargs()["gamma"] == 1e-7


def test_missing_hyper_parameter():
    with pytest.raises(ValueError, match=r"kd\.gamma"):
        make_variant("sekd", {"lam": 0.5, "beta": 0.5})


def test_run_options_appear_only_when_not_default_and_only_where_they_apply():
    options = {"difficulty": "cross_entropy", "pool": "optimizer_batch", "norm": "micro_batch"}
    topk = make_variant("sekd_topk", KD, options)
    assert topk.name == "sekd_topk-lam0.5-beta0.5-k20-difficulty.cross_entropy-pool.optimizer_batch"
    assert Variant.from_values(topk.values()) == topk
    assert topk.option("norm") == "micro_batch" and topk.option("init") == "base"
    # forward_kd reads neither difficulty nor pool: its name and run do not change
    assert make_variant("forward_kd", KD, options) == make_variant("forward_kd", KD)
    # betatokens concerns scheduled runs only
    assert make_variant("sekd", KD, {"betatokens": "all"}).name == "sekd-lam0.5-beta0.5-gamma0.4"
    scheduled = make_variant("sekd", {**KD, "beta": (0.5, 0.0)}, {"betatokens": "all"})
    assert scheduled.name == "sekd-lam0.5-beta0.5to0-gamma0.4-betatokens.all"
    assert re.fullmatch(NAME_PATTERN, scheduled.name)


@pytest.mark.parametrize(
    "name, message",
    [
        ({"norm": "sideways"}, "kd.normalisation"),
        ({"colour": "red"}, "unknown run option"),
    ],
)
def test_bad_run_options_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        make_variant("sekd", KD, name)


@pytest.mark.parametrize(
    "name",
    [
        "sekd-lam0.5-beta0.5-gamma0.4-init.base",  # a default is not written
        "forward_kd-lam0.5-pool.optimizer_batch",  # not read by forward_kd
    ],
)
def test_non_canonical_run_names_are_not_runs_of_the_plan(name):
    with pytest.raises(ValueError, match="not a run of this config's plan"):
        study.planned_variant(_mini(), name)


def test_run_options_come_from_their_config_keys():
    from sekd.plan import study
    from sekd.plan.config import load_config, validate_config

    config = validate_config(load_config("config/config.yaml"))
    assert study.kd_run(config, "sekd") == "kd/teacher/sekd-lam0.5-beta0.5-gamma0.4"
    config["kd"]["difficulty"] = "cross_entropy"
    config["student_init"] = {"kd": "sft_student", "fdistill": "word_kd_student"}
    assert study.kd_run(config, "sekd").endswith("-difficulty.cross_entropy-init.sft_student")
    assert study.kd_run(config, "fd_rkl").endswith("-init.word_kd_student")
    assert study.kd_run(config, "sekd", options={"init": "base"}).endswith("cross_entropy")
