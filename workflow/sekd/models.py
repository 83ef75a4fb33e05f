"""Base models: loaded from the hub / a local path (the paper's Llama-1 7B/13B/30B), or built
from config with seeded random weights (the miniature's tiny Llama-architecture models)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel

from sekd.data import tokenizer as tokenizers

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")

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
    name_or_path: str | Path,
    dtype: str = "float32",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> PreTrainedModel:
    """Load weights (safetensors only) for training or decoding; `revision` (config
    `models.<name>.revision`, a commit hash or tag) pins a hub model, None = the hub's default."""
    return AutoModelForCausalLM.from_pretrained(
        str(name_or_path),
        dtype=torch_dtype(dtype),  # `torch_dtype` is deprecated since transformers 4.56
        trust_remote_code=trust_remote_code,
        use_safetensors=True,
        revision=revision,
    )


def check_vocab(model: PreTrainedModel, tokenizer, name: str, key: str) -> None:
    """Refuse a model whose embedding table is smaller than the workflow's tokenizer: its first
    lookup of a larger id would fail with a bare IndexError (or read another row on a GPU)."""
    rows = model.get_input_embeddings().num_embeddings
    size = min(rows, model.config.vocab_size)
    if size < len(tokenizer):
        raise ValueError(
            f"{key} ({name}): the model's vocabulary has {size} entries, fewer than the "
            f"workflow's tokenizer (results/tokenizer, {len(tokenizer)} entries): its token "
            "ids would index past the embedding table; use a model of this tokenizer "
            "(tokenizer.from_model) or build it from `init`"
        )


def has_own_tokenizer(name_or_path: str | Path) -> bool:
    """Whether `name_or_path` brings a tokenizer: a hub id, or a directory with tokenizer files."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return any((path / name).is_file() for name in TOKENIZER_FILES)
    return not path.exists()  # a hub id (config validation refused missing local paths)


# The special tokens whose ids the data and generation rely on (pad positions are masked).
SHARED_SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token")


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of a tokenizer's token -> id map and its special tokens."""
    payload = repr(
        (sorted(tokenizer.get_vocab().items()), sorted(tokenizer.special_tokens_map.items()))
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def tokenizer_difference(own, tokenizer) -> str | None:
    """How a model's own tokenizer differs from the workflow's `tokenizer`, or None when every
    token of the workflow's has the same id in it and BOS/EOS/UNK agree. A model's tokenizer may
    extend the workflow's with tokens of higher ids (a padded teacher: KD cuts its logits to the
    student's ids), and may pad with another token (padded positions are masked)."""
    theirs = own.get_vocab()
    moved = [token for token, i in sorted(tokenizer.get_vocab().items()) if theirs.get(token) != i]
    if moved:
        return f"{len(moved)} of the workflow's tokens are missing or have other ids: {moved[:3]!r}"
    for name in SHARED_SPECIAL_TOKENS:
        if getattr(own, name) != getattr(tokenizer, name):
            return (
                f"its {name} is {getattr(own, name)!r}, the workflow's {getattr(tokenizer, name)!r}"
            )
    return None


def check_tokenizer(
    name_or_path: str | Path,
    tokenizer,
    key: str,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> None:
    """Refuse a model whose own tokenizer differs from the workflow's (results/tokenizer): its
    ids would mean other tokens, and KD would compare unrelated distributions (eqs. 3-10)."""
    if not has_own_tokenizer(name_or_path):
        return
    own = tokenizers.load_pretrained(str(name_or_path), trust_remote_code, revision)
    difference = tokenizer_difference(own, tokenizer)
    if difference is not None:
        mine, theirs = tokenizer_fingerprint(tokenizer)[:12], tokenizer_fingerprint(own)[:12]
        raise ValueError(
            f"{key} ({name_or_path}): its tokenizer ({len(own)} entries, vocabulary sha256 "
            f"{theirs}) differs from the workflow's (results/tokenizer, {len(tokenizer)} "
            f"entries, sha256 {mine}): {difference}; teacher and student must share one "
            "tokenizer (tokenizer.from_model)"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(
    name_or_path: str | Path, revision: str | None = None, model: PreTrainedModel | None = None
) -> dict:
    """What was loaded: {"source", "revision" (asked for), "commit" (the hub's resolved commit,
    when it reports one), "sha256" (of a local directory's safetensors index or single file)}."""
    record = {"source": str(name_or_path), "revision": revision, "commit": None, "sha256": None}
    if model is not None:
        record["commit"] = getattr(model.config, "_commit_hash", None)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        for name in ("model.safetensors.index.json", "model.safetensors"):
            if (path / name).is_file():
                record["sha256"] = {name: _sha256(path / name)}
                break
    return record


def load_teacher(
    name_or_path: str | Path,
    dtype: str,
    trust_remote_code: bool,
    student_vocab_size: int,
    revision: str | None = None,
    key: str = "the teacher",
) -> PreTrainedModel:
    """The frozen SFT'd teacher (eval mode, no gradients), on the CPU; refused when its
    vocabulary is smaller than the student's (the KD losses compare distributions over the
    student's vocabulary, eqs. 3-10). `key` names it in errors (models.<name>)."""
    teacher = load_causal_lm(name_or_path, dtype, trust_remote_code, revision)
    teacher.eval().requires_grad_(False)
    if teacher.config.vocab_size < student_vocab_size:
        raise ValueError(
            f"{key} ({name_or_path}): the teacher's vocabulary ({teacher.config.vocab_size}) "
            f"is smaller than the student's ({student_vocab_size})"
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
