"""The teacher store (sekd.teacher.store): names, unbiased sparse sampling, the exact-entropy
correction of d, building and reading a store, and KD training from it."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import LANGUAGES, TINY_TRAINING
from safetensors.torch import load_file

from sekd import models
from sekd.data import alma as data
from sekd.data import batches
from sekd.data import tokenizer as tokenizers
from sekd.plan import run_names as runs
from sekd.plan.variants import make_variant
from sekd.teacher import store as ts
from sekd.train import job as train
from sekd.train.losses import distill_loss

KD = {"lam": 0.5, "beta": 0.5, "gamma": 0.4, "top_k_percent": 20}


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "name"),
    [
        ({"mode": "online"}, None),
        ({"mode": "full"}, "full"),
        ({"mode": "sparse", "samples": 64, "temperature": 1.0}, "sparse64"),
        ({"mode": "sparse", "samples": 12, "temperature": 0.8}, "sparse12t0.8"),
    ],
)
def test_source_names(store, name):
    assert runs.source_name(store) == name
    if name is not None:
        assert re.fullmatch(runs.SOURCE_PATTERN, name)


def test_bad_source_names_are_refused():
    with pytest.raises(ValueError, match=r"teacher_store\.mode"):
        runs.source_name({"mode": "topk"})


def test_reverse_kd_keeps_the_online_teacher_under_a_sparse_store():
    sparse = {"mode": "sparse", "samples": 64, "temperature": 1.0}
    assert runs.teacher_segment("teacher", "sekd", sparse) == "teacher.sparse64"
    assert runs.teacher_segment("teacher", "reverse_kd", sparse) == "teacher"
    assert runs.teacher_segment("teacher", "reverse_kd", {"mode": "full"}) == "teacher.full"
    assert runs.teacher_segment("teacher", "sekd", {"mode": "online"}) == "teacher"
    assert runs.split_teacher("teacher_l.sparse64") == ("teacher_l", "sparse64")
    assert runs.split_teacher("teacher") == ("teacher", None)


# --- sampling and the entropy correction --------------------------------------------------------


def _log_p(n, V, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, V, generator=g) * scale).log_softmax(-1)


def test_sparse_sample_is_an_unbiased_estimate_of_p():
    log_p = _log_p(3, 12, seed=0)
    p = log_p.exp().double()
    rounds, k = 4000, 8
    total = torch.zeros_like(p)
    for r in range(rounds):
        ids, w = ts.sample_sparse(log_p, k, 1.0, torch.Generator().manual_seed(r))
        assert ids.shape == w.shape == (3, k)
        assert torch.allclose(w.sum(-1), torch.ones(3))
        total += ts.dense_log_probs(ids, w, 12).exp().double()
    mean = total / rounds
    # each entry's estimate has std sqrt(p(1-p)/(k·rounds)); 5 sigma
    sigma = (p * (1 - p) / (k * rounds)).sqrt()
    assert ((mean - p).abs() <= 5 * sigma + 1e-9).all()


def test_top_k_would_be_biased_and_sampling_is_not():
    """The reason for sampling: a top-k cut renormalised over k ids overweights the head."""
    log_p = _log_p(1, 50, seed=1, scale=1.0)
    p = log_p.exp()
    top = p.topk(8)
    top_k = torch.zeros_like(p).scatter_(-1, top.indices, top.values / top.values.sum())
    head = top.indices[0, 0]
    assert top_k[0, head] > p[0, head] * 1.05
    mean = torch.stack(
        [
            ts.dense_log_probs(
                *ts.sample_sparse(log_p, 8, 1.0, torch.Generator().manual_seed(r)), 50
            ).exp()[0, head]
            for r in range(3000)
        ]
    ).mean()
    assert abs(mean - p[0, head]) < 0.02


def test_tempered_proposal_is_consistent():
    log_p = _log_p(2, 10, seed=2)
    ids, w = ts.sample_sparse(log_p, 200_000, 0.7, torch.Generator().manual_seed(0))
    estimate = ts.dense_log_probs(ids, w, 10).exp()
    assert torch.allclose(estimate, log_p.exp(), atol=5e-3)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.5, 1.0])
def test_target_negentropy_matches_direct_sum(lam):
    log_p = _log_p(6, 20, seed=3).double()
    p = log_p.exp()
    labels = torch.tensor([0, 5, 19, 3, 3, 7])
    y = torch.nn.functional.one_hot(labels, 20).double()
    target = (1 - lam) * y + lam * p
    direct = torch.special.xlogy(target, target).sum(-1)
    entropy = -(p * log_p).sum(-1)
    formula = ts.target_negentropy(entropy, p.gather(-1, labels[:, None])[:, 0], lam)
    assert torch.allclose(formula, direct, atol=1e-12)


def test_entropy_correction_makes_d_unbiased():
    """E[d with the offset] = d of the exact teacher; without it d is biased high (a sample
    has less entropy than p, so Σ ỹ log ỹ is too large)."""
    torch.manual_seed(0)
    V, lam = 30, 0.5
    log_p = _log_p(4, V, seed=4, scale=1.0)
    s = torch.randn(1, 4, V) * 2
    labels = torch.tensor([[1, 7, 29, 4]])
    exact = distill_loss(s, log_p[None], labels, "noevo_kd", lam=lam).difficulty[0].double()
    fields = {
        "entropy": -(log_p.exp() * log_p).sum(-1),
        "label_logprob": log_p.gather(-1, labels[0][:, None])[:, 0],
    }
    corrected, plain = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    rounds = 2000
    for r in range(rounds):
        ids, w = ts.sample_sparse(log_p, 8, 1.0, torch.Generator().manual_seed(r))
        teacher = ts.dense_log_probs(ids, w, V)[None]
        offset = ts.difficulty_offset({**fields, "ids": ids, "weights": w}, labels[0], lam)
        out = distill_loss(s, teacher, labels, "noevo_kd", lam=lam, difficulty_offset=offset[None])
        corrected += out.difficulty[0].double()
        plain += distill_loss(s, teacher, labels, "noevo_kd", lam=lam).difficulty[0].double()
    corrected, plain = corrected / rounds, plain / rounds
    assert torch.allclose(corrected, exact, atol=0.03), (corrected, exact)
    assert ((plain - exact) > 0.1).all(), (plain, exact)


# --- building and reading -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tiny_records, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    tok = tokenizers.load(tiny_model_dir)
    init = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2}
    teacher = root / "teacher"
    models.save(
        models.build_tiny_llama({**init, "num_attention_heads": 2}, tok, seed=7), tok, teacher
    )
    return root, teacher


def _store_job(setup, tiny_model_dir, out, mode, **kw):
    root, teacher = setup
    return ts.StoreJob(
        teacher_model=str(teacher),
        student_model=str(tiny_model_dir),
        tokenizer_dir=str(tiny_model_dir),
        train_files=[str(root / "train.jsonl")],
        languages=LANGUAGES,
        max_length=TINY_TRAINING["max_length"],
        out_dir=str(out),
        mode=mode,
        **{"samples": 16, "batch_size": 3, **kw},
    )


@pytest.fixture(scope="module")
def stores(setup, tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("built")
    out = {}
    for mode in ("full", "sparse"):
        ts.build(_store_job(setup, tiny_model_dir, root / mode, mode))
        out[mode] = root / mode
    return out


def _teacher_rows(setup, tiny_model_dir, examples):
    """log p of the teacher at every example's target tokens, computed here directly."""
    _, teacher = setup
    model = models.load_causal_lm(teacher).eval()
    rows = []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex["input_ids"]])
            log_p = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
            keep = torch.tensor(ex["labels"][1:]) != -100
            rows.append((log_p[keep], torch.tensor(ex["labels"][1:])[keep]))
    return rows


