"""The teacher's outputs for the training prompts (sekd.teacher.outputs, rule teacher_outputs):
beams and samples with EOS and finished flags, reproducible and batch-invariant samples, counts,
atomic output, the examples a run trains on, and the rule in the plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import LANGUAGES, TINY_TRAINING, tiny_job
from sacrebleu.metrics import BLEU
from safetensors.torch import load_file
from transformers import GenerationConfig

from sekd import models
from sekd.data import alma as data
from sekd.data import batches
from sekd.data import tokenizer as tokenizers
from sekd.evaluate import decode
from sekd.plan.variants import make_variant
from sekd.teacher import outputs as to
from sekd.teacher.store import fingerprint
from sekd.train import job as train
from sekd.train import sampling

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
MAX_LENGTH = TINY_TRAINING["max_length"]
SAMPLE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
SAMPLED = {"teacher_temperature": 1, "teacher_top_k": 0, "teacher_top_p": 1}  # fd_kl's run


def _teacher(tok, path: Path, eos_scale: float) -> Path:
    """A tiny seeded Llama whose EOS logit is scaled by `eos_scale` (a random model rarely
    ends otherwise), saved to `path`."""
    init = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2}
    model = models.build_tiny_llama({**init, "num_attention_heads": 2}, tok, seed=7)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] *= eos_scale
    models.save(model, tok, path)
    return path


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_model_dir, tmp_path_factory):
    """(root with train.jsonl, the teacher, a teacher that always ends at once)."""
    root = tmp_path_factory.mktemp("teacher_outputs")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    tok = tokenizers.load(tiny_model_dir)
    return root, _teacher(tok, root / "teacher", 20.0), _teacher(tok, root / "mute", 1000.0)


def _job(setup, tiny_model_dir, out, generation, teacher=None, **kw) -> to.GenerationJob:
    root, default, _ = setup
    return to.GenerationJob(
        teacher_model=str(teacher or default),
        tokenizer_dir=str(tiny_model_dir),
        train_files=[str(root / "train.jsonl")],
        out_dir=str(out),
        languages=LANGUAGES,
        generation=generation,
        max_length=MAX_LENGTH,
        **{"max_new_tokens": 10, "seed": 3, "batch_size": 4, **kw},
    )


def _gold(setup, tiny_model_dir) -> tuple[list[dict], list[dict]]:
    """(gold training examples as training encodes them, their records)."""
    root, _, _ = setup
    tok = tokenizers.load(tiny_model_dir)
    records, kept = data.read_jsonl(root / "train.jsonl"), []
    examples = batches.encode_records(records, tok, LANGUAGES, MAX_LENGTH, kept)
    assert examples == batches.encode_files([str(root / "train.jsonl")], tok, LANGUAGES, MAX_LENGTH)
    return examples, [records[i] for i in kept]


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "outputs.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def beams(setup, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("beams") / "beam3"
    to.generate(_job(setup, tiny_model_dir, out, {"num_beams": 3}, max_new_tokens=6))
    return out


# --- generation ---------------------------------------------------------------------------------


def test_beam_outputs_hold_k_hypotheses_with_finished_flags_and_eos(setup, tiny_model_dir, beams):
    tok = tokenizers.load(tiny_model_dir)
    eos = tok.eos_token_id
    gold, records = _gold(setup, tiny_model_dir)
    lines = _lines(beams)
    assert [line["index"] for line in lines] == list(range(len(gold)))
    metric = BLEU(tokenize="13a", effective_order=True)
    finished = truncated = 0
    for line, record in zip(lines, records, strict=True):
        assert len(line["hypotheses"]) == 3
        for h in line["hypotheses"]:
            ids = h["ids"]
            assert eos not in ids[:-1]
            assert h["finished"] == (ids[-1] == eos)
            if not h["finished"]:
                assert len(ids) == 6  # cut at max_new_tokens
            assert h["text"] == decode.hypothesis(tok, ids) and "\n" not in h["text"]
            assert h["bleu"] == metric.sentence_score(h["text"], [record["target"]]).score
            finished += h["finished"]
            truncated += not h["finished"]
    assert finished and truncated  # both kinds occur: the checks above bit
    meta = json.loads((beams / "meta.json").read_text())
    assert meta["fingerprint"] == fingerprint(gold)
    assert meta["generation"] == {"num_beams": 3}
    assert meta["counts"] == {
        "examples": len(gold),
        "hypotheses": 3 * len(gold),
        "empty": sum(h["ids"] == [eos] for line in lines for h in line["hypotheses"]),
        "truncated": truncated,
    }
    assert meta["teacher"]["sha256"] is not None


def test_beams_are_those_of_the_prompt_alone(setup, tiny_model_dir, beams):
    """The prompt is the gold example's masked prefix, and the beams are HF beam search's on
    it, best first."""
    _, teacher, _ = setup
    tok = tokenizers.load(tiny_model_dir)
    model = models.load_causal_lm(teacher).eval()
    gold, records = _gold(setup, tiny_model_dir)
    config = GenerationConfig(
        max_new_tokens=6,
        num_beams=3,
        num_return_sequences=3,
        do_sample=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    lines = _lines(beams)
    for e in (0, len(gold) - 1):
        prompt = decode.encode_prompts(
            tok, [records[e]["source"]], records[e]["direction"], LANGUAGES
        )[0]
        assert to.prompt_ids(gold[e]) == prompt
        out = model.generate(input_ids=torch.tensor([prompt]), generation_config=config)
        expected = [
            sampling.split_at_end(row, tok.eos_token_id)[0] for row in out[:, len(prompt) :]
        ]
        assert [h["ids"] for h in lines[e]["hypotheses"]] == [list(map(int, r)) for r in expected]


def test_sampling_is_reproducible_and_does_not_depend_on_the_batch(setup, tiny_model_dir, tmp_path):
    outputs = {}
    for name, kw in {
        "b1": {"batch_size": 1},
        "b5": {"batch_size": 5},
        "again": {"batch_size": 5},
        "seed4": {"batch_size": 5, "seed": 4},
    }.items():
        to.generate(_job(setup, tiny_model_dir, tmp_path / name, SAMPLE, **kw))
        outputs[name] = (tmp_path / name / "outputs.jsonl").read_text()
    assert outputs["b1"] == outputs["b5"] == outputs["again"]
    assert outputs["seed4"] != outputs["b5"]
    lines = _lines(tmp_path / "b5")
    assert all(len(line["hypotheses"]) == 1 for line in lines)
    assert len({tuple(line["hypotheses"][0]["ids"]) for line in lines}) > 1


def test_counts_of_empty_and_truncated(setup, tiny_model_dir, tmp_path):
    _, _, mute = setup
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    short = to.generate(_job(setup, tiny_model_dir, tmp_path / "short", SAMPLE, max_new_tokens=2))
    lines = _lines(tmp_path / "short")
    hyps = [h for line in lines for h in line["hypotheses"]]
    assert all(len(h["ids"]) <= 2 for h in hyps)
    assert short["counts"]["truncated"] == sum(not h["finished"] for h in hyps) > 0
    assert short["counts"]["empty"] == sum(h["ids"] == [eos] for h in hyps)
    empty = to.generate(
        _job(setup, tiny_model_dir, tmp_path / "mute", {"num_beams": 2}, teacher=mute)
    )
    lines = _lines(tmp_path / "mute")
    n = len(lines)
    # the best beam is EOS alone; the second, other tokens then EOS (beams are distinct)
    assert empty["counts"] == {"examples": n, "hypotheses": 2 * n, "empty": n, "truncated": 0}
    assert all(line["hypotheses"][0]["ids"] == [eos] for line in lines)
    assert all(
        line["hypotheses"][1]["ids"][-1] == eos != line["hypotheses"][1]["ids"][0] for line in lines
    )


def test_output_appears_only_when_complete(setup, tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "beam2"
    calls = []

    def fail_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed mid-way")
        return real(*args, **kwargs)

    real = to.hypothesis_records
    monkeypatch.setattr(to, "hypothesis_records", fail_on_third)
    with pytest.raises(RuntimeError, match="mid-way"):
        to.generate(_job(setup, tiny_model_dir, out, {"num_beams": 2}))
    assert not out.exists() and Path(f"{out}.tmp").exists()
    monkeypatch.setattr(to, "hypothesis_records", real)
    to.generate(_job(setup, tiny_model_dir, out, {"num_beams": 2}))
    assert (out / "meta.json").is_file() and not Path(f"{out}.tmp").exists()


def test_bad_settings_are_refused(setup, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="beam search"):
        to.generate(_job(setup, tiny_model_dir, tmp_path / "x", {"num_beams": 2, "top_k": 1}))
    with pytest.raises(ValueError, match="engine"):
        to.generate(_job(setup, tiny_model_dir, tmp_path / "x", SAMPLE, engine="ct2"))
    assert not (tmp_path / "x").exists()


# --- reading ------------------------------------------------------------------------------------


def _write_outputs(out: Path, gold: list[dict], hypotheses: list[list[dict]]) -> Path:
    out.mkdir(parents=True)
    meta = {"format": to.FORMAT, "fingerprint": fingerprint(gold), "generation": {"num_beams": 3}}
    (out / "meta.json").write_text(json.dumps(meta))
    lines = [json.dumps({"index": e, "hypotheses": h}) for e, h in enumerate(hypotheses)]
    (out / "outputs.jsonl").write_text("\n".join(lines) + "\n")
    return out


def _hyp(ids, finished, bleu):
    return {"ids": ids, "finished": finished, "text": "", "bleu": bleu}


def test_load_examples_masks_the_prompt_keeps_eos_and_picks(setup, tiny_model_dir, tmp_path):
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    gold = _gold(setup, tiny_model_dir)[0][:3]
    gold[1] = {**gold[1], "index": 1}
    hypotheses = [
        [_hyp([5, 6, eos], True, 10.0), _hyp([7, eos], True, 30.0), _hyp([8, 9], False, 30.0)],
        [_hyp([eos], True, 0.0), _hyp([11, 12, 13], False, 50.0)],
        [_hyp([14, 15, 16, 17], False, 0.0)],
    ]
    out = _write_outputs(tmp_path / "beam3", gold, hypotheses)
    prompts = [to.prompt_ids(g) for g in gold]
    stats = {}
    top = to.load_examples(out, gold, "top", eos, MAX_LENGTH, stats)
    targets = [[5, 6, eos], [eos], [14, 15, 16, 17]]
    for example, prompt, target in zip(top, prompts, targets, strict=True):
        assert example["input_ids"] == prompt + target
        assert example["labels"] == [-100] * len(prompt) + target
        assert example["attention_mask"] == [1] * (len(prompt) + len(target))
    assert "index" not in top[0] and top[1]["index"] == 1
    assert stats == {"examples": 3, "empty": 1, "truncated": 1, "cut": 0}
    bleu = to.load_examples(out, gold, "bleu", eos, MAX_LENGTH, stats)
    # the highest BLEU, the first of equals (30.0 twice)
    assert [ex["labels"][len(p) :] for ex, p in zip(bleu, prompts, strict=True)] == [
        [7, eos],
        [11, 12, 13],
        [14, 15, 16, 17],
    ]
    assert stats == {"examples": 3, "empty": 0, "truncated": 2, "cut": 0}
    cut_at = len(prompts[0]) + 2
    cut = to.load_examples(out, gold, "top", eos, cut_at, stats)
    assert cut[0]["labels"] == [-100] * len(prompts[0]) + [5, 6]
    assert all(len(ex["input_ids"]) <= cut_at for ex in cut)
    assert (
        stats["cut"]
        == sum(len(p) + len(t) > cut_at for p, t in zip(prompts, targets, strict=True))
        >= 1
    )


def test_load_examples_rejects_other_training_sets_and_bad_outputs(setup, tiny_model_dir, tmp_path):
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    gold = _gold(setup, tiny_model_dir)[0]
    out = _write_outputs(tmp_path / "o", gold[:2], [[_hyp([eos], True, 0.0)]] * 2)
    with pytest.raises(ValueError, match=rf"{out}.*rerun the rule teacher_outputs"):
        to.load_examples(out, gold[:3], "top", eos, MAX_LENGTH)
    bad = _write_outputs(tmp_path / "bad", gold[:1], [[_hyp([4, 5], True, 0.0)]])
    with pytest.raises(ValueError, match="EOS"):
        to.load_examples(bad, gold[:1], "top", eos, MAX_LENGTH)
    with pytest.raises(FileNotFoundError, match="teacher_outputs"):
        to.load_examples(tmp_path / "none", gold, "top", eos, MAX_LENGTH)


def test_generated_outputs_load_for_their_training_set(setup, tiny_model_dir, beams):
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    gold = _gold(setup, tiny_model_dir)[0]
    lines = _lines(beams)
    examples = to.load_examples(beams, gold, "top", eos, MAX_LENGTH)
    for example, g, line in zip(examples, gold, lines, strict=True):
        assert example["labels"][len(to.prompt_ids(g)) :] == line["hypotheses"][0]["ids"]


# --- training on them ---------------------------------------------------------------------------


def _gold_as_outputs(setup, tiny_model_dir, out: Path) -> Path:
    """Teacher outputs whose every hypothesis is the gold target (with its EOS)."""
    gold = _gold(setup, tiny_model_dir)[0]
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    targets = [[t for t in g["labels"] if t != -100] for g in gold]
    assert all(t[-1] == eos for t in targets)
    return _write_outputs(out, gold, [[_hyp(t, True, 100.0)] for t in targets])


def test_seq_kd_on_gold_outputs_trains_as_sft_without_a_teacher(setup, tiny_model_dir, tmp_path):
    """The teacher's targets reach the loss with the right masks: SeqKD on outputs equal to the
    gold references is SFT; and it loads no teacher (the one named does not exist)."""
    root, _, _ = setup
    outputs = _gold_as_outputs(setup, tiny_model_dir, tmp_path / "gold_outputs")
    sft = train.run(tiny_job(tmp_path / "sft", tiny_model_dir, root / "train.jsonl"))
    seq = train.run(
        tiny_job(
            tmp_path / "seq_kd",
            tiny_model_dir,
            root / "train.jsonl",
            variant=make_variant("seq_kd", {"num_beams": 3}),
            teacher=tmp_path / "no_such_teacher",
            teacher_outputs=str(outputs),
        )
    )
    assert seq["objective"] == "seq_kd" and seq["global_steps"] == sft["global_steps"]
    a = load_file(str(tmp_path / "sft" / "model.safetensors"))
    b = load_file(str(tmp_path / "seq_kd" / "model.safetensors"))
    for name in a:
        # the same NLL up to summation order (SFT and KD losses take different code paths)
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_seq_kd_trains_on_generated_beams(setup, tiny_model_dir, beams, tmp_path):
    root, _, _ = setup
    summary = train.run(
        tiny_job(
            tmp_path / "seq_kd",
            tiny_model_dir,
            root / "train.jsonl",
            variant=make_variant("seq_kd", {"num_beams": 3}),
            teacher_outputs=str(beams),  # and no teacher model, as rule kd names none
        )
    )
    assert summary["models"]["teacher"]["outputs"] == str(beams)
    assert summary["models"]["teacher"]["sha256"] == to.read_meta(beams)["teacher"]["sha256"]
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    with pytest.raises(ValueError, match="teacher_outputs"):
        train.run(
            tiny_job(
                tmp_path / "none",
                tiny_model_dir,
                root / "train.jsonl",
                variant=make_variant("seq_inter", {"num_beams": 3}),
                teacher=tmp_path / "no_such_teacher",
            )
        )


def test_fd_kl_trains_on_samples_with_the_teacher_loaded(setup, tiny_model_dir, tmp_path):
    """A teacher-sequence objective that reads logits: the samples are its training set and
    the teacher model is loaded (KL(p||q) > 0 against another model)."""
    root, teacher, _ = setup
    samples = tmp_path / "sample-t1-k0-p1"
    to.generate(_job(setup, tiny_model_dir, samples, SAMPLE))
    summary = train.run(
        tiny_job(
            tmp_path / "fd_kl",
            tiny_model_dir,
            root / "train.jsonl",
            variant=make_variant("fd_kl", SAMPLED),
            teacher=teacher,
            teacher_outputs=str(samples),
        )
    )
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert losses and all(0 < loss < 100 for loss in losses)


# --- the rule -----------------------------------------------------------------------------------


def test_dry_run_plans_the_rule_once_per_generation(tmp_path):
    targets = [
        "results/teacher_outputs/teacher/beam5/seed1",
        "results/teacher_outputs/teacher/sample-t1-k0-p1/seed1",
    ]
    cmd = [
        str(SNAKEMAKE), "-n", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path),
        *targets, "--configfile", str(ROOT / "config" / "mini.yaml"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert output.count("rule teacher_outputs:") == 2
    for target in targets:
        assert f"output: {target}\n" in output
    assert "wildcards: model=teacher, generation=sample-t1-k0-p1, seed=1" in output


# --- the optional vLLM engine (a fake vllm module) ----------------------------------------------


class _FakeLLM:
    """Stands in for vllm.LLM, recording its calls; continuations are fixed: an EOS-ended one,
    one whose EOS vLLM left out (shorter than max_tokens), and one cut at max_tokens."""

    def __init__(self, eos: int, **kwargs) -> None:
        self.eos, self.kwargs, self.calls = eos, kwargs, []

    def _continuations(self, max_tokens: int) -> list[list[int]]:
        return [[5, 6, self.eos], [7], [8] * max_tokens]

    def beam_search(self, requests, params):
        self.calls.append(("beam_search", requests, params))
        tails = self._continuations(params.max_tokens)[: params.beam_width]
        return [
            SimpleNamespace(
                sequences=[SimpleNamespace(tokens=r["prompt_token_ids"] + t) for t in tails]
            )
            for r in requests
        ]

    def generate(self, requests, params):
        self.calls.append(("generate", requests, params))
        tails = self._continuations(params[0].max_tokens)
        return [
            SimpleNamespace(outputs=[SimpleNamespace(token_ids=tails[i % 3])])
            for i, _ in enumerate(requests)
        ]


@pytest.fixture
def fake_vllm(monkeypatch, tiny_model_dir):
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    llms = []
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: llms.append(_FakeLLM(eos, **kwargs)) or llms[-1]
    module.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)
    params = types.ModuleType("vllm.sampling_params")
    params.BeamSearchParams = lambda **kwargs: SimpleNamespace(**kwargs)
    module.sampling_params = params
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", params)
    monkeypatch.setattr(models, "load_teacher", lambda *a, **k: pytest.fail("HF teacher loaded"))
    return llms


def test_vllm_engine_beams_and_seeded_samples(setup, tiny_model_dir, tmp_path, fake_vllm):
    eos = tokenizers.load(tiny_model_dir).eos_token_id
    gold = _gold(setup, tiny_model_dir)[0]
    beam = to.generate(
        _job(setup, tiny_model_dir, tmp_path / "beam3", {"num_beams": 3}, engine="vllm")
    )
    (llm,) = fake_vllm
    assert llm.kwargs["seed"] == 3 and llm.kwargs["dtype"] == "float32"
    ((kind, requests, params),) = llm.calls
    assert kind == "beam_search" and vars(params) == {"beam_width": 3, "max_tokens": 10}
    assert [r["prompt_token_ids"] for r in requests] == [to.prompt_ids(g) for g in gold]
    expected = [([5, 6, eos], True), ([7, eos], True), ([8] * 10, False)]
    for line in _lines(tmp_path / "beam3"):
        assert [(h["ids"], h["finished"]) for h in line["hypotheses"]] == expected
    n = len(gold)
    assert beam["counts"] == {"examples": n, "hypotheses": 3 * n, "empty": 0, "truncated": n}
    assert beam["engine"] == "vllm"

    to.generate(_job(setup, tiny_model_dir, tmp_path / "sample", SAMPLE, engine="vllm"))
    ((kind, _, params),) = fake_vllm[1].calls
    assert kind == "generate" and len(params) == n
    assert [p.seed for p in params] == [to.vllm_seed(3, e) for e in range(n)]
    assert len({p.seed for p in params}) == n
    assert vars(params[0]) | {"seed": 0} == {
        "n": 1,
        "temperature": 1.0,
        "top_k": -1,
        "top_p": 1.0,
        "max_tokens": 10,
        "stop_token_ids": [eos],
        "seed": 0,
    }
    lines = _lines(tmp_path / "sample")
    assert [line["hypotheses"][0]["ids"] for line in lines[:3]] == [[5, 6, eos], [7, eos], [8] * 10]
