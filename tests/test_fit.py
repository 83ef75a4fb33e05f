"""sekd.evaluate.validation_fit (issue 11): a trained model's validation NLL of the references and
KL(p||q) of the teacher p to the model q, on tiny models: NLL equals a direct per-example
computation, the KL of a model to itself is 0, and the KL is the true KL (a float64
transcription)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import LANGUAGES, ROOT, SENTENCES

from sekd import models
from sekd.data import batches, prompts
from sekd.evaluate import validation_fit as fit

INIT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer, tiny_records, tmp_path_factory):
    """Two tiny models of one tokenizer (seeds 0 and 1), saved; the tokenizer dir; examples."""
    root = tmp_path_factory.mktemp("fit")
    tiny_tokenizer.save_pretrained(root / "tokenizer")
    dirs = {}
    for seed in (0, 1):
        dirs[seed] = root / f"model{seed}"
        model = models.build_tiny_llama(INIT, tiny_tokenizer, seed=seed)
        models.save(model, tiny_tokenizer, dirs[seed])
    examples = batches.encode_records(tiny_records, tiny_tokenizer, LANGUAGES, 256)
    return {"root": root, "dirs": dirs, "tok": tiny_tokenizer, "examples": examples}


def _load(path):
    return models.load_causal_lm(path).eval()


def _direct(model, teacher, examples):
    """Per example, unpadded, in float64: summed NLL of the labels and summed KL(p||q)."""
    nll, kl, tokens = 0.0, 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]])
            labels = torch.tensor(ex["labels"][1:])
            keep = labels != -100
            log_q = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)[keep]
            nll += -log_q.gather(-1, labels[keep][:, None]).sum().item()
            log_p = torch.log_softmax(teacher(input_ids=ids).logits[0, :-1].double(), -1)[keep]
            kl += (log_p.exp() * (log_p - log_q)).sum().item()
            tokens += int(keep.sum())
    return nll, kl, tokens


def test_nll_and_kl_equal_a_direct_float64_computation(tiny):
    model, teacher = _load(tiny["dirs"][1]), _load(tiny["dirs"][0])
    stats = fit.token_stats(
        model, teacher, tiny["examples"], tiny["tok"].pad_token_id, batch_size=3
    )
    nll, kl, tokens = _direct(model, teacher, tiny["examples"])
    assert stats["tokens"] == tokens > 0
    assert stats["nll_sum"] == pytest.approx(nll, rel=1e-5)
    assert stats["kl_sum"] == pytest.approx(kl, rel=1e-5)
    assert kl > 0  # two different models


def test_kl_of_a_model_to_itself_is_zero(tiny):
    model = _load(tiny["dirs"][0])
    stats = fit.token_stats(model, model, tiny["examples"], tiny["tok"].pad_token_id)
    assert abs(stats["kl_sum"]) < 1e-6 * stats["tokens"]
    alone = fit.token_stats(model, None, tiny["examples"], tiny["tok"].pad_token_id)
    assert alone["kl_sum"] == 0.0 and alone["nll_sum"] == pytest.approx(stats["nll_sum"])


def _valid_files(root):
    files = {}
    for direction in ("de-en", "en-de"):
        path = root / f"{direction}.jsonl"
        src, tgt = (0, 1) if direction == "de-en" else (1, 0)
        lines = [
            json.dumps({"direction": direction, "source": pair[src], "target": pair[tgt]})
            for pair in SENTENCES
        ]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[direction] = str(path)
    return files


def test_fit_writes_token_means_per_direction_and_overall(tiny, tmp_path):
    files = _valid_files(tmp_path)
    tok_dir, (d0, d1) = tiny["root"] / "tokenizer", (tiny["dirs"][0], tiny["dirs"][1])
    result = fit.fit(d1, d0, tok_dir, files, LANGUAGES, 256, batch_size=2)
    per = result["directions"]
    assert set(per) == {"de-en", "en-de"}
    total = sum(v["tokens"] for v in per.values())
    assert result["tokens"] == total
    assert result["nll"] == pytest.approx(sum(v["nll"] * v["tokens"] for v in per.values()) / total)
    assert result["kl"] > 0
    same = fit.fit(d0, d0, tok_dir, files, LANGUAGES, 256)
    assert same["kl"] == 0.0 and same["nll"] > 0  # the teacher's row: KL 0
    out = tmp_path / "fit" / "seed1" / "teacher.json"
    fit.write(result, out)
    assert json.loads(out.read_text())["nll"] == result["nll"]


def test_fit_counts_the_validation_examples_it_drops_and_truncates(tiny, tmp_path):
    files = _valid_files(tmp_path)
    tok, d0 = tiny["tok"], tiny["dirs"][0]
    records = batches.read_records([files["de-en"]])
    prompt_lengths = sorted(
        len(prompts.encode_prompt(tok, prompts.build_prompt(r["source"], "de-en", LANGUAGES)))
        for r in records
    )
    # a length that the shortest prompt fits and the longest does not
    max_length = prompt_lengths[-1]
    dropped = sum(n >= max_length for n in prompt_lengths)
    assert 0 < dropped < len(records)
    result = fit.fit(d0, d0, tiny["root"] / "tokenizer", {"de-en": files["de-en"]}, LANGUAGES,
                     max_length)  # fmt: skip
    per = result["directions"]["de-en"]
    assert (per["examples"], per["dropped"]) == (len(records), dropped)
    assert per["truncated"] == len(records) - dropped  # every kept target is cut
    assert (result["examples"], result["dropped"]) == (len(records), dropped)
    full = fit.fit(d0, d0, tiny["root"] / "tokenizer", files, LANGUAGES, 256)
    assert full["dropped"] == full["truncated"] == 0 and full["examples"] == 2 * len(records)


def test_fit_encodes_the_prompts_as_training_does(tiny, tmp_path, monkeypatch):
    """prompt.response_newline / training.truncation reach the fit's encoding (rule fit passes
    them when not the defaults): its NLL is of the prompts the models were trained on."""
    files = _valid_files(tmp_path)
    d0 = tiny["dirs"][0]
    seen = []
    encode = batches.encode_records

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("response_newline", "truncation") if k in kwargs})
        return encode(*args, **kwargs)

    monkeypatch.setattr(batches, "encode_records", spy)
    valid = {"de-en": files["de-en"]}
    default = fit.fit(d0, d0, tiny["root"] / "tokenizer", valid, LANGUAGES, 256)
    formatting = {"response_newline": False, "truncation": "keep_eos"}
    other = fit.fit(
        d0, d0, tiny["root"] / "tokenizer", valid, LANGUAGES, 256, formatting=formatting
    )
    assert seen == [{}, formatting]
    assert other["tokens"] == default["tokens"] and other["nll"] != default["nll"]
    rules = (ROOT / "workflow" / "rules" / "sensitivity.smk").read_text(encoding="utf-8")
    assert "**JOBS.formatting()," in rules[rules.index("rule fit:") :]


def test_fit_names_a_file_without_target_tokens(tiny, tmp_path):
    empty = tmp_path / "de-en.jsonl"
    empty.write_text("")
    d0 = tiny["dirs"][0]
    with pytest.raises(ValueError, match=r"de-en\.jsonl NLL: no target tokens"):
        fit.fit(d0, d0, tiny["root"] / "tokenizer", {"de-en": str(empty)}, LANGUAGES, 256)


# The tables' validation-fit columns (sekd.report.tables), from made-up files


def _json(path, **values):
    path.write_text(json.dumps(values))
    return str(path)


def _row(tmp_path, system, bleu, fits):
    scores = {
        "en-de": [
            _json(tmp_path / f"{system}-b{i}.json", bleu=b, chrf=b + 30) for i, b in enumerate(bleu)
        ]
    }
    counts = {"examples": 40, "dropped": 0, "truncated": 0}
    fit_files = [
        _json(tmp_path / f"{system}-f{i}.json", nll=nll, kl=kl, **counts)
        for i, (nll, kl) in enumerate(fits)
    ]
    return {"system": system, "run": f"kd/t/{system}", "scores": scores, "comet": None,
            "fit": fit_files}  # fmt: skip


def test_tables_show_validation_nll_and_kl_after_bleu(tmp_path):
    from sekd.report import tables

    rows = [
        _row(tmp_path, "Teacher", [30.0, 30.0], [(1.0, 0.0), (1.2, 0.0)]),
        _row(tmp_path, "Forward KD", [20.0, 22.0], [(2.0, 0.5), (2.2, 0.7)]),
        _row(tmp_path, "Self-Evolution KD", [21.0, 23.0], [(1.9, 0.4), (2.1, 0.4)]),
    ]
    table = tables.results_table(rows, ["en-de"])
    teacher, fkd, _ = table
    assert (teacher["valid_nll"], teacher["valid_kl"]) == (1.1, 0.0)
    assert (fkd["valid_nll"], fkd["valid_kl"]) == (2.1, 0.6)
    assert fkd["valid_nll_std"] == pytest.approx(0.1414, abs=1e-4)
    table = tables.add_delta(table, "Self-Evolution KD", "Forward KD")
    assert table[-1]["valid_kl"] == pytest.approx(-0.2)
    assert table[-1]["valid_nll"] == pytest.approx(-0.1)
    tables.write_csv(table, tmp_path / "t.csv")
    header = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert header.index("valid_nll") > header.index("bleu_avg") and "valid_kl" in header
    md = tables.to_markdown(table, ["en-de"], "T", delta={"system": "SE", "baseline": "FKD"})
    head = next(line for line in md.splitlines() if line.startswith("| System"))
    assert head.endswith("| Avg. BLEU | Avg. chrF | Valid NLL | Valid KL |")
    # 95% intervals over 2 seeds: mean ± 12.7062 · s / √2 (s = 1.4142 for BLEU, 0.1414 for NLL)
    assert (
        "| Forward KD | 21.00 [8.29, 33.71] | 51.00 [38.29, 63.71] | 21.00 [8.29, 33.71] | "
        "51.00 [38.29, 63.71] | 2.100 [0.829, 3.371] | 0.600 [-0.671, 1.871] |"
    ) in md
    assert "| Δ | +1.00 | +1.00 | +1.00 | +1.00 | -0.100 | -0.200 |" in md
    assert "Of the 40 validation examples, 0 dropped" in md
    assert "Valid KL: mean KL(p||q)" in md
    tex = tables.to_latex(table, ["en-de"], "T", "tab:t")
    assert "Valid NLL & Valid KL" in tex


def test_tables_without_fit_files_leave_the_columns_empty_and_hidden(tmp_path):
    from sekd.report import tables

    row = _row(tmp_path, "A", [10.0], [(1.0, 0.1)])
    row.pop("fit")
    (rec,) = tables.results_table([row], ["en-de"])
    assert rec["valid_nll"] == "" and rec["valid_kl"] == ""
    assert "Valid NLL" not in tables.to_markdown([rec], ["en-de"], "T")


def test_a_fit_file_without_kl_is_named(tmp_path):
    from sekd.report import tables

    row = _row(tmp_path, "A", [10.0], [(1.0, 0.1)])
    row["fit"] = [_json(tmp_path / "bad.json", nll=1.0)]
    with pytest.raises(ValueError, match=r"bad\.json"):
        tables.results_table([row], ["en-de"])


def test_every_table_row_reads_its_fit_against_the_tables_teacher():
    from pathlib import Path

    from sekd.plan import study
    from sekd.plan.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    for table in study.table_names(config):
        teacher = config["tables"][table]["teacher"]
        spec = study.table_spec(config, table)
        inputs = study.table_inputs(config, table)
        for row in spec:
            expected = [f"results/fit/{row['run']}/seed{s}/{teacher}.json" for s in config["seeds"]]
            assert row["fit"] == expected and set(expected) <= set(inputs)
