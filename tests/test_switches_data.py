"""Issue 11's open choices on SFT and data: each switch changes what it says and nothing else.

prompt.response_newline (7b), training.truncation (7a), training.sft_selection (3); the runs each
one reruns are checked by dry runs in tests/test_workflow.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import LANGUAGES, TINY_TRAINING, tiny_job
from safetensors.torch import load_file

from sekd.data import alma as data
from sekd.data import batches, prompts
from sekd.evaluate import decode
from sekd.teacher.outputs import teacher_example
from sekd.train import job as train
from sekd.train import sft_checkpoint as selection

# --- 7b: the prompt's ending -------------------------------------------------------------------


def test_response_newline_removes_only_the_final_newline():
    with_newline = prompts.build_prompt("Guten Morgen", "de-en", LANGUAGES)
    parrot = prompts.build_prompt("Guten Morgen", "de-en", LANGUAGES, response_newline=False)
    assert with_newline.endswith("### Response:\n") and parrot.endswith("### Response:")
    assert with_newline == parrot + "\n"
    assert prompts.build_prompt("x", "de-en", LANGUAGES, True) == prompts.build_prompt(
        "x", "de-en", LANGUAGES
    )


def test_response_newline_reaches_training_examples_and_decoding(tiny_tokenizer, tiny_records):
    records = tiny_records[:3]
    default = batches.encode_records(records, tiny_tokenizer, LANGUAGES, 128)
    parrot = batches.encode_records(records, tiny_tokenizer, LANGUAGES, 128, response_newline=False)
    for d, p, record in zip(default, parrot, records, strict=True):
        prompt = prompts.build_prompt(record["source"], record["direction"], LANGUAGES, False)
        prompt_ids = prompts.encode_prompt(tiny_tokenizer, prompt)
        assert p["input_ids"][: len(prompt_ids)] == prompt_ids
        assert p["labels"][: len(prompt_ids)] == [-100] * len(prompt_ids)
        assert d["input_ids"] != p["input_ids"]
    sources = [r["source"] for r in records]
    direction = records[0]["direction"]
    default_ids = decode.encode_prompts(tiny_tokenizer, sources, direction, LANGUAGES)
    parrot_ids = decode.encode_prompts(tiny_tokenizer, sources, direction, LANGUAGES, False)
    assert default_ids != parrot_ids
    assert parrot_ids[0] == prompts.encode_prompt(
        tiny_tokenizer, prompts.build_prompt(sources[0], direction, LANGUAGES, False)
    )


# --- 7a: truncation ----------------------------------------------------------------------------


def _cut(tok, truncation, extra):
    prompt = prompts.build_prompt("Guten Morgen", "de-en", LANGUAGES)
    n = len(prompts.encode_prompt(tok, prompt))
    full = prompts.encode_example(tok, prompt, "Good morning, dear friends", 10_000, truncation)
    cut = prompts.encode_example(tok, prompt, "Good morning, dear friends", n + extra, truncation)
    return n, full, cut


@pytest.mark.parametrize("extra", [1, 2, 3])
def test_keep_eos_cuts_the_target_before_its_eos(tiny_tokenizer, extra):
    eos = tiny_tokenizer.eos_token_id
    n, full, cut = _cut(tiny_tokenizer, "keep_eos", extra)
    assert len(full["input_ids"]) > n + 3  # the target is longer than what is kept
    assert cut["truncated"] and len(cut["input_ids"]) == len(cut["labels"]) == n + extra
    assert cut["input_ids"][:-1] == full["input_ids"][: n + extra - 1]
    assert cut["input_ids"][-1] == cut["labels"][-1] == eos
    assert cut["labels"][:n] == [-100] * n
    assert cut["attention_mask"] == [1] * (n + extra)


def test_target_tail_is_the_default_and_loses_the_eos(tiny_tokenizer):
    n, full, cut = _cut(tiny_tokenizer, "target_tail", 2)
    prompt = prompts.build_prompt("Guten Morgen", "de-en", LANGUAGES)
    default = prompts.encode_example(tiny_tokenizer, prompt, "Good morning, dear friends", n + 2)
    assert cut == default and cut["input_ids"] == full["input_ids"][: n + 2]
    assert tiny_tokenizer.eos_token_id not in cut["input_ids"][n:]


def test_truncation_changes_only_examples_that_are_cut(tiny_tokenizer, tiny_records):
    for truncation in prompts.TRUNCATIONS:
        assert batches.encode_records(
            tiny_records, tiny_tokenizer, LANGUAGES, 512, truncation=truncation
        ) == batches.encode_records(tiny_records, tiny_tokenizer, LANGUAGES, 512)


def test_an_unknown_truncation_names_its_key(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"training\.truncation.*'both'"):
        prompts.encode_example(tiny_tokenizer, "p", "t", 64, "both")


def test_keep_eos_applies_to_the_teachers_outputs():
    gold = {"input_ids": [1, 2, 3, 9, 9], "labels": [-100, -100, -100, 9, 9]}
    finished, unfinished = [5, 6, 7, 8, 0], [5, 6, 7, 8]  # EOS = 0
    assert teacher_example(gold, finished, 5)[0]["input_ids"] == [1, 2, 3, 5, 6]
    kept, cut = teacher_example(gold, finished, 5, keep_eos=0)
    assert cut and kept["input_ids"] == [1, 2, 3, 5, 0] and kept["labels"] == [-100] * 3 + [5, 0]
    # a hypothesis generation cut (no EOS) gets none; one that fits is not touched
    assert teacher_example(gold, unfinished, 5, keep_eos=0)[0]["input_ids"] == [1, 2, 3, 5, 6]
    assert teacher_example(gold, [5, 0], 5, keep_eos=0)[0]["input_ids"] == [1, 2, 3, 5, 0]


# --- 3: SFT checkpoint selection ---------------------------------------------------------------


def test_sft_selection_reads_the_older_switch():
    assert selection.sft_selection({}) == "valid_loss"
    assert selection.sft_selection({"select_best_sft": True}) == "valid_loss"
    assert selection.sft_selection({"select_best_sft": False}) == "last"
    assert selection.sft_selection({"sft_selection": "valid_bleu"}) == "valid_bleu"
    with pytest.raises(ValueError, match=r"select_best_sft is false.*valid_bleu"):
        selection.sft_selection({"select_best_sft": False, "sft_selection": "valid_bleu"})
    with pytest.raises(ValueError, match=r"training\.sft_selection must be one of"):
        selection.sft_selection({"sft_selection": "bleu"})


def test_config_rejects_select_best_false_with_valid_bleu():
    from sekd.errors import ConfigError
    from sekd.plan.config import load_config, validate_config

    config = load_config("config/config.yaml")
    config["training"] |= {"select_best_sft": False, "sft_selection": "valid_bleu"}
    with pytest.raises(ConfigError, match=r"training\.sft_selection"):
        validate_config(config)


@pytest.fixture(scope="module")
def files(tiny_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    data.write_jsonl(tiny_records[:4], root / "valid.jsonl")
    return root


VALID_BLEU = {"tokenize": "13a", "max_new_tokens": 8, "batch_size": 2}


def _sft(files, tiny_model_dir, out, **training):
    return tiny_job(
        out,
        tiny_model_dir,
        files / "train.jsonl",
        valid_file=files / "valid.jsonl",
        training={**TINY_TRAINING, "epochs": 3, **training},
        valid_bleu=VALID_BLEU,
    )


def test_valid_bleu_keeps_the_checkpoint_of_highest_bleu(
    files, tiny_model_dir, tmp_path, monkeypatch
):
    """With scores set per evaluation, the kept checkpoint is the best-BLEU one (not the last,
    not the lowest loss), and the kept weights are that checkpoint's."""
    scores = iter([3.0, 9.0, 5.0])
    saved = {}

    def fake_bleu(model, tokenizer, records, languages, options):
        assert options["response_newline"] is True and options["tokenize"] == "13a"
        assert {r["direction"] for r in records} and not model.training
        value = next(scores)
        saved[value] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"de-en": value, "mean": value}

    monkeypatch.setattr(selection, "validation_bleu", fake_bleu)
    out = tmp_path / "sft"
    summary = train.run(_sft(files, tiny_model_dir, out, sft_selection="valid_bleu"))
    bleus = [e for e in summary["log_history"] if "eval_bleu" in e and "eval_bleu_by" in e]
    assert [e["eval_bleu"] for e in bleus] == [3.0, 9.0, 5.0]
    assert summary["best_eval_bleu"] == 9.0 and "best_eval_loss" not in summary
    assert summary["best_checkpoint"].endswith(f"checkpoint-{bleus[1]['step']}")
    kept = load_file(str(out / "model.safetensors"))
    best = saved[9.0]
    assert all(torch.equal(kept[k], best[k]) for k in kept)
    assert json.loads((out / "train_summary.json").read_text())["best_eval_bleu"] == 9.0


