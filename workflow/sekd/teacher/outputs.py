"""The teacher's outputs for the training prompts: training sequences of the ``teacher`` objectives.

Sequence-level KD (Kim & Rush 2016: seq_kd, seq_inter) trains the student with NLL on the
teacher's beam-search outputs; f-DISTILL's teacher-side objectives (Wen et al. 2023: fd_kl,
fd_js, fd_tvd) on its samples. They are generated once per teacher, generation setting and seed
(rule ``teacher_outputs``; paths and names in `sekd.plan.sequences`) and read by every run whose
objective trains on them (`load_examples`).

The prompts are those of the gold training examples, encoded exactly as training encodes them
(`sekd.data.batches.encode_records`, same order): a prompt is the example's leading tokens whose
labels are -100. Generation runs in length-sorted, left-padded batches:

* beam search (``{"num_beams": K}``): Hugging Face `generate` with K beams, all K returned, best
  first (its length-normalised score);
* sampling (``{"temperature", "top_k", "top_p"}``): `sekd.train.sampling.sample`, example e drawn
  with seed ``row_seed(seed, e)``, so a sample does not depend on the batch size or order.

Layout of an output directory: ``outputs.jsonl``, one line per training example in training
order, ``{"index": e, "hypotheses": [{"ids", "finished", "text", "bleu"}, ...]}`` (token ids up
to and including the first EOS when ``finished``, else the ``max_new_tokens`` generated; the
one-line text without special tokens; sentence BLEU to the reference), and ``meta.json`` (the
gold examples' fingerprint, `sekd.teacher.store.fingerprint`; the generation setting; the
teacher's provenance; counts and throughput). It is written to ``<dir>.tmp`` and renamed when
complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU
from tqdm import tqdm
from transformers import GenerationConfig, LogitsProcessorList

from sekd import atomic, models
from sekd.data import batches
from sekd.data import tokenizer as tokenizers
from sekd.data.prompts import DEFAULT_TRUNCATION, IGNORE_INDEX, RESPONSE_NEWLINE
from sekd.evaluate import decode
from sekd.plan.schema import default
from sekd.teacher.store import fingerprint
from sekd.train import sampling

log = logging.getLogger("sekd.teacher.outputs")

FORMAT = 1
ENGINES = ("hf", "vllm")
BEAM_KEYS = {"num_beams"}
SAMPLING_KEYS = {"temperature", "top_k", "top_p"}

Generated = list[tuple[list[int], bool]]
# the ids that end a hypothesis: the tokenizer's EOS, or it and generation_config's (decode.end_ids)
Ends = int | Sequence[int]
"""The hypotheses of one prompt: (token ids, finished), best first; ids end with the EOS when
finished, else they are the `max_new_tokens` generated (no EOS)."""


@dataclass
class GenerationJob:
    """Everything the teacher_outputs rule gives `generate`."""

    teacher_model: str  # the SFT'd teacher's directory
    tokenizer_dir: str
    train_files: list[str]
    out_dir: str
    languages: dict[str, str]
    generation: dict  # sekd.plan.sequences.generation_job: {"num_beams"} or {"temperature", ...}
    max_length: int  # training.max_length: the prompts are encoded as training encodes them
    max_new_tokens: int  # sequences.max_new_tokens
    seed: int  # of the samples (row_seed(seed, example index)); beam search reads none
    dtype: str = "float32"  # the teacher's
    trust_remote_code: bool = False
    batch_size: int = default("sequences.batch_size")  # prompts per batch (speed only)
    threads: int = 1
    engine: str = default("sequences.engine")  # hf | vllm
    # the sacrebleu tokenizer of the sentence BLEU (scoring.tokenize)
    tokenize: str = default("scoring.tokenize")
    teacher_key: str = "the teacher"  # its config key, for errors (models.<name>)
    # the open choices of the prompts' encoding (prompt.response_newline, training.truncation)
    response_newline: bool = RESPONSE_NEWLINE
    truncation: str = DEFAULT_TRUNCATION


# --- generation ---------------------------------------------------------------------------------


def check_job(job: GenerationJob) -> None:
    """ValueError naming what is wrong with `job`'s settings."""
    keys = set(job.generation)
    if keys not in (BEAM_KEYS, SAMPLING_KEYS):
        raise ValueError(
            f"teacher generation {job.generation!r}: expected {sorted(BEAM_KEYS)} (beam search) "
            f"or {sorted(SAMPLING_KEYS)} (sampling); see sekd.plan.sequences.generation_job"
        )
    if keys == BEAM_KEYS and int(job.generation["num_beams"]) < 1:
        raise ValueError(f"teacher generation: num_beams must be >= 1, got {job.generation}")
    if job.engine not in ENGINES:
        raise ValueError(f"teacher generation engine must be one of {ENGINES}, got {job.engine!r}")
    if job.max_new_tokens < 1 or job.batch_size < 1:
        raise ValueError(
            "sequences.max_new_tokens and sequences.batch_size must be >= 1, got "
            f"{job.max_new_tokens} and {job.batch_size}"
        )


