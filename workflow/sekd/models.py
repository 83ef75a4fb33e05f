"""Base models: loaded from the hub / a local path (the paper's Llama-1 7B/13B/30B), or built
from config with seeded random weights (the miniature's tiny Llama-architecture models)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def torch_dtype(name: str) -> torch.dtype:
    return getattr(torch, DTYPES[name])


def build_tiny_llama(init: dict, tokenizer, seed: int):
    """A LlamaForCausalLM of the sizes in `init` (config `models.<name>.init`), seeded."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=init["hidden_size"],
        intermediate_size=init["intermediate_size"],
        num_hidden_layers=init["num_hidden_layers"],
        num_attention_heads=init["num_attention_heads"],
        num_key_value_heads=init.get("num_key_value_heads") or init["num_attention_heads"],
        max_position_embeddings=init.get("max_position_embeddings", 1024),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_causal_lm(
    name_or_path: str | Path, dtype: str = "float32", trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load weights (safetensors only) for training or decoding."""
    return AutoModelForCausalLM.from_pretrained(
        str(name_or_path),
        torch_dtype=torch_dtype(dtype),
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
    )


def load_teacher(
    name_or_path: str | Path, dtype: str, trust_remote_code: bool, student_vocab_size: int
) -> PreTrainedModel:
    """The frozen SFT'd teacher (eval mode, no gradients), on the CPU; refused when its
    vocabulary is smaller than the student's (the KD losses compare distributions over the
    student's vocabulary, eqs. 3-10)."""
    teacher = load_causal_lm(name_or_path, dtype, trust_remote_code)
    teacher.eval().requires_grad_(False)
    if teacher.config.vocab_size < student_vocab_size:
        raise ValueError(
            f"{name_or_path}: the teacher's vocabulary ({teacher.config.vocab_size}) is "
            f"smaller than the student's ({student_vocab_size})"
        )
    return teacher


def configure_torch_threads(threads: int) -> None:
    """One thread budget per job, as Snakemake assigns it (reproducible on CPU)."""
    torch.set_num_threads(max(1, int(threads)))


def save(model, tokenizer, out_dir: str | Path) -> None:
    """Weights as safetensors, plus config and tokenizer, so the directory loads on its own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
