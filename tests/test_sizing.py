"""The sizing model (sekd.plan.sizing): the Llama-1 parameter counts, the estimate's terms against
DeepSpeed's own estimator, and where architectures come from. What the plan asks the cluster for
from it is tests/test_allocation.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sekd.plan import sizing

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REAL_PARAMS = {  # Touvron et al. 2023; the checkpoints' parameter counts
    "huggyllama/llama-7b": 6.74e9,
    "huggyllama/llama-13b": 13.0e9,
    "huggyllama/llama-30b": 32.5e9,
}


@pytest.mark.parametrize("name", sorted(REAL_PARAMS))
def test_llama1_parameter_counts(name):
    count = sizing.KNOWN_ARCHS[name].params()
    assert abs(count - REAL_PARAMS[name]) / REAL_PARAMS[name] < 0.01, count


@pytest.mark.parametrize("name", sorted(REAL_PARAMS))
def test_parameter_counts_equal_the_model_built_on_the_meta_device(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    arch = sizing.KNOWN_ARCHS[name]
    config = transformers.LlamaConfig(
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers,
        num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads,
        vocab_size=arch.vocab_size,
        tie_word_embeddings=arch.tie_word_embeddings,
    )
    with torch.device("meta"):  # shapes only, no weights
        model = transformers.LlamaForCausalLM(config)
    assert sum(p.numel() for p in model.parameters()) == arch.params()


def test_chunk_elements_follow_the_chunked_loss():
    chunked = pytest.importorskip("sekd.train.chunked")
    assert chunked.CHUNK_ELEMENTS["cuda"] == sizing.CUDA_CHUNK_ELEMENTS


def test_model_states_are_deepspeeds_18_bytes_per_parameter():
    assert sizing.zero3_model_states(10**9, 8) == 18 * 10**9 // 8


@pytest.mark.parametrize("name", sorted(REAL_PARAMS))
def test_model_states_equal_deepspeeds_estimator(name):
    stage3 = pytest.importorskip("deepspeed.runtime.zero.stage3")
    arch = sizing.KNOWN_ARCHS[name]
    _, gpu_bytes, _ = stage3.estimate_zero3_model_states_mem_needs(
        arch.params(), arch.largest_layer_params(), 8, 1, cpu_offload=False,
        cpu_offload_params=False,
    )  # fmt: skip
    estimate = sizing.training_estimate(arch, 8, 4, 512, 0)
    assert abs(estimate.weights + estimate.gathered - gpu_bytes) <= 1


def test_architecture_sources(tmp_path):
    init = {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2}
    arch, _ = sizing.model_arch({"init": {**init, "num_attention_heads": 4}}, 2000)
    assert arch.params() == 2 * 2000 * 64 + 2 * arch.layer_params() + 64
    (tmp_path / "config.json").write_text(
        '{"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,'
        ' "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,'
        ' "tie_word_embeddings": true}'
    )
    local, where = sizing.model_arch({"pretrained": str(tmp_path)})
    assert local.num_key_value_heads == 2 and local.tie_word_embeddings and "config.json" in where
    unknown, why = sizing.model_arch({"pretrained": "someone/unknown-model"})
    assert unknown is None and "not sized" in why