def prompt_ids(example: dict) -> list[int]:
    """The prompt of a training example: its leading tokens whose labels are -100."""
    labels = example["labels"]
    length = next((t for t, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
    return list(example["input_ids"][:length])


def beam_search(
    model: Any,
    prompts: list[list[int]],
    num_beams: int,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    vocab_limit: int | None = None,
) -> list[Generated]:
    """The `num_beams` hypotheses of each prompt, best first (Hugging Face beam search,
    ``num_return_sequences = num_beams``, left-padded prompts), each ending at the first of the
    end ids `eos_token_id` (sekd.train.sampling.split_at_end); no id at or above `vocab_limit`
    (the tokenizer's size; sekd.train.sampling.within_tokenizer)."""
    input_ids, attention = sampling.left_pad(prompts, pad_token_id)
    device = next(model.parameters()).device
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        num_return_sequences=num_beams,
        do_sample=False,
        eos_token_id=sampling.end_ids(eos_token_id),
        pad_token_id=pad_token_id,
        bos_token_id=model.config.bos_token_id,
    )
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            generation_config=config,
            logits_processor=LogitsProcessorList([sampling.WithinTokenizer(vocab_limit)]),
        )
    new = output[:, input_ids.shape[1] :].tolist()
    rows = [sampling.split_at_end(row, eos_token_id) for row in new]
    return [rows[b * num_beams : (b + 1) * num_beams] for b in range(len(prompts))]


def generate_batch(
    model: Any,
    prompts: list[list[int]],
    indices: list[int],
    job: GenerationJob,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    vocab_limit: int | None = None,
) -> list[Generated]:
    """The hypotheses of one batch of prompts (`indices`: their example indices, the samples'
    seeds), with the job's generation setting; no id at or above `vocab_limit` (the tokenizer's
    size: suppressed, not checked after the fact)."""
    g = job.generation
    if set(g) == BEAM_KEYS:
        return beam_search(
            model,
            prompts,
            int(g["num_beams"]),
            job.max_new_tokens,
            eos_token_id,
            pad_token_id,
            vocab_limit,
        )
    drawn = sampling.sample(
        model,
        prompts,
        [sampling.row_seed(job.seed, index) for index in indices],
        temperature=float(g["temperature"]),
        top_k=int(g["top_k"]),
        top_p=float(g["top_p"]),
        max_new_tokens=job.max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        vocab_limit=vocab_limit,
    )
    return [[sample] for sample in drawn]


def generated_batches(
    model: Any, prompts: list[list[int]], job: GenerationJob, eos: Ends, pad: int, vocab: int
) -> Iterator[tuple[list[int], list[Generated]]]:
    """(example indices, their hypotheses) per length-sorted batch of prompts (vLLM: one batch
    of all). No id at or above the tokenizer's size `vocab` is generated (suppressed); one that
    vLLM, which is not told, returns stops the job (no text holds it)."""
    if job.engine == "vllm":
        yield list(range(len(prompts))), generate_vllm(job, prompts, eos)
        return
    model.eval()
    order = decode.length_sorted_batches([len(p) for p in prompts], job.batch_size)
    for batch in tqdm(order, desc="teacher outputs", mininterval=5):
        generated = generate_batch(model, [prompts[i] for i in batch], batch, job, eos, pad, vocab)
        for index, hypotheses in zip(batch, generated, strict=True):
            _check_ids(hypotheses, vocab, job, index)
        yield batch, generated


def generate_all(
    model: Any, prompts: list[list[int]], job: GenerationJob, eos: Ends, pad: int, vocab: int
) -> list[Generated]:
    """The hypotheses of every prompt, in order (`generated_batches`)."""
    out: list[Generated] = [[] for _ in prompts]
    for batch, generated in generated_batches(model, prompts, job, eos, pad, vocab):
        for index, hypotheses in zip(batch, generated, strict=True):
            out[index] = hypotheses
    return out


