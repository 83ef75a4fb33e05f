"""Base models: loaded from the hub / a local path (the paper's Llama-1 7B/13B/30B), or built
from config with seeded random weights (the miniature's tiny Llama-architecture models)."""

from __future__ import annotations

from pathlib import Path

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def build_tiny_llama(init: dict, tokenizer, seed: int):
    """A LlamaForCausalLM of the sizes in `init` (config `models.<name>.init`), seeded."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

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
):
    """Load weights (safetensors only) for training or decoding."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(name_or_path),
        torch_dtype=torch_dtype(dtype),
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
    )


def save(model, tokenizer, out_dir: str | Path) -> None:
    """Weights as safetensors, plus config and tokenizer, so the directory loads on its own."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
