"""Teacher/student compatibility and supply chain (issue 13, classes 3 and 7).

Every model a job loads must share the workflow's tokenizer (results/tokenizer) and cover its
vocabulary, checked before any training step with an error naming the model, the sizes and the
config key; hub models and the COMET checkpoint are pinned by `revision` keys that reach every
download, unpinned ones are named by the plan, and train_summary.json records what was loaded.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import LANGUAGES, TINY_TRAINING, tiny_job

from sekd import models
from sekd.data import alma as data
from sekd.data import tokenizer as tokenizers
from sekd.errors import ConfigError
from sekd.evaluate import comet as sekd_comet
from sekd.plan.config import load_config, unpinned_warnings
from sekd.plan.variants import make_variant
from sekd.train import job as train

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
MINI = ROOT / "config" / "mini.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SEKD = make_variant("sekd", {"lam": 0.5, "beta": 0.5, "gamma": 0.4, "top_k_percent": 20})
INIT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
}
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- config: revision keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {student: {revision: main}}\n", r"'models.student.revision': 'main' is a branch"),
        ("models: {teacher: {revision: master}}\n", r"'models.teacher.revision': 'master' is a"),
        ("models: {teacher_l: {revision: refs/heads/v2}}\n", r"'models.teacher_l.revision': .*"
         " is a branch"),
        ("models: {teacher: {revision: HEAD}}\n", r"'models.teacher.revision': 'HEAD' is a branch"),
        ("scoring: {comet_revision: main}\n", r"'scoring.comet_revision': 'main' is a branch"),
        ("scoring: {comet_model: null, comet_revision: v1}\n",
         r"'scoring.comet_revision': set, but scoring.comet_model is null"),
        ("models: {student: {revision: 'a b'}}\n", r"models.student.revision"),
        ("models: {student: {revision: ''}}\n", r"models.student.revision"),
        ("scoring: {comet_revision: 7}\n", r"scoring.comet_revision"),
    ],
)  # fmt: skip
def test_bad_revisions_stop_the_plan(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(PAPER, write(tmp_path, text))


def test_a_revision_of_a_model_built_from_init_is_refused(tmp_path):
    text = "models: {student: {revision: v1.0}}\n"
    with pytest.raises(ConfigError, match=r"'models.student.revision': a model built from 'init'"):
        load_config(PAPER, MINI, write(tmp_path, text))


def test_a_revision_of_a_local_directory_is_refused(tmp_path):
    (tmp_path / "llama").mkdir()
    text = f"models: {{student: {{pretrained: {tmp_path / 'llama'}, revision: v1.0}}}}\n"
    with pytest.raises(ConfigError, match=r"'models.student.revision': the local path"):
        load_config(PAPER, write(tmp_path, text))


def test_commit_hashes_and_tags_are_accepted_and_silence_the_warning(tmp_path):
    text = (
        f"models: {{student: {{revision: {COMMIT}}}, teacher: {{revision: v1.0}},"
        f" teacher_l: {{revision: {COMMIT}}}}}\nscoring: {{comet_revision: {COMMIT}}}\n"
    )
    config = load_config(PAPER, write(tmp_path, text))
    assert config["models"]["teacher"]["revision"] == "v1.0"
    assert unpinned_warnings(config) == []


def test_the_paper_config_names_each_unpinned_hub_model():
    config = load_config(PAPER)
    assert all(model["revision"] is None for model in config["models"].values())
    warnings = unpinned_warnings(config)
    assert len(warnings) == 4
    for key, source in [
        ("models.student", "huggyllama/llama-7b"),
        ("models.teacher", "huggyllama/llama-13b"),
        ("models.teacher_l", "huggyllama/llama-30b"),
        ("scoring.comet_model", "Unbabel/wmt22-comet-da"),
    ]:
        assert any(w.startswith(f"{key}: hub model {source!r}") for w in warnings), warnings
    assert unpinned_warnings(load_config(PAPER, MINI)) == []  # built models, no COMET


def test_the_plan_prints_the_unpinned_warning_once(tmp_path):
    cmd = [str(SNAKEMAKE), "-n", "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path)]
    proc = subprocess.run([*cmd, "results/tokenizer"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = "models.teacher: hub model 'huggyllama/llama-13b' loads without a revision"
    assert proc.stderr.count(line) == 1, proc.stderr[-2000:]


# --- revisions reach every download ----------------------------------------------------------


def test_the_revision_reaches_the_model_and_tokenizer_downloads(monkeypatch):
    calls = []

    def record(name, **kwargs):
        calls.append((name, kwargs))
        raise RuntimeError("recorded")

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", record)
    monkeypatch.setattr(tokenizers.AutoTokenizer, "from_pretrained", record)
    with pytest.raises(RuntimeError, match="recorded"):
        models.load_causal_lm("org/model", revision=COMMIT)
    with pytest.raises(RuntimeError, match="recorded"):
        models.load_teacher("org/teacher", "float32", False, 10, revision="v1.0")
    with pytest.raises(RuntimeError, match="recorded"):
        tokenizers.load_pretrained("org/model", revision="v2")
    assert [(name, kwargs["revision"]) for name, kwargs in calls] == [
        ("org/model", COMMIT),
        ("org/teacher", "v1.0"),
        ("org/model", "v2"),
    ]
    assert all(kwargs["trust_remote_code"] is False for _, kwargs in calls)


class _FakeComet:
    def __init__(self):
        self.calls = []

    def download_model(self, name, **kwargs):
        self.calls.append((name, kwargs))
        return "/cache/model.ckpt"


def test_the_comet_revision_reaches_the_hub_download(monkeypatch):
    import huggingface_hub

    calls = []

    def snapshot_download(**kwargs):
        calls.append(kwargs)
        return "/cache/snapshots/abc"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    fake = _FakeComet()
    path = sekd_comet._download(fake, "Unbabel/wmt22-comet-da", COMMIT, offline=True)
    assert path == Path("/cache/snapshots/abc/checkpoints/model.ckpt")
    assert calls == [
        {"repo_id": "Unbabel/wmt22-comet-da", "revision": COMMIT, "local_files_only": True}
    ]
    assert fake.calls == []
    # unpinned: comet's own download, as before
    assert sekd_comet._download(fake, "Unbabel/wmt22-comet-da", None, False) == Path(
        "/cache/model.ckpt"
    )


def test_a_comet_revision_for_a_local_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")
    with pytest.raises(ValueError, match=r"scoring.comet_revision: 'v1' pins a hub model"):
        sekd_comet.load_model(ckpt, revision="v1")


# --- tokenizer and vocabulary compatibility --------------------------------------------------


@pytest.fixture(scope="module")
def files(tiny_records, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data.write_jsonl(tiny_records, root / "train.jsonl")
    data.write_jsonl(tiny_records[:4], root / "valid.jsonl")
    return root


@pytest.fixture(scope="module")
def small_tokenizer(tiny_records, tiny_tokenizer):
    """Another BPE with fewer entries than the workflow's tokenizer."""
    texts = [r["target"] for r in tiny_records]
    tok = tokenizers.train_bpe(texts, vocab_size=270, min_frequency=1)
    assert len(tok) < len(tiny_tokenizer)
    return tok