def _check_ids(hypotheses: Generated, vocab: int, job: GenerationJob, index: int) -> None:
    for ids, _ in hypotheses:
        if ids and max(ids) >= vocab:
            raise ValueError(
                f"{job.teacher_key} ({job.teacher_model}) generated token id {max(ids)} for "
                f"training example {index}, outside the workflow's tokenizer ({vocab} entries): "
                "no text holds it, and the students are trained on text"
            )


# --- vLLM (optional) ----------------------------------------------------------------------------


def generate_vllm(job: GenerationJob, prompts: list[list[int]], eos: Ends) -> list[Generated]:
    """The hypotheses of every prompt from vLLM (engine "vllm"; GPU machines): beam search via
    `LLM.beam_search` (all beams, best first), sampling via `SamplingParams` with the per-request
    seed ``row_seed(seed, example index)`` (vLLM's draws, not `sekd.train.sampling`'s: the same
    distribution, other samples). vLLM batches itself."""
    vllm = decode.import_vllm()
    llm = vllm.LLM(
        model=str(job.teacher_model),
        tokenizer=str(job.teacher_model),
        dtype=job.dtype,
        seed=job.seed,
        trust_remote_code=job.trust_remote_code,
    )
    requests = [{"prompt_token_ids": ids} for ids in prompts]
    g, limit = job.generation, job.max_new_tokens
    if set(g) == BEAM_KEYS:
        from vllm.sampling_params import BeamSearchParams  # optional: imported on use

        params = BeamSearchParams(beam_width=int(g["num_beams"]), max_tokens=limit)
        results = llm.beam_search(requests, params)
        # each beam sequence holds prompt + continuation, best first
        out = [
            [vllm_hypothesis(seq.tokens[len(ids) :], eos, limit) for seq in result.sequences]
            for result, ids in zip(results, prompts, strict=True)
        ]
    else:
        params = [
            vllm.SamplingParams(
                n=1,
                temperature=float(g["temperature"]),
                top_k=int(g["top_k"]) or -1,  # vLLM: -1 = all tokens
                top_p=float(g["top_p"]),
                max_tokens=limit,
                stop_token_ids=sampling.end_ids(eos),
                seed=vllm_seed(job.seed, index),
            )
            for index in range(len(prompts))
        ]
        results = llm.generate(requests, params)
        out = [[vllm_hypothesis(r.outputs[0].token_ids, eos, limit)] for r in results]
    if len(out) != len(prompts):
        raise RuntimeError(f"vLLM returned {len(out)} outputs for {len(prompts)} prompts")
    return out


def vllm_seed(seed: int, index: int) -> int:
    """vLLM's per-request seed of example `index` (31 bits of ``row_seed(seed, index)``)."""
    return sampling.row_seed(seed, index) % 2**31


def vllm_hypothesis(generated: Sequence[int], eos: Ends, max_new_tokens: int) -> tuple[list, bool]:
    """(ids, finished) of a vLLM continuation. vLLM stops at EOS or at `max_new_tokens`; some
    versions leave the EOS out of the tokens, so a shorter continuation without one ended at
    EOS, which is put back."""
    ids, finished = sampling.split_at_end(generated, eos)
    if not finished and len(ids) < max_new_tokens:
        return [*ids, sampling.end_ids(eos)[0]], True
    return ids, finished


# --- the output directory -----------------------------------------------------------------------


def hypothesis_records(
    generated: Generated, reference: str, tokenizer: Any, metric: BLEU
) -> list[dict]:
    """{"ids", "finished", "text", "bleu"} of each hypothesis of one example: the one-line text
    without special tokens, and its sentence BLEU to `reference` (`metric`)."""
    records = []
    for ids, finished in generated:
        text = decode.hypothesis(tokenizer, ids)
        bleu = metric.sentence_score(text, [reference]).score
        records.append({"ids": ids, "finished": finished, "text": text, "bleu": bleu})
    return records


def count(generated: list[Generated]) -> dict[str, int]:
    """examples, hypotheses, empty (EOS first) and truncated (no EOS within max_new_tokens)."""
    hypotheses = [h for example in generated for h in example]
    return {
        "examples": len(generated),
        "hypotheses": len(hypotheses),
        "empty": sum(finished and len(ids) == 1 for ids, finished in hypotheses),
        "truncated": sum(not finished for _, finished in hypotheses),
    }