def _examples(setup, tiny_model_dir):
    root, _ = setup
    tok = tokenizers.load(tiny_model_dir)
    records = data.read_jsonl(root / "train.jsonl")
    return batches.encode_records(records, tok, LANGUAGES, TINY_TRAINING["max_length"])


def test_full_store_holds_the_teachers_log_probs(setup, tiny_model_dir, stores):
    store = ts.TeacherStore(stores["full"])
    examples = _examples(setup, tiny_model_dir)
    store.check(examples, store.vocab_size)
    meta = json.loads((stores["full"] / "store.json").read_text())
    assert meta["num_examples"] == len(examples) and meta["mode"] == "full"
    assert meta["num_tokens"] == sum(ts.target_counts(examples))
    for e, (log_p, _) in enumerate(_teacher_rows(setup, tiny_model_dir, examples)):
        rows = store.rows([e])
        assert rows["store_logprobs"].dtype == torch.int16  # bits: no cast to bf16 in transit
        stored = ts.decode_fields(rows)["logprobs"]
        assert stored.dtype == torch.float16 and stored.shape == log_p.shape
        assert torch.allclose(stored.float(), log_p, atol=1e-2, rtol=1e-3)


def test_sparse_store_holds_samples_and_exact_label_and_entropy(setup, tiny_model_dir, stores):
    store = ts.TeacherStore(stores["sparse"])
    examples = _examples(setup, tiny_model_dir)
    for e, (log_p, labels) in enumerate(_teacher_rows(setup, tiny_model_dir, examples)):
        rows = ts.decode_fields(store.rows([e]))
        w, ids = rows["weights"], rows["ids"]
        assert ids.shape == (log_p.shape[0], 16) and ids.dtype == torch.int32
        assert torch.allclose(w.sum(-1), torch.ones(len(w)))
        assert ((w * 16).round() == w * 16).all()  # counts / K with τ = 1
        drawn = w > 0
        assert (log_p.gather(-1, ids.long())[drawn] > -30).all()  # drawn ids have mass
        expected = log_p.gather(-1, labels[:, None])[:, 0]
        assert torch.allclose(rows["label_logprob"], expected, atol=1e-5)
        entropy = -(log_p.exp() * log_p).sum(-1)
        assert torch.allclose(rows["entropy"], entropy, atol=1e-5)


