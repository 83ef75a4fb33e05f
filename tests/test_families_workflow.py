"""Model families by config alone, end to end (issue 21): for tiny local models of the Qwen2
(Qwen2.5's conventions: no BOS, pad = EOS, vocabularies padded above the tokenizer, the teacher's
further than the student's), Llama (Llama-3's: a BOS, no pad, two end ids in generation_config),
Mistral and Gemma-2/3 (sliding windows shorter than a prompt) architectures, pointed at by
models.<name>.pretrained with tokenizer.from_model: student, Snakemake runs Table 1 (SFT, the
logit objectives, decoding) and f-DISTILL TVD (sequences sampled from the teacher and from the
student) on the micro config."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import LANGUAGES, SENTENCES
from test_families import FAMILIES
from test_workflow import snakemake
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

from sekd.data import prompts

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# special tokens (the first is the BOS the tokenizer prepends, if any), and the tokenizer's roles
CONVENTIONS = {
    "qwen2": (
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        None,
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    ),
    "llama": (
        ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
    ),
    "mistral": (
        ["<unk>", "<s>", "</s>"],
        "<s>",
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    ),
    "gemma2": (
        ["<pad>", "<eos>", "<bos>", "<unk>"],
        "<bos>",
        {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"},
    ),
}
CONVENTIONS["gemma3"] = CONVENTIONS["gemma2"]
# embedding rows above the tokenizer of the student and the teacher (Qwen2.5 rounds up, the 7B
# teacher further than the 1.5B student: 152,064 and 151,936 rows for 151,665 entries)
PADDED = {"qwen2": (24, 152)}
TVD = "fd_tvd-ttemp1-ttopk0-ttopp1-stemp1-stopk0-stopp1"
LORA = {"llama"}  # the families whose study trains LoRA adapters (training.finetune: lora)


def _tokenizer(family: str) -> PreTrainedTokenizerFast:
    """A byte-level BPE with the family's special tokens and BOS convention."""
    specials, bos, roles = CONVENTIONS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [prompts.build_prompt(de, "de-en", LANGUAGES) + en for de, en in SENTENCES]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts * 4, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def _model_dir(
    family: str, tok, path: Path, hidden: int, layers: int, seed: int, padded: int = 0
) -> Path:
    """A family's model of `hidden` x `layers` with `tok` and `padded` embedding rows above it,
    saved as a hub checkpoint would be."""
    config_class, model_class, extra = FAMILIES[family]
    end = tok.convert_tokens_to_ids("<|eot_id|>") if family == "llama" else None
    config = config_class(
        vocab_size=len(tok) + padded,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=family.startswith("gemma"),
        **extra,
    )
    torch.manual_seed(seed)
    model = model_class(config)
    if end is not None:  # Llama-3: generation ends at <|end_of_text|> or <|eot_id|>
        model.generation_config = GenerationConfig(
            bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, end]
        )
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_study(request, tmp_path_factory, alma_mirror, monkeypatch_module):
    family = request.param
    monkeypatch_module.setenv("SEKD_DATA_MIRROR", str(alma_mirror))
    root = tmp_path_factory.mktemp(f"family-{family}")
    tok = _tokenizer(family)
    student_rows, teacher_rows = PADDED.get(family, (0, 0))
    student = _model_dir(family, tok, root / "student", 32, 1, seed=1, padded=student_rows)
    teacher = _model_dir(family, tok, root / "teacher", 48, 2, seed=2, padded=teacher_rows)
    config = {
        "tokenizer": {"from_model": "student", "train": None},
        "models": {
            name: {"pretrained": str(path), "init": None, "dtype": "float32"}
            for name, path in (("student", student), ("teacher", teacher), ("teacher_l", teacher))
        },
        # one language pair and direction: the families, not the data, are under test
        "data": {"pairs": ["de-en"], "valid_directions": ["de-en"], "test_directions": ["de-en"]},
    }
    if family in LORA:  # every SFT and KD run trains a LoRA adapter, through the rules
        config["training"] = {"finetune": "lora"}
        for model in config["models"].values():
            model["lora"] = {"rank": 4, "alpha": 8}
    extra = root / "family.yaml"
    extra.write_text(yaml.safe_dump(config))
    workdir = root / "study"
    workdir.mkdir()
    tvd = TVD + ("-finetune.lora" if family in LORA else "")
    targets = ["results/table1.csv", f"results/scores/kd/teacher/{tvd}/seed1/wmt22/de-en.json"]
    snakemake(workdir, *targets, extra_configs=(str(extra),))
    return family, tok, workdir


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_table1_and_a_sampled_objective_run_for_each_family(family_study):
    family, tok, workdir = family_study
    with open(workdir / "results" / "table1.csv", newline="") as f:
        rows = {r["system"]: r for r in csv.DictReader(f)}
    systems = ["Teacher", "Student", "Forward KD", "Reverse KD", "NoEvo KD", "SKEW KD"]
    assert {*systems, "Self-Evolution KD"} <= set(rows)
    assert all(math.isfinite(float(rows[s]["chrf_avg"])) for s in systems)
    run = TVD + ("-finetune.lora" if family in LORA else "")
    tvd = json.loads(
        (workdir / f"results/scores/kd/teacher/{run}/seed1/wmt22/de-en.json").read_text()
    )
    hypotheses = (workdir / tvd["hypotheses"]).read_text().splitlines()
    assert tvd["n_sentences"] == len(hypotheses) == 5  # tests/micro.yaml's test sentences
    assert any(hypotheses)
    # the workflow's tokenizer is the family's, conventions included
    shared = PreTrainedTokenizerFast.from_pretrained(workdir / "results" / "tokenizer")
    assert shared.bos_token == tok.bos_token and shared.eos_token == tok.eos_token
    assert len(shared) == len(tok)
    summary = json.loads(
        (workdir / "results/models/kd/teacher" / run / "seed1/train_summary.json").read_text()
    )
    assert summary["onpolicy"]["samples"] > 0  # the student sampled its own sequences
    if family in LORA:  # the adapters, and the merged weights the decoding read
        assert summary["lora"]["rank"] == 4 and summary["lora"]["trainable"] > 0
        for model in ("sft/teacher", "sft/student", f"kd/teacher/{run}"):
            assert (workdir / "results/models" / model / "seed1/adapter").is_dir()