def test_valid_bleu_decodes_the_validation_set(files, tiny_model_dir, tmp_path):
    """Unpatched: every evaluation greedy-decodes the validation set and scores it."""
    summary = train.run(
        _sft(files, tiny_model_dir, tmp_path / "sft", sft_selection="valid_bleu", epochs=2)
    )
    bleus = [e for e in summary["log_history"] if "eval_bleu_by" in e]
    assert len(bleus) == 2
    for entry in bleus:
        assert 0.0 <= entry["eval_bleu"] <= 100.0 and set(entry["eval_bleu_by"]) >= {"mean"}
    assert summary["best_eval_bleu"] == max(e["eval_bleu"] for e in bleus)


def test_valid_loss_is_what_the_default_did(files, tiny_model_dir, tmp_path):
    """sft_selection: valid_loss written out = the key absent (the runs before it existed)."""
    explicit = train.run(
        _sft(files, tiny_model_dir, tmp_path / "explicit", sft_selection="valid_loss", epochs=2)
    )
    default = train.run(_sft(files, tiny_model_dir, tmp_path / "default", epochs=2))
    assert (
        explicit["best_checkpoint"].rsplit("/", 1)[1]
        == default["best_checkpoint"].rsplit("/", 1)[1]
    )
    assert explicit["best_eval_loss"] == default["best_eval_loss"] is not None
    assert not any("eval_bleu" in e for e in default["log_history"])
    a = load_file(str(tmp_path / "explicit" / "model.safetensors"))
    b = load_file(str(tmp_path / "default" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_last_keeps_the_last_weights_as_select_best_false_did(files, tiny_model_dir, tmp_path):
    last = train.run(_sft(files, tiny_model_dir, tmp_path / "last", sft_selection="last", epochs=2))
    old = train.run(_sft(files, tiny_model_dir, tmp_path / "old", select_best_sft=False, epochs=2))
    assert last["best_checkpoint"] is None and old["best_checkpoint"] is None
    a = load_file(str(tmp_path / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "old" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any("eval_loss" in e for e in last["log_history"])


def test_rule_job_reads_the_switches_from_its_params():
    from types import SimpleNamespace

    job_slice = {
        "training": {"epochs": 1, "sft_selection": "valid_bleu"},
        "languages": {},
        "dtype": "float32",
        "trust_remote_code": False,
        "prompt": {"response_newline": False},
        "valid_bleu": VALID_BLEU,
    }
    resources = SimpleNamespace(deepspeed="", nproc_per_node=0, save_steps=0)
    fields = dict(variant="sft", base_model="b", tokenizer_dir="t", train_files=[])
    fields |= dict(out_dir="o", checkpoint_dir="c", seed=1)
    job = train.rule_job(job_slice, resources, **fields)
    assert job.response_newline is False and job.valid_bleu == VALID_BLEU
    default = train.rule_job({**job_slice, "prompt": {}, "valid_bleu": None}, resources, **fields)
    assert default.response_newline is True and default.valid_bleu is None


# --- 7c: WMT21 cs-en ---------------------------------------------------------------------------


def test_the_reversed_wmt21_cs_en_validation_set_is_named():
    warning = data.reversed_valid_warning("cs-en")
    assert "csen/valid.cs-en.json" in warning and "WMT21 en-cs" in warning
    assert data.reversed_valid_warning("en-cs") is None
    assert data.reversed_valid_warning("de-en") is None


# --- the job slices: each switch in the params of the jobs it affects, only when not default --

PROBE = """
include: "{snakefile}"
import json
from sekd.plan.run_names import drop_runtime_keys
print("PROBE" + json.dumps({{
    "sft": JOBS.sft("teacher"),
    "kd": drop_runtime_keys(JOBS.training_slice("student")),
    "store": JOBS.store("teacher", JOBS.fidelity()["source"]),  # the plan's sparse store
    "outputs": JOBS.outputs("teacher", "beam5"),  # a generation the plan makes (seq_kd)
    "decode": JOBS.decoding(),
    "tokenizer": JOBS.tokenizer_training(),
}}))
"""


def _job_params(tmp_path, override: str) -> dict:
    """The params the rules would get (sekd.plan.jobs.Jobs), from a probe Snakefile that includes
    the workflow with config/mini.yaml and `override`."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config").symlink_to(root / "config")
    probe = tmp_path / "workflow" / "probe.smk"
    probe.parent.mkdir()
    probe.write_text(PROBE.format(snakefile=root / "workflow" / "Snakefile"))
    extra = tmp_path / "override.yaml"
    extra.write_text(override)
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-s", str(probe), "-d", str(tmp_path / "work"), "-n"]
    command += ["--configfile", str(root / "config" / "mini.yaml"), str(extra)]
    command += ["--cores", "1", "results/tokenizer"]
    env = {**os.environ, "PYTHONPATH": str(root / "workflow")}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("PROBE"))
    return json.loads(line.removeprefix("PROBE"))


def test_job_slices_hold_each_switch_only_where_it_acts(tmp_path):
    default = _job_params(tmp_path / "a", "{}\n")
    explicit = _job_params(
        tmp_path / "b",
        "training: {sft_selection: valid_loss, truncation: target_tail}\n"
        "prompt: {response_newline: true}\n",
    )
    assert explicit == default  # the defaults add nothing: the paper's jobs keep their params
    text = json.dumps(default)
    assert not any(k in text for k in ("sft_selection", "truncation", "response_newline"))
    switched = _job_params(
        tmp_path / "c",
        "training: {sft_selection: valid_bleu, truncation: keep_eos}\n"
        "prompt: {response_newline: false}\n",
    )
    sft, kd = switched["sft"], switched["kd"]
    assert sft["training"]["sft_selection"] == "valid_bleu" and set(sft["valid_bleu"]) == {
        "tokenize",
        "max_new_tokens",
        "batch_size",
    }
    assert "sft_selection" not in kd["training"] and "valid_bleu" not in kd  # SFT only
    for job in (sft, kd):
        assert job["training"]["truncation"] == "keep_eos"
        assert job["prompt"] == {"response_newline": False}
    for name in ("store", "outputs"):
        assert switched[name]["truncation"] == "keep_eos"
        assert switched[name]["response_newline"] is False
    assert (
        switched["decode"]["response_newline"] is False and "truncation" not in switched["decode"]
    )
    assert switched["tokenizer"]["response_newline"] is False
    # and nothing else changed in any slice
    for name, job in switched.items():
        job = json.loads(json.dumps(job))
        for key in ("sft_selection", "truncation", "response_newline"):
            job.pop(key, None)
            job.get("training", {}).pop(key, None)
        job.pop("prompt", None)
        job.pop("valid_bleu", None)
        assert job == default[name], name