def _load_teacher(job: GenerationJob, tok: Any) -> Any:
    """The SFT'd teacher, with the checks train.py makes of a teacher (same tokenizer, covers
    its vocabulary), on the GPU when there is one; None for engine vllm (which loads it)."""
    models.check_tokenizer(job.teacher_model, tok, job.teacher_key, None, job.trust_remote_code)
    if job.engine == "vllm":
        return None
    teacher = models.load_teacher(
        job.teacher_model, job.dtype, job.trust_remote_code, len(tok), key=job.teacher_key
    )
    models.check_vocab(teacher, tok, job.teacher_model, job.teacher_key)
    return teacher.to("cuda" if torch.cuda.is_available() else "cpu")


def generate(job: GenerationJob) -> dict:
    """Generate the teacher's outputs for every training prompt and write `job.out_dir`
    (through ``<out_dir>.tmp``, renamed when complete); return its meta.json."""
    check_job(job)
    models.configure_torch_threads(job.threads)
    start = time.perf_counter()
    tok = tokenizers.load(job.tokenizer_dir)
    records, kept = batches.read_records(job.train_files), []
    examples = batches.encode_records(
        records,
        tok,
        job.languages,
        job.max_length,
        kept,
        response_newline=job.response_newline,
        truncation=job.truncation,
    )
    prompts = [prompt_ids(example) for example in examples]
    teacher = _load_teacher(job, tok)
    with atomic.replacing(job.out_dir, directory=True) as tmp:
        log.info(
            "teacher %s: %s over %d training prompts, batch %d, engine %s",
            *(job.teacher_model, job.generation, len(prompts), job.batch_size, job.engine),
        )
        lines, counts = _output_lines(teacher, prompts, [records[i] for i in kept], tok, job)
        with open(tmp / "outputs.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(line + "\n" for line in lines)
        seconds = time.perf_counter() - start
        meta = _meta(job, examples, teacher, counts, seconds)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    c = meta["counts"]
    log.info(
        "%s: %d examples, %d hypotheses (%d empty, %d truncated at %d new tokens), %.1f s "
        "(%.2f sentences/s)",
        *(job.out_dir, c["examples"], c["hypotheses"], c["empty"], c["truncated"]),
        *(job.max_new_tokens, seconds, meta["sentences_per_second"]),
    )
    return meta


def _output_lines(
    teacher: Any, prompts: list[list[int]], records: list[dict], tok: Any, job: GenerationJob
) -> tuple[list[str], dict[str, int]]:
    """The outputs.jsonl line (compact JSON) of each prompt, in prompt order, and the counts of
    all hypotheses; `records[i]` is the training record of prompt i."""
    metric = BLEU(tokenize=job.tokenize, effective_order=True)
    lines: list[str] = [""] * len(prompts)  # JSON, compact at 52k prompts x K beams
    counts = dict.fromkeys(("examples", "hypotheses", "empty", "truncated"), 0)
    # the tokenizer's EOS and the teacher's generation_config end ids (Llama-3's, Gemma's)
    eos, pad = decode.end_ids(teacher, tok), tok.pad_token_id
    for batch, generated in generated_batches(teacher, prompts, job, eos, pad, len(tok)):
        for index, hypotheses in zip(batch, generated, strict=True):
            reference = records[index]["target"]
            line = {
                "index": index,
                "hypotheses": hypothesis_records(hypotheses, reference, tok, metric),
            }
            lines[index] = json.dumps(line, ensure_ascii=False)
        for key, value in count(generated).items():
            counts[key] += value
    return lines, counts


def _meta(
    job: GenerationJob, examples: list, teacher: Any, counts: dict[str, int], seconds: float
) -> dict:
    """meta.json: format, fingerprint, the settings, the teacher's provenance, counts and
    throughput."""
    return {
        "format": FORMAT,
        "fingerprint": fingerprint(examples),
        "generation": job.generation,
        "seed": job.seed,
        "max_length": job.max_length,
        "max_new_tokens": job.max_new_tokens,
        "tokenize": job.tokenize,
        "engine": job.engine,
        "teacher": models.provenance(job.teacher_model, None, teacher),
        "teacher_dtype": job.dtype,
        "counts": counts,
        "seconds": round(seconds, 2),
        "sentences_per_second": round(len(examples) / max(seconds, 1e-9), 3),
    }


# --- reading ------------------------------------------------------------------------------------


def read_meta(out_dir: str | Path) -> dict:
    """meta.json of a teacher outputs directory; an error naming the rule when it is missing."""
    path = Path(out_dir) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{out_dir}: no teacher outputs (no meta.json); run the rule teacher_outputs"
        )
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{out_dir}: teacher outputs of format {meta.get('format')!r}, expected {FORMAT}; "
            "rerun the rule teacher_outputs"
        )
    return meta