def test_sparse_store_is_deterministic_and_seeded(setup, tiny_model_dir, stores, tmp_path):
    ts.build(_store_job(setup, tiny_model_dir, tmp_path / "again", "sparse"))
    ts.build(_store_job(setup, tiny_model_dir, tmp_path / "seed2", "sparse", seed=2))
    first = np.load(stores["sparse"] / "ids.npy")
    assert np.array_equal(first, np.load(tmp_path / "again" / "ids.npy"))
    assert not np.array_equal(first, np.load(tmp_path / "seed2" / "ids.npy"))
    assert not list(tmp_path.glob("*.tmp"))


def test_a_store_of_another_training_set_is_refused(setup, tiny_model_dir, stores):
    store = ts.TeacherStore(stores["sparse"])
    examples = _examples(setup, tiny_model_dir)
    with pytest.raises(ValueError, match="another training set"):
        store.check(examples[:-1], store.vocab_size)
    changed = [dict(ex) for ex in examples]
    changed[0] = {**changed[0], "input_ids": [*changed[0]["input_ids"][:-1], 5]}
    with pytest.raises(ValueError, match="rebuild the store"):
        store.check(changed, store.vocab_size)
    with pytest.raises(ValueError, match="vocabulary"):
        store.check(examples, store.vocab_size + 1)


def test_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no store\.json"):
        ts.TeacherStore(tmp_path)


# --- a broken teacher (issue 23, item 5) ---------------------------------------------------------


@pytest.fixture(scope="module")
def nan_teacher(setup, tiny_model_dir, tmp_path_factory):
    """The store tests' teacher with NaN output weights: every logit is NaN."""
    _, teacher = setup
    model = models.load_causal_lm(teacher)
    with torch.no_grad():
        model.lm_head.weight.fill_(math.nan)
    path = tmp_path_factory.mktemp("nan_teacher")
    models.save(model, tokenizers.load(tiny_model_dir), path)
    return path


