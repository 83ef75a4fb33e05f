"""LoRA students and teachers (training.finetune: lora, or a KD run's option finetune.lora).

Hu et al. 2022 ("LoRA: Low-Rank Adaptation of Large Language Models"), eq. 3: each target linear
layer W0 [out, in] computes h = W0 x + (alpha/r)·B A x, with A [r, in] and B [out, r] the only
trained weights (B starts at 0, so training starts from the base model exactly). PEFT builds the
adapter (`wrap`); the run saves the adapter in ``<out_dir>/adapter`` and the merged weights
W0 + (alpha/r)·B A in ``<out_dir>`` (`save_merged`), so that decoding, the validation fit and a KD
run's teacher read a LoRA-trained model as any other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers.integrations import deepspeed as hf_deepspeed

from sekd import models

ADAPTER_DIR = "adapter"  # below a trained model's directory


def lora_config(settings: dict) -> LoraConfig:
    """PEFT's LoraConfig of models.<name>.lora ({rank, alpha, dropout, target_modules})."""
    return LoraConfig(
        r=int(settings["rank"]),
        lora_alpha=float(settings["alpha"]),
        lora_dropout=float(settings["dropout"]),
        target_modules=list(settings["target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )


def wrap(model: torch.nn.Module, settings: dict, key: str) -> PeftModel:
    """`model` with a LoRA adapter on every module whose name ends in one of
    settings["target_modules"]; only the adapter's A and B train. ValueError naming `key`
    (models.<name>.lora) when no module of the model matches."""
    try:
        return get_peft_model(model, lora_config(settings))
    except ValueError as error:  # PEFT: "Target modules {...} not found in the base model"
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if _linear(m)})
        raise ValueError(
            f"{key}.target_modules={list(settings['target_modules'])}: {error}. The model's "
            f"linear modules: {', '.join(names)}"
        ) from None


def _linear(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Linear)


def parameter_counts(model: torch.nn.Module) -> dict:
    """{"trainable": the adapter's parameters, "total": all} (ZeRO-3 partitions counted whole)."""
    trainable = total = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", p.numel())
        total += n
        trainable += n if p.requires_grad else 0
    return {"trainable": trainable, "total": total}


def save_merged(
    out_dir: Path,
    base_model: str,
    tokenizer,
    dtype: str,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> None:
    """Merge the adapter saved in ``<out_dir>/adapter`` (where it stays) into `base_model` (the
    weights the run started from, loaded again on the CPU in float32) and save the merged model
    in `out_dir` (safetensors, in `dtype`, with `tokenizer`)."""
    with _whole_weights():
        base = models.load_causal_lm(base_model, "float32", trust_remote_code, revision)
        merged = PeftModel.from_pretrained(base, str(out_dir / ADAPTER_DIR)).merge_and_unload()
    merged.to(models.torch_dtype(dtype))
    models.save(merged, tokenizer, out_dir)


@contextlib.contextmanager
def _whole_weights() -> Iterator[None]:
    """Models load whole in this block, also in a ZeRO-3 rank (whose DeepSpeed config, registered
    with transformers, would otherwise partition them across the ranks at load: rank 0 merges
    alone)."""
    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    config = registered() if registered is not None else None
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if config is not None:
            hf_deepspeed.set_hf_deepspeed_config(config)
