"""Plan-time GPU memory and FLOPs estimates of the jobs that load a model (torch-free).

sekd.plan.allocation turns them into each job's request (GPUs per node, nodes, host memory, wall
time) on the cluster the profile describes, at plan time (its Sizer, from the rules).

Estimates are upper-bound style, in bytes per GPU; each term's source is given where it is made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

GIB = 1024**3

# Rows per chunk of the chunked loss on a GPU: sekd.train.chunked.CHUNK_ELEMENTS["cuda"] // V
# (kept equal by tests/test_sizing.py; sekd.train.chunked imports torch, this module must not).
CUDA_CHUNK_ELEMENTS = 1 << 23

# Model FLOPs utilisation assumed for the GPU-hours estimate (typical of ZeRO-3 training of
# 7B-30B Llama models on A100/H100; Megatron-LM and DeepSpeed reports give 0.3-0.5).
MFU = 0.35


@dataclass(frozen=True)
class Arch:
    """The sizes of a Llama-architecture decoder that decide its parameter count and memory."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def layer_params(self) -> int:
        """One decoder layer: q/o (h·h each), k/v (h·kv·d each), gate/up/down (h·i each), two
        RMSNorm weights (h each); Llama has no biases."""
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        return 2 * h * h + 2 * h * kv + 3 * h * self.intermediate_size + 2 * h

    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def params(self) -> int:
        """All parameters: embeddings, layers, the final norm, and the LM head unless tied."""
        head = 0 if self.tie_word_embeddings else self.embedding_params()
        layers = self.num_hidden_layers * self.layer_params()
        return self.embedding_params() + layers + self.hidden_size + head

    def module_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear module of a decoder layer, by name."""
        h, kv, i = (
            self.hidden_size,
            self.num_key_value_heads * self.head_dim,
            self.intermediate_size,
        )
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def lora_params(self, rank: int, targets: list[str]) -> int:
        """A LoRA adapter's parameters: r·(in + out) per target module per layer (A [r, in],
        B [out, r]); ValueError for a module name a decoder layer does not have."""
        shapes = self.module_shapes()
        unknown = sorted(set(targets) - set(shapes))
        if unknown:
            raise ValueError(
                f"no linear module {', '.join(unknown)} in a decoder layer to size (known: "
                f"{', '.join(shapes)})"
            )
        per_layer = sum(rank * sum(shapes[name]) for name in targets)
        return per_layer * self.num_hidden_layers

    def largest_layer_params(self) -> int:
        """The largest module ZeRO-3 gathers at once (an embedding or a decoder layer)."""
        return max(self.embedding_params(), self.layer_params())


def _llama1(h: int, i: int, layers: int, heads: int) -> Arch:
    return Arch(h, i, layers, heads, heads, 32000)


# The real Llama-1 checkpoints (their config.json on the hub; Touvron et al. 2023, Table 2).
KNOWN_ARCHS: dict[str, Arch] = {
    "huggyllama/llama-7b": _llama1(4096, 11008, 32, 32),
    "huggyllama/llama-13b": _llama1(5120, 13824, 40, 40),
    "huggyllama/llama-30b": _llama1(6656, 17920, 60, 52),
    # The families of config/examples/ (their config.json at the revisions pinned there; Qwen2's
    # q/k/v biases, under 0.01% of the parameters, are not counted)
    "Qwen/Qwen2.5-1.5B": Arch(1536, 8960, 28, 12, 2, 151936, tie_word_embeddings=True),
    "Qwen/Qwen2.5-7B": Arch(3584, 18944, 28, 28, 4, 152064),
    "Qwen/Qwen2.5-14B": Arch(5120, 13824, 48, 40, 8, 152064),
    "meta-llama/Llama-3.2-1B": Arch(2048, 8192, 16, 32, 8, 128256, tie_word_embeddings=True),
    "meta-llama/Llama-3.1-8B": Arch(4096, 14336, 32, 32, 8, 128256),
    "meta-llama/Llama-3.1-70B": Arch(8192, 28672, 80, 64, 8, 128256),
}


def arch_from_hf_config(cfg: dict) -> Arch:
    """An Arch from a transformers config.json (Llama field names)."""
    heads = cfg["num_attention_heads"]
    return Arch(
        hidden_size=cfg["hidden_size"],
        intermediate_size=cfg["intermediate_size"],
        num_hidden_layers=cfg["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=cfg.get("num_key_value_heads") or heads,
        vocab_size=cfg["vocab_size"],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )


def model_arch(model: dict, vocab_size: int | None = None) -> tuple[Arch | None, str]:
    """A config `models` entry's architecture and where it came from; (None, why) when unknown.

    `init`: the config's sizes (vocab_size: the trained tokenizer's, untied as sekd.models
    builds it); `pretrained`: a local directory's config.json, else KNOWN_ARCHS; anything else is
    not guessed.
    """
    init = model.get("init")
    if init:
        if vocab_size is None:
            return None, "init model without a known vocabulary size"
        heads = init["num_attention_heads"]
        arch = Arch(
            init["hidden_size"],
            init["intermediate_size"],
            init["num_hidden_layers"],
            heads,
            init.get("num_key_value_heads") or heads,
            vocab_size,
        )
        return arch, "config init"
    name = model.get("pretrained")
    local = Path(name) / "config.json" if name else None
    if local is not None and local.is_file():
        return arch_from_hf_config(json.loads(local.read_text())), str(local)
    if name in KNOWN_ARCHS:
        return KNOWN_ARCHS[name], f"known architecture of {name}"
    return None, f"no architecture known for {name!r} (no local config.json): not sized"


@dataclass(frozen=True)
class Estimate:
    """Peak bytes per GPU of one job, term by term, and its GPU-hours."""

    weights: int = 0  # trained model's ZeRO-3 states, or an inference model's bf16 weights
    gathered: int = 0  # the largest module ZeRO-3 gathers whole (DeepSpeed's estimator)
    activations: int = 0
    logits: int = 0
    teacher: int = 0  # KD: the frozen teacher's partitioned bf16 weights plus its logits
    kv_cache: int = 0
    gpu_hours: float = 0.0

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self) if f.name != "gpu_hours")

    def describe(self) -> str:
        terms = ", ".join(
            f"{f.name} {getattr(self, f.name) / GIB:.1f}"
            for f in fields(self)
            if f.name != "gpu_hours" and getattr(self, f.name)
        )
        return f"{self.total() / GIB:.1f} GiB per GPU ({terms})"


def zero3_model_states(params: int, gpus: int) -> int:
    """Parameter, gradient and Adam states of a trained model under ZeRO-3, per GPU: 18 bytes a
    parameter (bf16 weights 2, fp32 gradients 4, fp32 master weights + two moments 12), split
    over the GPUs: DeepSpeed's `estimate_zero3_model_states_mem_needs` without offload."""
    return 18 * params // gpus