@pytest.mark.parametrize("mode", ["full", "sparse"])
def test_a_nan_teacher_stops_the_store_naming_teacher_batch_and_store(
    setup, tiny_model_dir, nan_teacher, tmp_path, mode
):
    """Sparse mode used to fail in torch.multinomial ("invalid multinomial distribution"); full
    mode wrote NaN into the store."""
    from sekd.errors import NonFiniteError

    job = _store_job(setup, tiny_model_dir, tmp_path / mode, mode, teacher_key="models.t (SFT'd)")
    job.teacher_model = str(nan_teacher)
    with pytest.raises(NonFiniteError) as caught:
        ts.build(job)
    message = str(caught.value)
    assert message.startswith(
        f"teacher store {tmp_path / mode}: models.t (SFT'd) ({nan_teacher}): the teacher's "
        "logits hold NaN or inf ("
    )
    assert re.search(r"\d+ NaN, 0 inf entries\) at \d+ target token\(s\)", message)
    assert re.search(r"training example\(s\) \[\d+, \d+, \d+\] \(batch 1 of \d+\)", message)
    assert not (tmp_path / mode).exists()


def _poison_first_call(model, position: int, value: float):
    """A forward hook: `value` in one logit of the first call's first row at `position`."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == 1:
            output.logits[0, position, 5] = value
        return output

    model.register_forward_hook(hook)
    return model


def test_an_inf_logit_names_its_example(monkeypatch, setup, tiny_model_dir, tmp_path):
    """One inf at the last target token of the first batch's first row: the longest example."""
    from sekd.errors import NonFiniteError

    load = models.load_teacher
    monkeypatch.setattr(
        models, "load_teacher", lambda *a, **k: _poison_first_call(load(*a, **k), -2, math.inf)
    )
    examples = _examples(setup, tiny_model_dir)
    longest = max(range(len(examples)), key=lambda e: len(examples[e]["input_ids"]))
    with pytest.raises(NonFiniteError, match=re.escape(
        f"(0 NaN, 1 inf entries) at 1 target token(s) of training example(s) [{longest}] "
        "(batch 1 of"
    )):  # fmt: skip
        ts.build(_store_job(setup, tiny_model_dir, tmp_path / "sparse", "sparse"))


def test_nan_at_a_prompt_position_is_not_read(monkeypatch, setup, tiny_model_dir, tmp_path):
    """Logits at positions whose next token is not a target (the prompt) are never stored."""
    load = models.load_teacher
    monkeypatch.setattr(
        models, "load_teacher", lambda *a, **k: _poison_first_call(load(*a, **k), 0, math.nan)
    )
    meta = ts.build(_store_job(setup, tiny_model_dir, tmp_path / "sparse", "sparse"))
    assert np.isfinite(np.load(tmp_path / "sparse" / "weights.npy")).all()
    assert meta["num_tokens"] > 0


# --- training from a store ----------------------------------------------------------------------


def _kd_job(setup, tiny_model_dir, out, variant, teacher=None, store=None):
    root, _ = setup
    return train.TrainJob(
        variant=variant.name,
        plan=variant,
        base_model=str(tiny_model_dir),
        tokenizer_dir=str(tiny_model_dir),
        train_files=[str(root / "train.jsonl")],
        teacher_model=str(teacher) if teacher else None,
        teacher_store=str(store) if store else None,
        out_dir=str(out),
        checkpoint_dir=str(out) + "-checkpoints",
        languages=LANGUAGES,
        training=TINY_TRAINING,
        seed=1,
    )


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_kd_from_a_full_store_trains_like_the_online_teacher(
    setup, tiny_model_dir, stores, tmp_path
):
    variant = make_variant("forward_kd", KD)
    _, teacher = setup
    online = train.run(_kd_job(setup, tiny_model_dir, tmp_path / "online", variant, teacher))
    stored = train.run(
        _kd_job(setup, tiny_model_dir, tmp_path / "store", variant, store=stores["full"])
    )
    losses = lambda s: [e["loss"] for e in s["log_history"] if "loss" in e]  # noqa: E731
    assert losses(online) == pytest.approx(losses(stored), rel=1e-3)
    a, b = _weights(tmp_path / "online"), _weights(tmp_path / "store")
    base = _weights(tiny_model_dir)
    for key in a:
        moved = (a[key] - base[key]).norm()
        assert (a[key] - b[key]).norm() <= 1e-2 * moved + 1e-6, key
    assert len(stored["step_seconds"]) == stored["global_steps"]