@pytest.fixture(scope="module")
def other_tokenizer(tiny_tokenizer):
    """A BPE of exactly the workflow tokenizer's size, trained on other text: other ids."""
    texts = ["zebra quartz jumps over vexing fog " * 3, "Völker, hört die Signale! " * 3] * 8
    size = len(tiny_tokenizer)
    tok = tokenizers.train_bpe(texts, vocab_size=size, min_frequency=1)
    words = [f"w{i}x{i * 7}q" for i in range(size)]
    while len(tok) < size:  # pad to the same size with tokens of its own
        tok.add_tokens(words[: size - len(tok)])
    assert len(tok) == size and tok.get_vocab() != tiny_tokenizer.get_vocab()
    return tok


def _model_dir(root: Path, tok, *, with_tokenizer: bool = True) -> Path:
    model = models.build_tiny_llama(INIT, tok, seed=0)
    if with_tokenizer:
        models.save(model, tok, root)
    else:
        model.save_pretrained(root, safe_serialization=True)
    return root


def _job(variant, out: Path, files: Path, tokenizer_dir, base, teacher=None, **fields):
    return tiny_job(
        out,
        base,
        files / "train.jsonl",
        variant=variant,
        teacher=teacher,
        valid_file=None if teacher else files / "valid.jsonl",
        tokenizer_dir=tokenizer_dir,
        training={"epochs": 1},
        **fields,
    )