def training_activations(
    arch: Arch, batch: int, length: int, attention_scores: bool = False
) -> int:
    """Activations kept for backward without recomputation (the trainer sets no gradient
    checkpointing): per layer s·b·h·(34 + 5·a·s/h) bytes in 16-bit (Korthikanti et al. 2022,
    "Reducing activation recomputation in large transformer models", eq. 1, no tensor
    parallelism). The 5·a·s/h term is the a·s² attention scores, softmax and dropout mask; the
    models run transformers' default SDPA attention, whose fused kernels keep none of them
    (as the paper's selective recomputation: 34·s·b·h), so it counts only with
    `attention_scores` (eager attention)."""
    s, b, h, a = length, batch, arch.hidden_size, arch.num_attention_heads
    per_layer = s * b * h * (34 + (5 * a * s / h if attention_scores else 0))
    return int(per_layer * arch.num_hidden_layers)


def loss_logits(arch: Arch, batch: int, length: int) -> int:
    """The LM head's logits: b·s·V in bf16 from the model, its gradient the same, plus the
    chunked loss's six fp32 work buffers of CUDA_CHUNK_ELEMENTS entries (sekd.train.chunked)."""
    return 2 * 2 * batch * length * arch.vocab_size + 6 * 4 * CUDA_CHUNK_ELEMENTS