def test_kd_from_a_sparse_store_trains_sekd(setup, tiny_model_dir, stores, tmp_path):
    variant = make_variant("sekd", KD)
    summary = train.run(
        _kd_job(setup, tiny_model_dir, tmp_path / "kd", variant, store=stores["sparse"])
    )
    fractions = [e["hard_fraction"] for e in summary["log_history"] if "hard_fraction" in e]
    assert fractions and all(0.0 <= f <= 1.0 for f in fractions)
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    assert all(math.isfinite(x) for x in losses)
    base = _weights(tiny_model_dir)
    trained = _weights(tmp_path / "kd")
    assert any(not torch.equal(base[k], trained[k]) for k in base)


def test_reverse_kd_is_refused_by_a_sparse_store(setup, tiny_model_dir, stores, tmp_path):
    variant = make_variant("reverse_kd", KD)
    with pytest.raises(ValueError, match="full distribution"):
        train.run(_kd_job(setup, tiny_model_dir, tmp_path / "kd", variant, store=stores["sparse"]))
    assert not (tmp_path / "kd").exists()


# --- fidelity -----------------------------------------------------------------------------------


def _fidelity(setup, tiny_model_dir, store):
    from sekd.teacher.store_fidelity import compare_losses

    root, teacher = setup
    return compare_losses(
        teacher_model=str(teacher),
        store_dir=str(store),
        student_model=str(tiny_model_dir),
        tokenizer_dir=str(tiny_model_dir),
        train_files=[str(root / "train.jsonl")],
        languages=LANGUAGES,
        max_length=TINY_TRAINING["max_length"],
        objectives=["forward_kd", "sekd", "sekd_topk"],
        kd=KD,
        examples=8,
        batch_size=3,
    )


def test_fidelity_of_a_full_store_is_exact_up_to_fp16(setup, tiny_model_dir, stores):
    result = _fidelity(setup, tiny_model_dir, stores["full"])
    assert result["examples"] == 8 and result["store"]["mode"] == "full"
    for objective, r in result["objectives"].items():
        assert r["tokens"] > 0
        assert abs(r["loss_relative_difference"]) < 1e-3, objective
        assert r["grad_cosine"] > 0.9999, objective
    assert result["objectives"]["forward_kd"]["split_agreement"] is None
    sekd = result["objectives"]["sekd"]
    assert sekd["split_agreement"] > 0.95
    assert sekd["hard_fraction_online"] == pytest.approx(sekd["hard_fraction_store"], abs=0.05)


def test_fidelity_of_a_sparse_store_and_markdown(setup, tiny_model_dir, stores, tmp_path):
    from sekd.report.store_fidelity import fidelity_report, to_markdown

    result = _fidelity(setup, tiny_model_dir, stores["sparse"])
    for r in result["objectives"].values():
        # a random tiny teacher is near-uniform over 400 ids: 16 draws are a noisy estimate
        assert 0 < r["grad_cosine"] <= 1 + 1e-9
        assert math.isfinite(r["loss_difference"])
    sekd = result["objectives"]["sekd"]
    assert 0 <= sekd["split_agreement"] <= 1
    assert 0 <= sekd["split_agreement_without_entropy_correction"] <= 1
    (tmp_path / "loss.json").write_text(json.dumps(result))
    scores = {}
    for kind, value in (("online", 10.0), ("store", 9.5)):
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps({"bleu": value}))
        scores[kind] = {"de-en": [str(path)]}
    spec = {
        "teacher": "teacher",
        "source": "sparse16",
        "loss": str(tmp_path / "loss.json"),
        "objectives": {"sekd": scores},
    }
    report = fidelity_report(spec)
    assert report["bleu"]["sekd"]["directions"]["de-en"]["difference"] == pytest.approx(-0.5)
    assert report["bleu"]["sekd"]["mean_difference"] == pytest.approx(-0.5)
    md = to_markdown(report)
    assert "| sekd | de-en | 10.00 | 9.50 | -0.50 |" in md
    assert "split agreement" in md
