"""Training on tiny models: seeded determinism, best SFT checkpoint, logged hard fraction."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TRAINING, tiny_job
from safetensors.torch import load_file

from sekd.data import alma as data
from sekd.plan.variants import make_variant
from sekd.train import job as train

TRAINING = TINY_TRAINING
KD = {"lam": 0.5, "beta": 0.5, "gamma": 0.4, "top_k_percent": 20}


@pytest.fixture(scope="module")
def files(tiny_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    data.write_jsonl(tiny_records[:4], root / "valid.jsonl")
    return root


def _job(variant, out, files, tiny_tokenizer_dir, base, teacher=None, seed=1, **training):
    return tiny_job(
        out,
        base,
        files / "train.jsonl",
        variant=variant,
        teacher=teacher,
        valid_file=None if teacher else files / "valid.jsonl",
        tokenizer_dir=tiny_tokenizer_dir,
        training={**TRAINING, **training},
        seed=seed,
    )


def _weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def sft_teacher(files, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "teacher"
    summary = train.run(_job("sft", out, files, tiny_model_dir, tiny_model_dir))
    return out, summary


def test_sft_is_deterministic_and_keeps_the_best_checkpoint(
    sft_teacher, files, tiny_model_dir, tmp_path
):
    out, summary = sft_teacher
    again = tmp_path / "again"
    train.run(_job("sft", again, files, tiny_model_dir, tiny_model_dir))
    first, second = _weights(out), _weights(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    # it trained: weights moved away from the base model
    base = _weights(tiny_model_dir)
    assert any(not torch.equal(base[k], first[k]) for k in first)
    evals = [e["eval_loss"] for e in summary["log_history"] if "eval_loss" in e]
    assert len(evals) == 2 and summary["best_eval_loss"] == pytest.approx(min(evals))
    assert json.loads((out / "train_summary.json").read_text())["objective"] == "sft"
    assert not (out.parent / "teacher-checkpoints").exists()  # checkpoints removed on success
    assert not list(out.parent.glob("*.tmp"))


def test_a_different_seed_gives_different_weights(sft_teacher, files, tiny_model_dir, tmp_path):
    out, _ = sft_teacher
    other = tmp_path / "seed2"
    train.run(_job("sft", other, files, tiny_model_dir, tiny_model_dir, seed=2))
    first, second = _weights(out), _weights(other)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_kd_logs_the_hard_token_fraction(sft_teacher, files, tiny_model_dir, tmp_path):
    teacher, _ = sft_teacher
    variant = make_variant("sekd", KD)
    summary = train.run(
        _job(variant, tmp_path / "kd", files, tiny_model_dir, tiny_model_dir, teacher=teacher)
    )
    fractions = [e["hard_fraction"] for e in summary["log_history"] if "hard_fraction" in e]
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
    assert summary["objective"] == "sekd" and summary["best_checkpoint"] is None  # final kept


def test_progressive_beta_is_logged_and_decreases(sft_teacher, files, tiny_model_dir, tmp_path):
    teacher, _ = sft_teacher
    variant = make_variant("skew_kd", {**KD, "beta": (0.9, 0.1)})
    assert variant.name == "skew_kd-lam0.5-beta0.9to0.1"
    summary = train.run(
        _job(variant, tmp_path / "kd", files, tiny_model_dir, tiny_model_dir, teacher=teacher)
    )
    betas = [e["beta"] for e in summary["log_history"] if "beta" in e]
    assert betas[0] == pytest.approx(0.9) and betas == sorted(betas, reverse=True)
    assert betas[-1] < 0.9


def test_batch_size_must_divide(files, tiny_model_dir, tmp_path):
    job = _job("sft", tmp_path / "x", files, tiny_model_dir, tiny_model_dir, batch_size=3)
    with pytest.raises(ValueError, match="batch_size"):
        train.run(job)
    assert not (tmp_path / "x").exists()


def test_prompt_longer_than_max_length_is_a_clear_error(files, tiny_model_dir, tmp_path):
    job = _job("sft", tmp_path / "x", files, tiny_model_dir, tiny_model_dir, max_length=16)
    with pytest.raises(ValueError, match=r"training\.max_length=16"):
        train.run(job)
    assert not (tmp_path / "x").exists()


def test_a_rule_job_takes_the_runtime_keys_from_its_resources(tmp_path, monkeypatch):
    """The runtime keys travel as resources (unset: 0 or ""), never as params; a DeepSpeed
    config path is relative to the repository when not to the working directory."""
    from types import SimpleNamespace

    from sekd.plan.run_names import RUNTIME_KEYS, as_resource, drop_runtime_keys, runtime_resources

    training = {"epochs": 1, "deepspeed": "config/deepspeed/zero3_bf16.json"}
    training |= {"nproc_per_node": None, "save_steps": 5, "report_to": ["tensorboard", "wandb"]}
    job_slice = {"training": training, "languages": {}, "dtype": "float32"}
    job_slice["trust_remote_code"] = False
    params = drop_runtime_keys(job_slice)
    assert not set(params["training"]) & set(RUNTIME_KEYS)
    resources = runtime_resources(training)
    assert resources["nproc_per_node"] == 0 and as_resource(None, str) == ""
    assert resources["report_to"] == "tensorboard,wandb"  # a resource is an int or a string
    monkeypatch.chdir(tmp_path)
    job = train.rule_job(
        params,
        SimpleNamespace(**resources, gres="gpu:4", nodes=2),
        variant="sft",
        base_model="base",
        tokenizer_dir="tok",
        train_files=[],
        out_dir="out",
        checkpoint_dir="checkpoints",
        seed=1,
    )
    assert job.training == {**training, "deepspeed": str(train.REPOSITORY / training["deepspeed"])}
    assert job.gpus_per_node == 4  # sbatch --gres counts per node
