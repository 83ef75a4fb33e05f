"""COMET scoring (§4.3) through the real unbabel-comet loading and predict code, offline.

The checkpoint is a tiny untrained RegressionMetric shaped like Unbabel/wmt22-comet-da (XLM-R
encoder, layer "mix" with sparsemax, avg pooling, feed-forward estimator) over a 2-layer XLM-R
with a sentencepiece vocabulary trained here, saved in the layout `comet.load_from_checkpoint`
expects: <dir>/hparams.yaml and <dir>/checkpoints/model.ckpt. Sockets are refused throughout.
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sekd.evaluate import comet as sekd_comet

pytestmark = [
    pytest.mark.comet,  # runs in COMET's own venv (.venv-comet): `make test`
    pytest.mark.filterwarnings("ignore:pkg_resources is deprecated:UserWarning"),
    pytest.mark.filterwarnings("ignore:The `srun` command is available"),
    pytest.mark.filterwarnings("ignore:`isinstance.treespec, LeafSpec.` is deprecated"),
]

SOURCES = [
    "Das Haus ist klein.",
    "Ich trinke gern Kaffee.",
    "Der Hund schläft im Garten.",
    "Wir fahren morgen nach Berlin.",
    "Sie liest ein langes Buch.",
]
REFERENCES = [
    "The house is small.",
    "I like to drink coffee.",
    "The dog is sleeping in the garden.",
    "We are going to Berlin tomorrow.",
    "She is reading a long book.",
]
HYPOTHESES = [
    "The house is small.",
    "I drink coffee gladly.",
    "The dog sleeps in the garden.",
    "Tomorrow we go to Berlin.",
    "She reads a long book.",
]
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# wmt22-comet-da's hparams.yaml, with a tiny estimator.
HPARAMS = {
    "activations": "Tanh",
    "batch_size": 16,
    "dropout": 0.1,
    "encoder_learning_rate": 1.0e-06,
    "encoder_model": "XLM-RoBERTa",
    "final_activation": None,
    "hidden_sizes": [64, 32],
    "keep_embeddings_frozen": True,
    "layer": "mix",
    "layer_norm": False,
    "layer_transformation": "sparsemax",
    "layerwise_decay": 0.95,
    "learning_rate": 1.5e-05,
    "loss": "mse",
    "nr_frozen_epochs": 0.3,
    "optimizer": "AdamW",
    "pool": "avg",
    "warmup_steps": 0,
}


def _refuse_network(mp: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        raise OSError(f"test_comet: network access attempted ({address!r})")

    mp.setattr(socket.socket, "connect", connect)
    for name, value in OFFLINE.items():
        mp.setenv(name, value)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    _refuse_network(monkeypatch)


def _train_sentencepiece(path: Path) -> Path:
    import sentencepiece as spm

    corpus = path / "corpus.txt"
    corpus.write_text("\n".join((SOURCES + REFERENCES + HYPOTHESES) * 4) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(path / "spm"),
        vocab_size=120,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return path / "spm.model"


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    return _train_sentencepiece(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def comet_dir(spm_model, tmp_path_factory) -> Path:
    """A tiny wmt22-comet-da-shaped COMET model directory, built once for the module."""
    with pytest.MonkeyPatch.context() as mp:
        _refuse_network(mp)
        import pytorch_lightning as ptl
        import torch
        import yaml
        from comet.models import RegressionMetric
        from transformers import XLMRobertaConfig, XLMRobertaTokenizer

        root = tmp_path_factory.mktemp("comet")
        encoder = root / "tiny-xlmr"
        # Only the slow (sentencepiece) tokenizer is saved: COMET's XLMRobertaTokenizerFast
        # converts it while loading, so the slow->fast conversion runs in the real path.
        tokenizer = XLMRobertaTokenizer(vocab_file=str(spm_model))
        tokenizer.save_pretrained(encoder)
        XLMRobertaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=514,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ).save_pretrained(encoder)

        torch.manual_seed(0)
        model = RegressionMetric(
            **HPARAMS, pretrained_model=str(encoder), load_pretrained_weights=False
        )
        hparams = dict(model.hparams)
        model_dir = root / "tiny-comet"
        (model_dir / "checkpoints").mkdir(parents=True)
        (model_dir / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
        torch.save(
            {
                "state_dict": model.state_dict(),
                "hyper_parameters": hparams,
                "pytorch-lightning_version": ptl.__version__,
            },
            model_dir / "checkpoints" / "model.ckpt",
        )
    return model_dir


@pytest.fixture(scope="module")
def comet_model(comet_dir):
    with pytest.MonkeyPatch.context() as mp:
        _refuse_network(mp)
        return sekd_comet.load_model(str(comet_dir / "checkpoints" / "model.ckpt"))


def test_module_imports_without_comet():
    code = "import sys, sekd.evaluate.comet; assert 'comet' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sentencepiece_slow_to_fast_conversion_agrees(spm_model):
    from transformers import XLMRobertaTokenizer, XLMRobertaTokenizerFast

    slow = XLMRobertaTokenizer(vocab_file=str(spm_model))
    fast = XLMRobertaTokenizerFast(vocab_file=str(spm_model))
    for text in SOURCES + HYPOTHESES:
        assert fast(text)["input_ids"] == slow(text)["input_ids"]


def test_load_restores_the_saved_weights(comet_dir, comet_model):
    import torch
    from comet.models import RegressionMetric

    assert isinstance(comet_model, RegressionMetric)
    assert comet_model.sekd_name == str(comet_dir / "checkpoints" / "model.ckpt")
    saved = torch.load(comet_dir / "checkpoints" / "model.ckpt", weights_only=True)["state_dict"]
    loaded = comet_model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)


def test_score_runs_the_real_predict(comet_model):
    result = sekd_comet.score(comet_model, SOURCES, HYPOTHESES, REFERENCES, batch_size=2)
    assert result["n_sentences"] == len(SOURCES) == len(result["segments"])
    assert result["model"] == comet_model.sekd_name
    assert all(math.isfinite(x) for x in [*result["segments"], result["comet"]])
    # x100 system score is the mean of the x100 segment scores.
    assert result["comet"] == pytest.approx(sum(result["segments"]) / len(SOURCES), abs=1e-4)

    again = sekd_comet.score(comet_model, SOURCES, HYPOTHESES, REFERENCES, batch_size=4)
    assert again["segments"] == pytest.approx(result["segments"], abs=1e-4)
    assert again["comet"] == pytest.approx(result["comet"], abs=1e-4)

    # Segment scores come back in input order despite COMET's length batching, and depend on
    # the hypothesis.
    reverse = sekd_comet.score(comet_model, SOURCES[::-1], HYPOTHESES[::-1], REFERENCES[::-1])
    assert reverse["segments"] == pytest.approx(result["segments"][::-1], abs=1e-4)
    other = sekd_comet.score(comet_model, SOURCES, REFERENCES[1:] + REFERENCES[:1], REFERENCES)
    assert all(
        abs(a - b) > 1e-6 for a, b in zip(other["segments"], result["segments"], strict=True)
    )


def test_load_model_from_a_model_directory(comet_dir):
    model = sekd_comet.load_model(comet_dir)
    assert model.sekd_name == str(comet_dir)
    result = sekd_comet.score(model, SOURCES[:2], HYPOTHESES[:2], REFERENCES[:2], gpus=0)
    assert len(result["segments"]) == 2


@pytest.mark.parametrize("name", ["missing/model.ckpt", "/nonexistent/comet", "./rel/comet"])
def test_missing_local_checkpoint_names_the_path(name):
    with pytest.raises(FileNotFoundError, match=re.escape(name.lstrip("./"))):
        sekd_comet.load_model(name)


def test_directory_without_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape("checkpoints/model.ckpt")):
        sekd_comet.load_model(tmp_path)


def test_uncached_hub_model_offline_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # comet's legacy fallback makes a cache folder
    with pytest.raises(RuntimeError, match="sekd-test/no-such-comet-model"):
        sekd_comet.load_model("sekd-test/no-such-comet-model")


def test_length_mismatch_and_empty_input(comet_model):
    with pytest.raises(ValueError, match="4 hypotheses"):
        sekd_comet.score(comet_model, SOURCES, HYPOTHESES[:4], REFERENCES)
    with pytest.raises(ValueError, match="4 references"):
        sekd_comet.score(comet_model, SOURCES, HYPOTHESES, REFERENCES[:4])
    with pytest.raises(ValueError, match="no segments"):
        sekd_comet.score(comet_model, [], [], [])