def _refuse_training(monkeypatch):
    def no_step(*args, **kwargs):
        raise AssertionError("trained before the compatibility check")

    monkeypatch.setattr(train.DistillTrainer, "train", no_step)


def test_a_model_smaller_than_the_tokenizer_stops_its_sft_by_name(
    files, tiny_model_dir, tiny_tokenizer, small_tokenizer, tmp_path, monkeypatch
):
    _refuse_training(monkeypatch)
    base = _model_dir(tmp_path / "small", small_tokenizer, with_tokenizer=False)
    out = tmp_path / "out"
    job = _job("sft", out, files, tiny_model_dir, base, model_key="models.teacher")
    message = (
        rf"models.teacher \({base}\): the model's vocabulary has {len(small_tokenizer)} entries, "
        rf"fewer than the workflow's tokenizer \(results/tokenizer, {len(tiny_tokenizer)} entries\)"
    )
    with pytest.raises(ValueError, match=message):
        train.run(job)
    assert not out.exists()


def test_a_base_model_with_another_tokenizer_stops_its_sft(
    files, tiny_model_dir, other_tokenizer, tmp_path, monkeypatch
):
    _refuse_training(monkeypatch)
    base = _model_dir(tmp_path / "other", other_tokenizer)
    job = _job("sft", tmp_path / "out", files, tiny_model_dir, base, model_key="models.student")
    with pytest.raises(ValueError, match=rf"models.student.pretrained \({base}\): its tokenizer"):
        train.run(job)


def test_a_teacher_with_another_tokenizer_stops_kd_naming_both(
    files, tiny_model_dir, tiny_tokenizer, other_tokenizer, tmp_path, monkeypatch
):
    _refuse_training(monkeypatch)
    teacher = _model_dir(tmp_path / "teacher", other_tokenizer)
    job = _job(
        SEKD, tmp_path / "out", files, tiny_model_dir, tiny_model_dir, teacher,
        teacher_key="models.teacher (SFT'd)",
    )  # fmt: skip
    mine = models.tokenizer_fingerprint(tiny_tokenizer)[:12]
    theirs = models.tokenizer_fingerprint(other_tokenizer)[:12]
    message = (
        rf"models.teacher \(SFT'd\) \({teacher}\): its tokenizer \({len(other_tokenizer)} "
        rf"entries, vocabulary sha256 {theirs}\) differs from the workflow's "
        rf"\(results/tokenizer, {len(tiny_tokenizer)} entries, sha256 {mine}\): \d+ of the "
        r"workflow's tokens are missing or have other ids"
    )
    with pytest.raises(ValueError, match=message):
        train.run(job)


def test_a_teacher_smaller_than_the_tokenizer_stops_kd(
    files, tiny_model_dir, small_tokenizer, tmp_path, monkeypatch
):
    _refuse_training(monkeypatch)
    teacher = _model_dir(tmp_path / "teacher", small_tokenizer, with_tokenizer=False)
    job = _job(
        SEKD, tmp_path / "out", files, tiny_model_dir, tiny_model_dir, teacher,
        teacher_key="models.teacher (SFT'd)",
    )  # fmt: skip
    message = (
        rf"models.teacher \(SFT'd\) \({teacher}\): the teacher's vocabulary "
        rf"\({len(small_tokenizer)}\) is smaller than the student's"
    )
    with pytest.raises(ValueError, match=message):
        train.run(job)


