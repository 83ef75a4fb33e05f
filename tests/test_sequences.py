"""Where training sequences come from, as declared (parse time): run names, generation settings,
the teacher outputs a run reads, and which runs a teacher store can serve."""

from __future__ import annotations

import pytest
from test_variants import KD

from sekd.plan.objectives import OBJECTIVES, Objective, declared
from sekd.plan.run_names import serves
from sekd.plan.sequences import generation_job, generation_name, teacher_outputs_dir
from sekd.plan.variants import make_variant


def test_generation_settings_are_in_the_run_names_of_the_runs_that_read_them():
    assert make_variant("seq_kd", KD).name == "seq_kd-beam5"
    assert make_variant("seq_inter", {**KD, "num_beams": 4}).name == "seq_inter-beam4"
    assert (
        make_variant("fd_kl", {**KD, "teacher_top_p": 0.9}).name == "fd_kl-ttemp1-ttopk0-ttopp0.9"
    )
    gkd = make_variant("gkd", {**KD, "onpolicy_fraction": 0.25}).name
    assert gkd == "gkd-jsd0.5-onp0.25-stemp1-stopk0-stopp1"
    # a generation setting changes no run that does not read it
    assert make_variant("sekd", {**KD, "num_beams": 3}) == make_variant("sekd", KD)
    assert make_variant("fd_rkl", {**KD, "teacher_temperature": 2}) == make_variant("fd_rkl", KD)


def test_whole_number_settings_reject_fractions():
    with pytest.raises(ValueError, match="num_beams must be a whole number"):
        make_variant("seq_kd", {**KD, "num_beams": 2.5})
    with pytest.raises(ValueError, match="teacher_top_k must be a whole number"):
        make_variant("fd_kl", {**KD, "teacher_top_k": 2.5})


def test_each_hyper_parameter_reaches_only_its_reader():
    fd_js = make_variant("fd_js", {**KD, "teacher_temperature": 0.7, "student_top_k": 50})
    assert fd_js.loss_kwargs() == {}
    assert fd_js.teacher_generation == {
        "teacher_temperature": 0.7,
        "teacher_top_k": 50 - 50,
        "teacher_top_p": 1.0,
    }
    assert fd_js.student_sampling == {
        "student_temperature": 1.0,
        "student_top_k": 50,
        "student_top_p": 1.0,
    }
    assert isinstance(fd_js.student_sampling["student_top_k"], int)
    gkd = make_variant("gkd", KD)
    assert gkd.loss_kwargs() == {"jsd_beta": 0.5}
    assert gkd.onpolicy_fraction == 0.5
    assert make_variant("fd_rkl", KD).onpolicy_fraction == 1.0
    assert make_variant("fd_kl", KD).onpolicy_fraction == 0.0


@pytest.mark.parametrize(
    "setting, name",
    [
        ({"num_beams": 5}, "beam5"),
        ({"teacher_temperature": 1.0, "teacher_top_k": 0, "teacher_top_p": 1.0}, "sample-t1-k0-p1"),
        (
            {"teacher_temperature": 0.7, "teacher_top_k": 50, "teacher_top_p": 0.9},
            "sample-t0.7-k50-p0.9",
        ),
    ],
)
def test_generation_names_and_the_jobs_values(setting, name):
    assert generation_name(setting) == name
    job = generation_job(setting)  # the values travel as values (study.planned_generation)
    assert {k.removeprefix("teacher_"): v for k, v in setting.items()} == job


def test_the_plan_gives_a_generation_its_values():
    from pathlib import Path

    from sekd.plan import study
    from sekd.plan.config import load_config

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "config" / "config.yaml", root / "config" / "mini.yaml")
    config["kd"]["teacher_top_p"] = 0.9
    run = study.kd_run(config, "fd_kl")
    assert run.endswith("fd_kl-ttemp1-ttopk0-ttopp0.9")
    job = study.planned_generation(config, "sample-t1-k0-p0.9")
    assert job == {"temperature": 1.0, "top_k": 0, "top_p": 0.9}
    assert type(job["top_k"]) is int
    beams = study.planned_generation(config, f"beam{config['kd']['num_beams']}")
    assert beams == {"num_beams": config["kd"]["num_beams"]}
    with pytest.raises(ValueError, match="no KD run of this config's plan"):
        study.planned_generation(config, "beam77")


def test_runs_that_share_a_generation_setting_share_the_teacher_outputs():
    seq_kd, seq_inter = make_variant("seq_kd", KD), make_variant("seq_inter", KD)
    assert (
        teacher_outputs_dir("teacher", seq_kd, 1) == "results/teacher_outputs/teacher/beam5/seed1"
    )
    assert teacher_outputs_dir("teacher", seq_inter, 1) == teacher_outputs_dir("teacher", seq_kd, 1)
    fd = {
        o: teacher_outputs_dir("teacher", make_variant(o, KD), 1)
        for o in ("fd_kl", "fd_js", "fd_tvd")
    }
    assert set(fd.values()) == {"results/teacher_outputs/teacher/sample-t1-k0-p1/seed1"}
    assert teacher_outputs_dir("teacher", make_variant("fd_rkl", KD), 1) is None
    assert teacher_outputs_dir("teacher", make_variant("sekd", KD), 1) is None


def test_a_teacher_store_serves_only_gold_sequences_read_through_logits():
    assert serves("sekd", "sparse") and serves("forward_kd", "full")
    for objective in ("seq_kd", "fd_kl", "fd_rkl", "fd_js", "gkd"):
        assert not serves(objective, "full")
        assert serves(objective, "online")
    assert serves("word_kd", "sparse")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"sequences": "teacher"}, "needs either"),
        ({"sequences": "student", "hparams": ("student_temperature",)}, "needs all of"),
        ({"hparams": ("num_beams",)}, "without teacher sequences"),
        (
            {
                "sequences": "gold+student",
                "hparams": ("student_temperature", "student_top_k", "student_top_p"),
            },
            "onpolicy_fraction",
        ),
        ({"pick": "bleu"}, "pick 'bleu'"),
        ({"teacher_logits": False}, "learns nothing"),
        ({"sequences": "beams"}, "not one of"),
    ],
)
def test_inconsistent_sequence_declarations_are_refused(fields, message):
    base = {"name": "bad_kd", "label": "Bad", "hparams": (), "needs_teacher": True}
    with pytest.raises(ValueError, match=message):
        Objective(**{**base, **fields})


def test_a_declared_sequence_objective_is_seen_by_the_sequence_helpers():
    new = Objective(
        "beam_kd", "Beam KD", ("num_beams",), True, sequences="teacher", teacher_logits=False
    )
    with declared(new):
        variant = make_variant("beam_kd", {**KD, "num_beams": 3})
        assert variant.name == "beam_kd-beam3"
        assert teacher_outputs_dir("t", variant, 2) == "results/teacher_outputs/t/beam3/seed2"
        assert not serves("beam_kd", "full")
    assert "beam_kd" not in OBJECTIVES
