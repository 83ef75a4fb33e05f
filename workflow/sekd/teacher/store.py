"""Teacher outputs computed once: a store of what the KD objectives read from the teacher.

Every KD run of the study scores the same gold sequences with the same frozen teacher, so the
teacher's forward pass (46-62% of a KD step's FLOPs for a 13B teacher and a 7B student) can be run
once per teacher (rule ``teacher_store``) and read by every KD job. Modes (config
``teacher_store.mode``):

* ``online``: no store; the teacher runs in every KD step (the paper's way, the default).
* ``full``: exact distributions: log p over the student's vocabulary, fp16, for every target token
  (N·V·2 bytes: ~128 GB for 2M target tokens at V = 32000).
* ``sparse``: Random-Sampling KD (Anshumann et al., "Sparse Logit Sampling", ACL 2025): K tokens
  drawn with replacement from the proposal r ∝ p^(1/τ), stored as (id, weight) with weight_v =
  (count_v/K)·(p_v/r_v), normalised. With τ = 1 (the default) the weights are count_v/K and
  E[p̂] = p exactly: the target, and so the gradient of every loss linear in it (SFT, forward
  KD, NoEvo KD), is unbiased, unlike a top-k cut, which biases p toward its head. Objectives
  nonlinear in the target (the skewed KLs) are consistent (exact as K grows), not unbiased.
  Per token the store also keeps the exact log p[label] and entropy H(p): the difficulty
  d = KL(ỹ||q) of eq. 5 = Σ ỹ log ỹ - Σ ỹ log q is then estimated without bias by replacing the
  sampled target's Σ ỹ log ỹ with the exact one (`difficulty_offset`), so the hard/easy split of
  eqs. 7-9 is not shifted by the sample's missing entropy. reverse_kd needs p on the whole
  vocabulary (KL(q||p) is infinite where p̂ = 0): a sparse store cannot serve it
  (`sekd.plan.objectives.Objective.needs_full_teacher`); its runs keep the online teacher.

Layout of a store directory: ``store.json`` (format, mode, sizes, the training set's
fingerprint, build time), ``offsets.npy`` (int64 [E+1]: example e's target tokens are rows
offsets[e]:offsets[e+1]), and ``logprobs.npy`` (full: fp16 [N, V]) or ``ids.npy`` (int32 [N, K]),
``weights.npy`` (fp32 [N, K], 0 in unused slots), ``label_logprob.npy`` and ``entropy.npy`` (fp32
[N]) (sparse). Target tokens are the positions t whose next token labels[t+1] is not -100, in
order, exactly the rows `sekd.train.losses.distill_loss` reads. A store is written to ``<dir>.tmp``
and renamed when complete; a KD job checks the fingerprint of its own tokenised training set against
the store's before it trains.

Names: a KD run trained from a store is ``kd/<teacher>.<source>/<variant>``, source = ``full`` or
``sparse<K>`` (``sparse<K>t<τ>`` for τ ≠ 1); online runs keep ``kd/<teacher>/<variant>``. The
grammar lives in sekd.plan.run_names, torch-free for the Snakefile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.special import xlogy
from tqdm import tqdm
from transformers import AutoConfig

from sekd import atomic, models
from sekd.data import tokenizer as tokenizers
from sekd.data.batches import PadCollator, encode_files
from sekd.data.prompts import DEFAULT_TRUNCATION, RESPONSE_NEWLINE
from sekd.errors import NonFiniteError
from sekd.plan.schema import default

log = logging.getLogger("sekd.teacher.store")

FORMAT = 1
FULL_FIELDS = ("logprobs",)
SPARSE_FIELDS = ("ids", "weights", "label_logprob", "entropy")
# Float fields travel in batches as same-width integers (bit views): the Trainer casts floating
# inputs to the DeepSpeed dtype (bf16), which would round log p to 8 bits of mantissa.
FLOAT_FIELDS = {"logprobs": "float16", "weights": "float32", "label_logprob": "float32"}
FLOAT_FIELDS["entropy"] = "float32"
_BITS = {"float16": "int16", "float32": "int32"}


# --- what a store is keyed to -------------------------------------------------------------------


def target_counts(examples: list[dict]) -> list[int]:
    """Target tokens per example: positions whose next label is not -100."""
    return [sum(label != -100 for label in ex["labels"][1:]) for ex in examples]


def fingerprint(examples: list[dict]) -> str:
    """SHA-256 of the tokenised training set (input ids and labels, in order)."""

    digest = hashlib.sha256()
    for ex in examples:
        ids = np.asarray(ex["input_ids"], dtype="<i4")
        labels = np.asarray(ex["labels"], dtype="<i4")
        digest.update(len(ids).to_bytes(4, "little") + ids.tobytes() + labels.tobytes())
    return digest.hexdigest()


# --- sampling and the entropy correction --------------------------------------------------------


def sample_sparse(
    log_p, samples: int, temperature: float = default("teacher_store.temperature"), generator=None
):
    """(ids int64 [n, K], weights fp32 [n, K]) of Random-Sampling KD from log p [n, V]: K draws
    with replacement from r ∝ p^(1/τ), weight_v = (count_v/K)·(p_v/r_v), normalised per row
    (τ = 1: count_v/K, an unbiased estimate of p). The distinct drawn ids come first, by
    weight; unused slots have weight 0."""

    log_p = log_p.float()
    log_r = log_p if temperature == 1 else (log_p / temperature).log_softmax(-1)
    draws = torch.multinomial(log_r.exp(), samples, replacement=True, generator=generator)
    ones = torch.ones_like(draws, dtype=log_p.dtype)
    counts = torch.zeros_like(log_p).scatter_add_(-1, draws, ones)
    weights = counts / samples
    if temperature != 1:
        weights = weights * (log_p - log_r).exp()
        weights = weights / weights.sum(-1, keepdim=True)
    top, ids = weights.topk(min(samples, log_p.shape[-1]), dim=-1)
    return ids, top


def dense_log_probs(ids, weights, vocab_size: int):
    """log p̂ [n, V] (fp32, -inf off the sample) from sparse (ids, weights)."""

    p_hat = torch.zeros(ids.shape[0], vocab_size, dtype=torch.float32, device=ids.device)
    return p_hat.scatter_add_(-1, ids.long(), weights.float()).log()


def target_negentropy(entropy, label_prob, lam: float):
    """Σ_v ỹ_v log ỹ_v of ỹ = (1-λ)·y + λ·p (eq. 4) from H(p) and p[label] alone:
    λ·(-H - p_y log p_y) + λ log λ·(1 - p_y) + ỹ_y log ỹ_y, ỹ_y = (1-λ) + λ·p_y (float64)."""

    h, py = entropy.double(), label_prob.double()
    lam_t = torch.tensor(float(lam), dtype=torch.float64, device=h.device)
    at_label = (1 - lam_t) + lam_t * py
    return lam_t * (-h - xlogy(py, py)) + xlogy(lam_t, lam_t) * (1 - py) + xlogy(at_label, at_label)


def difficulty_offset(fields: dict, labels, lam: float):
    """Per target token: exact Σ ỹ log ỹ minus that of the sampled ỹ̂ (fp32 [n]); added to d
    (`sekd.train.losses.distill_loss(difficulty_offset=...)`) it makes d's estimate unbiased."""

    ids, w = fields["ids"].long(), fields["weights"].double()
    est_label = (w * (ids == labels[:, None])).sum(-1)
    est_entropy = -xlogy(w, w).sum(-1)
    exact = target_negentropy(fields["entropy"], fields["label_logprob"].double().exp(), lam)
    estimate = target_negentropy(est_entropy, est_label, lam)
    return (exact - estimate).to(torch.float32)


