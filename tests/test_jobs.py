"""The params of each job (sekd.plan.jobs.Jobs): the slice of the config a job reads, the open
choices only when not their schema default, and the plan's values of what a path names (a
teacher store, a KD run), matched against the plan and never parsed from the name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sekd.plan import schema, study
from sekd.plan.config import load_config, validate_config
from sekd.plan.jobs import Jobs

ROOT = Path(__file__).resolve().parents[1]


class _PlanError(Exception):
    """Stands in for Snakemake's WorkflowError."""


def _jobs(**sections) -> Jobs:
    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "paper.yaml")
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values}
    return Jobs(validate_config(config, environ={}), error=_PlanError)


def test_open_choices_enter_params_only_when_not_their_schema_default():
    jobs = _jobs()
    assert schema.default("training.truncation") == jobs.config["training"]["truncation"]
    assert jobs.formatting() == {}
    assert "truncation" not in jobs.training_slice("student")["training"]
    assert "sft_selection" not in jobs.sft("student")["training"]
    other = _jobs(training={"truncation": "keep_eos"}, prompt={"response_newline": False})
    assert other.formatting() == {"response_newline": False, "truncation": "keep_eos"}
    assert other.training_slice("student")["prompt"] == {"response_newline": False}
    assert other.decoding()["response_newline"] is False


def test_a_store_is_the_plans_store_of_that_name():
    jobs = _jobs(teacher_store={"mode": "sparse", "samples": 32, "temperature": 2.0})
    assert jobs.source("sparse32t2") == {"mode": "sparse", "samples": 32, "temperature": 2.0}
    store = jobs.store("teacher", "sparse32t2")
    assert (store["samples"], store["seed"]) == (32, jobs.config["teacher_store"]["seed"])
    # a well-formed name the plan does not have is refused, not parsed
    with pytest.raises(_PlanError, match=r"'sparse64' is not in this config's plan.*sparse32t2"):
        jobs.source("sparse64")
    full = _jobs(teacher_store={"mode": "full"})
    assert full.source("full") == {"mode": "full", "samples": None, "temperature": None}
    # the fidelity report's sparse store is in the plan beside the full one
    assert full.source("sparse64")["samples"] == 64


def test_a_kd_jobs_teacher_start_and_values_come_from_the_plan():
    jobs = _jobs()
    name = study.kd_run(jobs.config, "sekd").rsplit("/", 1)[1]
    assert jobs.kd_values(name) == study.planned_variant(jobs.config, name).values()
    assert jobs.kd_teacher("teacher", name, 1) == ["results/models/sft/teacher/seed1"]
    assert jobs.kd_init("teacher", name, 1) is None
    seq = study.kd_run(jobs.config, "seq_kd").rsplit("/", 1)[1]
    assert jobs.kd_teacher("teacher", seq, 1) == []  # reads no teacher logits
    with pytest.raises(_PlanError, match="cannot serve seq_kd"):
        jobs.kd_teacher("teacher.sparse64", seq, 1)
    with pytest.raises(_PlanError, match=r"sekd-gamma0\.123"):
        jobs.kd("teacher", "sekd-gamma0.123", 1)


def test_engines_pick_their_conda_env_in_the_cuda_generation_asked():
    assert _jobs().engine_env("decoding") == "../envs/train.yaml"
    cu12 = _jobs(environment={"cuda": "12"}, decoding={"engine": "vllm"})
    assert cu12.engine_env("decoding") == "../envs/vllm-cu12.yaml"
    assert cu12.gpu_env("../envs/train.yaml") == "../envs/train-cu12.yaml"