def test_special_tokens_are_part_of_the_comparison(tiny_model_dir, tiny_tokenizer, tmp_path):
    other = tokenizers.load(tiny_model_dir)
    other.eos_token = other.unk_token
    other.save_pretrained(tmp_path)
    models.check_tokenizer(tiny_model_dir, tiny_tokenizer, "k")  # same: passes
    with pytest.raises(ValueError, match=r"its tokenizer .*its eos_token is '<unk>'"):
        models.check_tokenizer(tmp_path, tiny_tokenizer, "models.teacher")


def test_a_tokenizer_extended_with_higher_ids_is_accepted(tiny_model_dir, tiny_tokenizer, tmp_path):
    """A padded teacher (extra tokens after the workflow's, another pad) shares its ids."""
    padded = tokenizers.load(tiny_model_dir)
    padded.add_special_tokens({"pad_token": "[PAD]"})
    padded.add_tokens(["<extra_0>", "<extra_1>"])
    padded.save_pretrained(tmp_path)
    assert len(padded) == len(tiny_tokenizer) + 3
    models.check_tokenizer(tmp_path, tiny_tokenizer, "models.teacher")


def test_the_plan_compares_the_saved_tokenizers_the_jobs_compare(
    tiny_model_dir, tiny_teacher_dir, tiny_tokenizer, other_tokenizer, tmp_path
):
    """The plan's reading of tokenizer.json (no transformers) agrees with the jobs' check on what
    models.save writes: the same tokenizer and one extended after it pass, another one stops the
    plan naming the key and the file."""

    def plan(teacher: Path) -> dict:
        text = (
            f"models: {{student: {{pretrained: {tiny_model_dir}}}, "
            f"teacher: {{pretrained: {teacher}}}}}\n"
        )
        return load_config(PAPER, write(tmp_path, text), environ={})

    assert plan(tiny_teacher_dir)["models"]["teacher"]["pretrained"] == str(tiny_teacher_dir)
    padded = tokenizers.load(tiny_model_dir)
    padded.add_tokens(["<extra_0>", "<extra_1>"])
    padded.save_pretrained(tmp_path / "padded")
    models.check_tokenizer(tmp_path / "padded", tiny_tokenizer, "models.teacher")
    assert plan(tmp_path / "padded")
    other = _model_dir(tmp_path / "other", other_tokenizer)
    with pytest.raises(ValueError, match=r"its tokenizer"):
        models.check_tokenizer(other, tiny_tokenizer, "models.teacher")
    with pytest.raises(
        ConfigError,
        match=rf"config key 'models.teacher.pretrained': {other}/tokenizer.json gives \d+ of the "
        rf"workflow's tokens other ids or none .* than {tiny_model_dir}/tokenizer.json",
    ):
        plan(other)


def test_decoding_refuses_a_model_smaller_than_its_tokenizer(
    tiny_tokenizer, small_tokenizer, tmp_path
):
    from sekd.evaluate import decode

    model_dir = _model_dir(tmp_path / "small", small_tokenizer, with_tokenizer=False)
    options = {"num_beams": 1, "max_new_tokens": 4, "batch_size": 2}
    with pytest.raises(ValueError, match=r"the model to decode .*fewer than"):
        decode.translate_with_engine(
            str(model_dir), tiny_tokenizer, ["Hallo"], "de-en", LANGUAGES, options
        )