def kv_cache(arch: Arch, batch: int, length: int) -> int:
    """bf16 keys and values of every layer: 2·L·b·s·kv_heads·head_dim·2 bytes."""
    per_token = 2 * arch.num_hidden_layers * arch.num_key_value_heads * arch.head_dim * 2
    return per_token * batch * length


def gpu_hours(flops: float, gpus: int, peak_tflops: float | None) -> float:
    """Wall GPU-hours at MFU of the GPU's peak bf16 throughput; 0 when the peak is unknown."""
    if not peak_tflops:
        return 0.0
    return flops / (MFU * peak_tflops * 1e12) / 3600  # GPU-seconds do not depend on the count


def training_estimate(
    arch: Arch,
    gpus: int,
    batch: int,
    length: int,
    tokens: float,
    teacher: Arch | None = None,
    peak_tflops: float | None = None,
    lora_params: int = 0,
) -> Estimate:
    """SFT (teacher None) or KD of `arch` on `gpus` GPUs; FLOPs ≈ 6·N·tokens (training) plus
    2·N_teacher·tokens (the teacher's forward passes). With a LoRA adapter of `lora_params`
    parameters, only the adapter has gradients and optimizer states: the base's bf16 weights
    (partitioned) plus the adapter's ZeRO-3 states, and 4·N·tokens (forward, and backward to the
    activations only) plus the adapter's 6·N_lora·tokens."""
    n = arch.params()
    flops = 6 * n * tokens
    states = zero3_model_states(n, gpus)
    if lora_params:
        flops = 4 * n * tokens + 6 * lora_params * tokens
        states = 2 * n // gpus + zero3_model_states(lora_params, gpus)
    teacher_bytes = 0
    if teacher is not None:
        # ZeRO-3 inference engine: bf16 weights partitioned, one module gathered, and its logits
        teacher_bytes = (
            2 * teacher.params() // gpus
            + 2 * teacher.largest_layer_params()
            + 2 * batch * length * teacher.vocab_size
        )
        flops += 2 * teacher.params() * tokens
    return Estimate(
        weights=states,
        gathered=4 * arch.largest_layer_params(),
        activations=training_activations(arch, batch, length),
        logits=loss_logits(arch, batch, length),
        teacher=teacher_bytes,
        gpu_hours=gpu_hours(flops, gpus, peak_tflops),
    )


def inference_estimate(
    arch: Arch,
    batch: int,
    length: int,
    tokens: float,
    peak_tflops: float | None = None,
    logit_positions: int | None = None,
) -> Estimate:
    """One model on one GPU (teacher_store, decode): bf16 weights, the KV cache of `batch`
    sequences of `length`, fp32 logits of `logit_positions` per sequence (all of them for the
    teacher store; generation keeps only the last position's); FLOPs ≈ 2·N·tokens."""
    n = arch.params()
    positions = length if logit_positions is None else logit_positions
    return Estimate(
        weights=2 * n,
        logits=4 * batch * positions * arch.vocab_size,
        kv_cache=kv_cache(arch, batch, length),
        gpu_hours=gpu_hours(2 * n * tokens, 1, peak_tflops),
    )


# Training pairs of ALMA's human-written data (line counts of train.<pair>.en at the pinned
# commit); each pair trains both directions. Unknown pairs: no GPU-hours estimate.
ALMA_TRAIN_PAIRS = {"de-en": 14211, "cs-en": 12076}
# Sentences of the largest WMT22 test direction of the paper's pairs (en-de and en-cs: 2037).
TEST_SENTENCES = 2037


def train_examples(pairs: list[str], max_train_pairs: int | None) -> int | None:
    """Training examples per epoch: both directions of every pair, capped like sekd.data.alma."""
    if any(pair not in ALMA_TRAIN_PAIRS for pair in pairs):
        return None
    counts = [ALMA_TRAIN_PAIRS[pair] for pair in pairs]
    if max_train_pairs is not None:
        counts = [min(count, max_train_pairs) for count in counts]
    return 2 * sum(counts)


class SizingError(Exception):
    """A job of the plan cannot fit the GPUs the profile gives it."""