# --- building -----------------------------------------------------------------------------------


@dataclass
class StoreJob:
    """Everything the teacher_store rule gives `build`."""

    teacher_model: str  # the SFT'd teacher's directory
    student_model: str  # the student's base model (directory or hub id): its vocabulary size
    tokenizer_dir: str
    train_files: list[str]
    languages: dict[str, str]
    max_length: int
    out_dir: str
    mode: str  # full | sparse
    samples: int = default("teacher_store.samples")
    temperature: float = default("teacher_store.temperature")
    seed: int = default("teacher_store.seed")
    batch_size: int = default("teacher_store.batch_size")
    dtype: str = "float32"  # the teacher's
    trust_remote_code: bool = False
    threads: int = 1
    student_revision: str | None = None  # of student_model when a hub id (models.student.revision)
    teacher_key: str = "the teacher"  # its config key, for errors (models.<name>)
    # the examples' encoding, as the student's training encodes them (prompt.response_newline,
    # training.truncation; sekd.data.prompts)
    response_newline: bool = RESPONSE_NEWLINE
    truncation: str = DEFAULT_TRUNCATION


def _open_array(path: Path, dtype: str, shape: tuple[int, ...]) -> np.memmap:
    """A new .npy of `shape` at `path`, memory-mapped, its space allocated: a store that does not
    fit stops here (sekd.errors.DiskFullError), not with SIGBUS at a write to the map."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    atomic.reserve(path)
    return array


def _open_arrays(tmp: Path, mode: str, n_tokens: int, vocab: int, k: int) -> dict[str, np.memmap]:
    """The store's row arrays ([N, V] log p in full mode; [N, K] ids and weights, [N] exact
    log p[label] and H(p) in sparse mode), memory-mapped .npy files in `tmp`."""
    if mode == "full":
        return {"logprobs": _open_array(tmp / "logprobs.npy", "float16", (n_tokens, vocab))}
    return {
        "ids": _open_array(tmp / "ids.npy", "int32", (n_tokens, k)),
        "weights": _open_array(tmp / "weights.npy", "float32", (n_tokens, k)),
        "label_logprob": _open_array(tmp / "label_logprob.npy", "float32", (n_tokens,)),
        "entropy": _open_array(tmp / "entropy.npy", "float32", (n_tokens,)),
    }


def _check_job(job: StoreJob) -> None:
    if job.mode not in ("full", "sparse"):
        raise ValueError(
            f"teacher_store.mode: a store is built in full or sparse mode, not {job.mode!r}"
        )
    if job.mode == "sparse" and (job.samples < 1 or job.temperature <= 0):
        raise ValueError("teacher_store.samples must be >= 1 and teacher_store.temperature > 0")


def build(job: StoreJob) -> dict:
    """Run the teacher once over the training set and write the store; return its store.json."""
    _check_job(job)
    models.configure_torch_threads(job.threads)
    start = time.time()
    tok = tokenizers.load(job.tokenizer_dir)
    examples = encode_files(
        job.train_files,
        tok,
        job.languages,
        job.max_length,
        response_newline=job.response_newline,
        truncation=job.truncation,
    )
    offsets = np.concatenate([[0], np.cumsum(target_counts(examples), dtype=np.int64)])
    n_tokens = int(offsets[-1])
    vocab = AutoConfig.from_pretrained(
        job.student_model, trust_remote_code=job.trust_remote_code, revision=job.student_revision
    ).vocab_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher = _load_teacher(job, tok, vocab, device)
    with atomic.replacing(job.out_dir, directory=True) as tmp:
        np.save(tmp / "offsets.npy", offsets)
        k = min(job.samples, vocab)
        arrays = _open_arrays(tmp, job.mode, n_tokens, vocab, k)
        log.info(
            "teacher %s over %d examples (%d target tokens), mode %s, V=%d, on %s",
            *(job.teacher_model, len(examples), n_tokens, job.mode, vocab, device),
        )
        _fill(arrays, teacher, examples, offsets, PadCollator(tok.pad_token_id), job, k, vocab)
        for array in arrays.values():
            array.flush()
        del arrays
        seconds = time.time() - start
        meta = _meta(job, examples, n_tokens, vocab, k, seconds, tmp)
        (tmp / "store.json").write_text(json.dumps(meta, indent=1))
    log.info(
        "%s: %d tokens, %.1f MiB, %.1f s (%.0f target tokens/s)",
        *(job.out_dir, n_tokens, meta["bytes"] / 2**20, seconds, meta["tokens_per_second"]),
    )
    return meta


def _load_teacher(job: StoreJob, tok, vocab: int, device: torch.device):
    """The teacher on `device`, checked as a KD job checks it: same tokenizer as the student's,
    an output layer covering the tokenizer's vocabulary."""
    models.check_tokenizer(job.teacher_model, tok, job.teacher_key, None, job.trust_remote_code)
    teacher = models.load_teacher(
        job.teacher_model, job.dtype, job.trust_remote_code, vocab, key=job.teacher_key
    )
    models.check_vocab(teacher, tok, job.teacher_model, job.teacher_key)
    return teacher.to(device)