def pick_hypothesis(hypotheses: list[dict], pick: str) -> dict:
    """``top``: the first hypothesis (best beam, or the sample); ``bleu``: the highest sentence
    BLEU to the reference, the first on ties (Seq-Inter; sekd.plan.objectives.PICKS)."""
    if not hypotheses:
        raise ValueError("an example without hypotheses")
    if pick == "top":
        return hypotheses[0]
    if pick == "bleu":
        return max(hypotheses, key=lambda h: h["bleu"])  # max keeps the first of equals
    raise ValueError(f"pick {pick!r}: expected 'top' or 'bleu'")


def _read_outputs(out_dir: Path, expected: int) -> list[dict]:
    path = out_dir / "outputs.jsonl"
    with open(path, encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    if len(lines) != expected or any(line["index"] != e for e, line in enumerate(lines)):
        raise ValueError(
            f"{path}: {len(lines)} examples for {expected} training examples (or out of order); "
            "rerun the rule teacher_outputs"
        )
    return lines


def teacher_example(
    gold: dict, target: list[int], max_length: int, keep_eos: int | None = None
) -> tuple[dict, bool]:
    """(example, cut): `gold`'s prompt + `target`, labels -100 on the prompt, cut at
    `max_length` tokens (cut = whether it was); `gold`'s "index" is kept. `keep_eos`, the EOS
    id under training.truncation: keep_eos: a cut target that ended with it keeps it as its
    last token, as sekd.data.prompts.encode_example does for the gold targets."""
    prompt = prompt_ids(gold)
    input_ids = prompt + target
    labels = [IGNORE_INDEX] * len(prompt) + target
    cut = len(input_ids) > max_length
    input_ids, labels = input_ids[:max_length], labels[:max_length]
    if cut and keep_eos is not None and target[-1] == keep_eos and len(prompt) < max_length:
        input_ids[-1] = labels[-1] = keep_eos
    example = {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": [1] * len(input_ids),
    }
    if "index" in gold:
        example["index"] = gold["index"]
    return example, cut


def load_examples(
    out_dir: str | Path,
    gold_examples: list[dict],
    pick: str,
    eos_token_id: int,
    max_length: int,
    stats: dict | None = None,
    truncation: str = DEFAULT_TRUNCATION,
) -> list[dict]:
    """Training examples on the teacher's outputs: one per gold example (same order, same
    prompt), its target the `pick`ed hypothesis (`pick_hypothesis`) with its EOS when it has
    one, cut at `max_length`. The outputs must be those of `gold_examples` (fingerprint).
    `stats`, when given, receives examples, empty (EOS only), truncated (by generation: no EOS)
    and cut (at max_length) counts of the targets; they are logged."""
    out_dir = Path(out_dir)
    meta = read_meta(out_dir)
    if meta["fingerprint"] != fingerprint(gold_examples):
        raise ValueError(
            f"{out_dir}: the teacher outputs were generated for another training set (its "
            "fingerprint differs from the training examples'); rerun the rule teacher_outputs"
        )
    examples, counts = [], {"examples": 0, "empty": 0, "truncated": 0, "cut": 0}
    for gold, line in zip(gold_examples, _read_outputs(out_dir, len(gold_examples)), strict=True):
        chosen = pick_hypothesis(line["hypotheses"], pick)
        target = list(chosen["ids"])
        if chosen["finished"] != (bool(target) and target[-1] == eos_token_id):
            raise ValueError(
                f"{out_dir}: example {line['index']}: finished={chosen['finished']} but its ids "
                f"{'do not end' if chosen['finished'] else 'end'} with EOS {eos_token_id}; "
                "generated with another tokenizer? rerun the rule teacher_outputs"
            )
        keep_eos = eos_token_id if truncation == "keep_eos" else None
        example, cut = teacher_example(gold, target, max_length, keep_eos)
        examples.append(example)
        counts["examples"] += 1
        counts["empty"] += target == [eos_token_id]
        counts["truncated"] += not chosen["finished"]
        counts["cut"] += cut
    log.info(
        "%s (pick %s): %d examples; targets empty %d, truncated by generation %d, cut at "
        "max_length=%d: %d",
        *(out_dir, pick, counts["examples"], counts["empty"], counts["truncated"]),
        *(max_length, counts["cut"]),
    )
    if stats is not None:
        stats.update(counts)
    return examples
