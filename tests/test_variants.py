"""Run names: only the hyper-parameters an objective reads, and a lossless round trip."""

from __future__ import annotations

import re

import pytest

from sekd.objectives import OBJECTIVES
from sekd.variants import NAME_PATTERN, format_number, make_variant, parse_variant

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
def test_round_trip_and_pattern(objective):
    variant = make_variant(objective, KD)
    assert parse_variant(variant.name) == variant
    assert re.fullmatch(NAME_PATTERN, variant.name)
    assert set(variant.hparams) == set(OBJECTIVES[objective].hparams)


def test_names_hold_only_what_the_objective_reads():
    assert make_variant("forward_kd", KD).name == "forward_kd-lam0.5"
    assert make_variant("sekd", KD).name == "sekd-lam0.5-beta0.5-gamma0.4"
    assert make_variant("sekd_topk", KD).name == "sekd_topk-lam0.5-beta0.5-k20"
    # changing Γ changes the name of sekd runs only
    assert make_variant("skew_kd", {**KD, "gamma": 0.9}).name == make_variant("skew_kd", KD).name


def test_tags_come_from_the_hyper_parameter_declarations():
    from sekd.objectives import HPARAMS, hparam_tags

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
    assert parse_variant(variant.name) == variant


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
def test_bad_names_are_rejected(name):
    with pytest.raises(ValueError, match="run name"):
        parse_variant(name)


def test_missing_hyper_parameter():
    with pytest.raises(ValueError, match=r"kd\.gamma"):
        make_variant("sekd", {"lam": 0.5, "beta": 0.5})


def test_run_options_appear_only_when_not_default_and_only_where_they_apply():
    options = {"difficulty": "cross_entropy", "pool": "optimizer_batch", "norm": "micro_batch"}
    topk = make_variant("sekd_topk", KD, options)
    assert topk.name == "sekd_topk-lam0.5-beta0.5-k20-difficulty.cross_entropy-pool.optimizer_batch"
    assert parse_variant(topk.name) == topk
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
        ("sekd-lam0.5-beta0.5-gamma0.4-norm.sideways", "kd.normalisation"),
        ("sekd-lam0.5-beta0.5-gamma0.4-colour.red", "unknown run option"),
        ("sekd-lam0.5-beta0.5-gamma0.4-init.base", "not canonical"),  # a default is not written
        ("forward_kd-lam0.5-pool.optimizer_batch", "not canonical"),  # not read by forward_kd
    ],
)
def test_bad_run_options_are_refused(name, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(name)


def test_run_options_come_from_their_config_keys():
    from sekd import study
    from sekd.config import load_config, validate_config

    config = validate_config(load_config("config/config.yaml"))
    assert study.kd_run(config, "sekd") == "kd/teacher/sekd-lam0.5-beta0.5-gamma0.4"
    config["kd"]["difficulty"] = "cross_entropy"
    config["student_init"] = {"kd": "sft_student", "fdistill": "word_kd_student"}
    assert study.kd_run(config, "sekd").endswith("-difficulty.cross_entropy-init.sft_student")
    assert study.kd_run(config, "fd_rkl").endswith("-init.word_kd_student")
    assert study.kd_run(config, "sekd", options={"init": "base"}).endswith("cross_entropy")