# --- what was loaded, in train_summary.json --------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_train_summary_records_the_models_loaded(files, tiny_model_dir, tmp_path, monkeypatch):
    calls = []
    load = models.AutoModelForCausalLM.from_pretrained

    def record(name, **kwargs):
        calls.append((name, kwargs.get("revision")))
        return load(name, **kwargs)

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", record)
    sft = tmp_path / "sft"
    job = _job("sft", sft, files, tiny_model_dir, tiny_model_dir, revision="v1.0")
    summary = train.run(job)
    assert calls == [(str(tiny_model_dir), "v1.0")]
    base = {
        "source": str(tiny_model_dir),
        "revision": "v1.0",
        "commit": None,  # a local directory: no hub commit, its weights' sha256 instead
        "sha256": {"model.safetensors": _sha256(tiny_model_dir / "model.safetensors")},
    }
    assert summary["models"] == {"base": base}
    assert json.loads((sft / "train_summary.json").read_text())["models"] == {"base": base}

    kd = tmp_path / "kd"
    summary = train.run(_job(SEKD, kd, files, tiny_model_dir, tiny_model_dir, sft))
    assert summary["models"]["teacher"] == {
        "source": str(sft),
        "revision": None,
        "commit": None,
        "sha256": {"model.safetensors": _sha256(sft / "model.safetensors")},
    }
    assert summary["models"]["base"]["revision"] is None


def test_the_hub_commit_is_recorded_when_reported(tiny_model_dir):
    model = models.load_causal_lm(tiny_model_dir)
    model.config._commit_hash = COMMIT
    record = models.provenance("org/model", COMMIT, model)
    assert record == {"source": "org/model", "revision": COMMIT, "commit": COMMIT, "sha256": None}


def test_a_teacher_store_refuses_a_teacher_with_another_tokenizer(
    files, tiny_model_dir, other_tokenizer, tmp_path
):
    from sekd.teacher import store as teacher_store

    teacher = _model_dir(tmp_path / "teacher", other_tokenizer)
    out = tmp_path / "store"
    job = teacher_store.StoreJob(
        teacher_model=str(teacher),
        student_model=str(tiny_model_dir),
        tokenizer_dir=str(tiny_model_dir),
        train_files=[str(files / "train.jsonl")],
        languages=LANGUAGES,
        max_length=TINY_TRAINING["max_length"],
        out_dir=str(out),
        mode="sparse",
        teacher_key="models.teacher (SFT'd)",
    )
    with pytest.raises(ValueError, match=rf"models.teacher \(SFT'd\) \({teacher}\): its tokenizer"):
        teacher_store.build(job)
    assert not out.exists() and not Path(f"{out}.tmp").exists()


def test_comet_records_the_revision_and_the_snapshot_commit(tmp_path):
    ckpt = tmp_path / "snapshots" / COMMIT / "checkpoints" / "model.ckpt"
    assert sekd_comet._snapshot_commit(ckpt) == COMMIT
    assert sekd_comet._snapshot_commit(tmp_path / "model.ckpt") is None

    class Output:
        scores, system_score = [0.5], 0.5

    class Model:
        sekd_name, sekd_revision, sekd_commit = "Unbabel/wmt22-comet-da", "v1", COMMIT

        def predict(self, samples, **kwargs):
            return Output()

    result = sekd_comet.score(Model(), ["a"], ["b"], ["c"], gpus=0)
    assert (result["model_revision"], result["model_commit"]) == ("v1", COMMIT)


def test_a_local_model_smaller_than_a_local_tokenizer_stops_the_plan(
    tiny_model_dir, tiny_tokenizer, tmp_path
):
    from sekd.plan.config import _local_tokenizer_size

    assert _local_tokenizer_size(Path(tiny_model_dir)) == len(tiny_tokenizer)
    small = tmp_path / "small"
    small.mkdir()
    (small / "config.json").write_text(json.dumps({"vocab_size": 300}))
    text = (
        f"models: {{student: {{pretrained: {tiny_model_dir}}}, teacher: {{pretrained: {small}}}}}\n"
    )
    message = (
        rf"'models.teacher.pretrained': {small} has vocab_size 300 \(config.json\), fewer than "
        rf"the {len(tiny_tokenizer)} entries of the workflow's tokenizer"
    )
    with pytest.raises(ConfigError, match=message):
        load_config(PAPER, write(tmp_path, text))
    (small / "config.json").write_text(json.dumps({"vocab_size": len(tiny_tokenizer) + 8}))
    assert load_config(PAPER, write(tmp_path, text))["models"]["teacher"]["pretrained"]
