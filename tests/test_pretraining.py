"""The miniature's pretraining stage: its text, its blocks, its jobs in the plan, and a run that
trains a causal language model for exactly its steps (sekd.data.pretraining, sekd.train.job)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from conftest import LANGUAGES, SENTENCES

from sekd.data.pretraining import pack_blocks, pretraining_sentences, read_text
from sekd.plan.config import load_config, validate_config
from sekd.plan.jobs import Jobs

ROOT = Path(__file__).resolve().parents[1]


def _mini_jobs(**models) -> Jobs:
    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")
    for name, init in models.items():
        config["models"][name]["init"] = {**config["models"][name]["init"], **init}
    return Jobs(validate_config(config, environ={}), error=ValueError)


def test_text_samples_pairs_and_keeps_or_splits_their_sentences():
    cs = [(f"cs {i}", f"en-cs {i}") for i in range(50)]
    de = [(f"de {i}", f"en-de {i}") for i in range(50)] + [(" de x ", "  ")]
    text = pretraining_sentences([cs, de], 10, seed=3, adjacent=True)
    assert len(text) == 10 * 2 + 10 * 2 - ("de x" in text)  # a blank side dropped, others stripped
    assert text == pretraining_sentences([cs, de], 10, seed=3, adjacent=True)  # seeded
    assert text != pretraining_sentences([cs, de], 10, seed=4, adjacent=True)
    # adjacent: each pair's two sentences next to each other, either language first
    for i in range(0, len(text) - 1, 2):
        if "de x" not in text[i : i + 2]:
            assert text[i].split()[-1] == text[i + 1].split()[-1]
    first = {line.split()[0] for line in text[::2]}
    assert {"cs", "en-cs"} <= first or {"de", "en-de"} <= first
    whole = pretraining_sentences([cs, de], None, seed=0, adjacent=False)
    assert sorted(whole) == sorted(s.strip() for p in cs + de for s in p if s.strip())
    neighbours = sum(a.split()[-1] == b.split()[-1] for a, b in itertools.pairwise(whole))
    assert neighbours < len(whole) / 10  # apart: no longer side by side


def test_blocks_are_the_text_with_eos_after_each_sentence_cut_to_block_size(tiny_tokenizer):
    sentences = [s for pair in SENTENCES for s in pair]
    stream = []
    for s in sentences:
        stream += tiny_tokenizer(s, add_special_tokens=False)["input_ids"]
        stream.append(tiny_tokenizer.eos_token_id)
    blocks = pack_blocks(sentences, tiny_tokenizer, 16)
    assert len(blocks) == len(stream) // 16 >= 2
    assert [t for b in blocks for t in b["input_ids"]] == stream[: len(blocks) * 16]
    for block in blocks:
        assert block["labels"] == block["input_ids"]  # every token predicted, nothing masked
        assert block["attention_mask"] == [1] * 16
    with pytest.raises(ValueError, match=r"shorter than one block of pretrain\.block_size=100000"):
        pack_blocks(sentences[:2], tiny_tokenizer, 100_000)


def test_a_pretrained_model_is_the_base_of_its_sft_and_kd_runs():
    jobs = _mini_jobs()
    assert set(jobs.pretrained_models()) == {"student", "teacher", "teacher_l"}
    assert jobs.base_model("student") == "results/models/pretrained/student"
    assert "pretrain_steps" not in jobs.init("teacher")  # it changes no initial weight
    job = jobs.pretrain("teacher")
    steps = jobs.config["models"]["teacher"]["init"]["pretrain_steps"]
    assert job["training"]["max_steps"] == steps
    assert job["training"]["max_length"] == jobs.config["pretrain"]["block_size"]
    assert job["training"]["learning_rate"] == jobs.config["pretrain"]["learning_rate"]
    plain = _mini_jobs(student={"pretrain_steps": None})
    assert plain.base_model("student") == "results/models/base/student"
    assert "student" not in plain.pretrained_models()
    with pytest.raises(ValueError, match=r"models\.student\.init\.pretrain_steps is not set"):
        plain.pretrain("student")


def test_the_paper_config_pretrains_nothing():
    config = load_config(ROOT / "config" / "config.yaml")
    jobs = Jobs(validate_config(config, environ={}))
    assert jobs.pretrained_models() == [] and jobs.pretrain_inputs() == []
    assert _mini_jobs().pretrain_inputs() == ["results/data/pretrain.txt"]


def test_a_block_size_beyond_the_models_positions_is_refused_at_plan_time():
    from sekd.errors import ConfigError

    config = load_config(ROOT / "config" / "config.yaml", ROOT / "config" / "mini.yaml")
    config["pretrain"] = {**config.get("pretrain", {}), "block_size": 4096}
    with pytest.raises(ConfigError, match=r"pretrain\.block_size.*models\.student\.init"):
        validate_config(config, environ={})


def test_pretraining_trains_a_causal_lm_for_its_steps(tiny_tokenizer, tiny_model_dir, tmp_path):
    from sekd.train import job as train

    text = tmp_path / "pretrain.txt"
    text.write_text("".join(f"{s}\n" for pair in SENTENCES for s in pair) * 3, encoding="utf-8")
    training = {
        "max_steps": 12,
        "epochs": 1,
        "batch_size": 4,
        "per_device_batch_size": 4,
        "max_length": 16,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "weight_decay": 0.0,
        "logging_steps": 4,
        "eval_steps": None,
        "select_best_sft": False,
    }
    out = tmp_path / "pretrained"
    summary = train.run(
        train.TrainJob(
            variant="pretrain",
            base_model=str(tiny_model_dir),
            tokenizer_dir=str(tiny_model_dir),
            train_files=[],
            pretrain_text=str(text),
            out_dir=str(out),
            checkpoint_dir=str(tmp_path / "checkpoints"),
            languages=LANGUAGES,
            training=training,
            seed=0,
        )
    )
    blocks = len(pack_blocks(read_text(str(text)), tiny_tokenizer, 16))
    assert blocks < 12 * 4  # more steps than one pass: the blocks are cycled over
    assert summary["global_steps"] == 12
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    assert len(losses) == 3 and float(losses[-1]) < float(losses[0])
    assert list(out.glob("*.safetensors"))
    assert json.loads((out / "train_summary.json").read_text())["variant"] == "pretrain"