def _meta(
    job: StoreJob,
    examples: list[dict],
    n_tokens: int,
    vocab: int,
    k: int,
    seconds: float,
    arrays_dir: Path,
) -> dict:
    """store.json: the store's settings, the teacher, its size (the .npy files in `arrays_dir`)
    and the throughput of the build."""
    sparse = job.mode == "sparse"
    return {
        "format": FORMAT,
        "mode": job.mode,
        "vocab_size": vocab,
        "samples": k if sparse else None,
        "temperature": job.temperature if sparse else None,
        "seed": job.seed if sparse else None,
        "teacher": str(job.teacher_model),
        "teacher_dtype": job.dtype,
        "num_examples": len(examples),
        "num_tokens": n_tokens,
        "fingerprint": fingerprint(examples),
        "bytes": sum(p.stat().st_size for p in arrays_dir.glob("*.npy")),
        "build_seconds": round(seconds, 2),
        "tokens_per_second": round(n_tokens / max(seconds, 1e-9), 1),
    }


@torch.inference_mode()
def _fill(
    arrays: dict[str, np.memmap],
    teacher,
    examples: list[dict],
    offsets: np.ndarray,
    collate: PadCollator,
    job: StoreJob,
    k: int,
    vocab: int,
) -> None:
    """Run the teacher over `examples` (longest first, `job.batch_size` at a time) and write
    each example's target rows offsets[e]:offsets[e+1] of `arrays`."""
    device = next(teacher.parameters()).device
    order = sorted(range(len(examples)), key=lambda e: -len(examples[e]["input_ids"]))
    batches = [order[i : i + job.batch_size] for i in range(0, len(order), job.batch_size)]
    for number, batch in enumerate(tqdm(batches, desc="teacher store", mininterval=5), 1):
        inputs = collate([examples[e] for e in batch])
        logits = teacher(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            use_cache=False,  # a forward pass: no KV cache held beside the logits
        ).logits[:, :-1, :vocab]  # [B, T-1, V]
        labels = inputs["labels"][:, 1:].to(device)  # [B, T-1]
        _check_finite(logits, labels, batch, f"batch {number} of {len(batches)}", job)
        for row, e in enumerate(batch):
            a, b = int(offsets[e]), int(offsets[e + 1])
            if a == b:
                continue
            keep = labels[row] != -100
            log_p = logits[row][keep].float().log_softmax(-1)  # [n, V]
            if job.mode == "full":
                _write_full(arrays, a, b, log_p)
            else:
                g = torch.Generator(device=device).manual_seed(job.seed * 1_000_003 + e)
                _write_sparse(arrays, a, b, log_p, labels[row][keep], k, job.temperature, g)


def _check_finite(
    logits: torch.Tensor, labels: torch.Tensor, batch: list[int], where: str, job: StoreJob
) -> None:
    """Stop with NonFiniteError if the teacher's logits [B, T-1, V] hold NaN or inf at a target
    position (labels [B, T-1] not -100) of the batch's examples `batch` (training-set indices):
    sampling would fail without naming the cause, and a full store would hold NaN."""
    bad = ~torch.isfinite(logits).all(-1) & (labels != -100)  # [B, T-1]
    if not bad.any():
        return
    rows = bad.any(-1).nonzero()[:, 0].tolist()
    values = logits[bad]  # [n, V]
    raise NonFiniteError(
        f"teacher store {job.out_dir}: {job.teacher_key} ({job.teacher_model}): the teacher's "
        f"logits hold NaN or inf ({int(values.isnan().sum())} NaN, {int(values.isinf().sum())} "
        f"inf entries) at {int(bad.sum())} target token(s) of training example(s) "
        f"{[batch[r] for r in rows]} ({where}); stopped, the store is not written (the partial "
        f"{atomic.temporary(job.out_dir)} is left)"
    )


_FP16_MIN = float(np.finfo(np.float16).min)


def _write_full(arrays: dict, a: int, b: int, log_p: torch.Tensor) -> None:
    """Rows a:b of the full store: log p [n, V] in fp16 (-inf clamped to fp16's minimum)."""
    arrays["logprobs"][a:b] = log_p.clamp_min(_FP16_MIN).half().cpu().numpy()


def _write_sparse(
    arrays: dict,
    a: int,
    b: int,
    log_p: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    temperature: float,
    generator: torch.Generator,
) -> None:
    """Rows a:b of the sparse store from log p [n, V] and labels [n]: K sampled (id, weight)
    pairs, the exact log p[label] and the entropy H(p)."""
    ids, weights = sample_sparse(log_p, k, temperature, generator)
    arrays["ids"][a:b] = ids.to(torch.int32).cpu().numpy()
    arrays["weights"][a:b] = weights.cpu().numpy()
    arrays["label_logprob"][a:b] = log_p.gather(-1, labels[:, None])[:, 0].cpu().numpy()
    entropy = -(log_p.exp() * log_p).sum(-1)
    arrays["entropy"][a:b] = entropy.cpu().numpy()


# --- reading ------------------------------------------------------------------------------------


class TeacherStore:
    """A built store, memory-mapped; `rows(indices)` gives a batch's fields as torch tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_file = self.path / "store.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"{self.path}: not a teacher store (no store.json)")
        self.meta = json.loads(meta_file.read_text())
        if self.meta.get("format") != FORMAT:
            raise ValueError(
                f"{meta_file}: store format {self.meta.get('format')!r}, this code reads {FORMAT}"
            )
        self.mode = self.meta["mode"]
        names = FULL_FIELDS if self.mode == "full" else SPARSE_FIELDS
        self.offsets = np.load(self.path / "offsets.npy", allow_pickle=False)
        self.arrays = {
            name: np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            for name in names
        }
        n = int(self.offsets[-1])
        for name, array in self.arrays.items():
            if array.shape[0] != n:
                raise ValueError(f"{self.path}/{name}.npy: {array.shape[0]} rows, expected {n}")

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def check(self, examples: list[dict], vocab_size: int) -> None:
        """Refuse a store built for another tokenised training set or vocabulary."""
        if vocab_size != self.vocab_size:
            raise ValueError(
                f"{self.path}: built for a vocabulary of {self.vocab_size}, the student has "
                f"{vocab_size}"
            )
        found = fingerprint(examples)
        if len(examples) != self.meta["num_examples"] or found != self.meta["fingerprint"]:
            raise ValueError(
                f"{self.path}: built from another training set ({self.meta['num_examples']} "
                f"examples, fingerprint {self.meta['fingerprint'][:12]}) than this job's "
                f"({len(examples)} examples, fingerprint {found[:12]}): tokenizer, data, prompt "
                "or training.max_length differ; rebuild the store"
            )

    def rows(self, indices: list[int]) -> dict:
        """The stored fields of examples `indices` (``store_<name>``), their target rows
        concatenated in order; float fields as integer bit views (`decode_fields` undoes it)."""

        spans = [(int(self.offsets[e]), int(self.offsets[e + 1])) for e in indices]
        out = {}
        for name, array in self.arrays.items():
            rows = np.concatenate([array[a:b] for a, b in spans]) if spans else array[:0].copy()
            if name in FLOAT_FIELDS:
                rows = rows.view(_BITS[FLOAT_FIELDS[name]])
            out[f"store_{name}"] = torch.from_numpy(rows)
        return out


def decode_fields(fields: dict) -> dict:
    """{name: tensor} of a batch's ``store_<name>`` fields, float fields viewed back as floats."""

    out = {}
    for key, value in fields.items():
        name = key.removeprefix("store_")
        if name in FLOAT_FIELDS:
            value = value.view(getattr(torch, FLOAT_FIELDS[name]))
        out[name] = value
    return out


def teacher_inputs(fields: dict, labels, vocab_size: int, lam: float | None):
    """(teacher log-probabilities [B,T,V] for `distill_loss`, difficulty offset [B,T] or None)
    from a batch's ``store_*`` fields (as `TeacherStore.rows` gives them); labels [B,T] are the
    shifted labels (-100 ignored)."""

    mask = labels != -100
    n = int(mask.sum())
    fields = decode_fields(fields)
    first = next(iter(fields.values()))
    if first.shape[0] != n:
        raise ValueError(
            f"teacher store rows ({first.shape[0]}) do not match the batch's {n} target tokens"
        )
    B, T = labels.shape
    if "logprobs" in fields:
        rows = fields["logprobs"]
        teacher = torch.zeros(B, T, vocab_size, dtype=rows.dtype, device=rows.device)
        teacher[mask] = rows
        return teacher, None
    sparse = fields
    rows = dense_log_probs(sparse["ids"], sparse["weights"], vocab_size)
    teacher = torch.zeros(B, T, vocab_size, dtype=rows.dtype, device=rows.device)
    teacher[mask] = rows
    offset = None
    if lam is not None:
        offset = torch.zeros(B, T, dtype=torch.float32, device=rows.device)
        offset[mask] = difficulty_offset(sparse, labels[mask], lam)
    return teacher, offset
