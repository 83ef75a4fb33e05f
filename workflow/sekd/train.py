"""SFT and KD training on the Hugging Face `Trainer` (§4.2).

* SFT (teachers and student): eq. 2 on the ParroT-formatted training set, keeping the checkpoint
  with the lowest loss on the WMT21 validation set.
* KD: the student starts from the same base model as the student's SFT (not from the SFT'd
  student), same data and hyper-parameters; the SFT'd teacher is frozen in eval mode and the loss
  is `sekd.losses.distill_loss` with the run's objective. The final checkpoint is kept.
The fraction of hard tokens per logging interval is logged as ``hard_fraction``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sekd import data, prompts
from sekd.variants import Variant, parse_variant

log = logging.getLogger("sekd.train")


@dataclass
class TrainJob:
    """Everything one training run reads; built by the rule from its own slice of the config."""

    variant: str  # "sft" or a KD run name (sekd.variants)
    base_model: str  # a local directory or hub id
    tokenizer_dir: str
    train_files: list[str]
    out_dir: str
    checkpoint_dir: str
    languages: dict[str, str]
    training: dict  # the config's `training` section
    seed: int
    dtype: str = "float32"
    trust_remote_code: bool = False
    valid_files: list[str] = field(default_factory=list)
    teacher_model: str | None = None  # SFT'd teacher directory (KD only)
    teacher_dtype: str = "float32"
    threads: int = 1


def encode_records(records: list[dict], tokenizer, languages: dict, max_length: int) -> list[dict]:
    """Tokenize {direction, source, target} records into masked examples (prompt labels = -100)."""
    from tqdm import tqdm

    examples, truncated, dropped = [], 0, 0
    for rec in tqdm(records, desc="tokenize", mininterval=5):
        prompt = prompts.build_prompt(rec["source"], rec["direction"], languages)
        ex = prompts.encode_example(tokenizer, prompt, rec["target"], max_length)
        if ex is None:
            dropped += 1
            continue
        truncated += bool(ex.pop("truncated", False))
        examples.append(ex)
    log.info(
        "%d examples (%d truncated to %d tokens, %d dropped: prompt too long)",
        len(examples),
        truncated,
        max_length,
        dropped,
    )
    return examples


class PadCollator:
    """Right-pad a batch of examples; labels are padded with -100."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(ex["input_ids"]) for ex in batch)

        def pad(key: str, value: int):
            return torch.tensor([ex[key] + [value] * (width - len(ex[key])) for ex in batch])

        return {
            "input_ids": pad("input_ids", self.pad_id),
            "attention_mask": pad("attention_mask", 0),
            "labels": pad("labels", -100),
        }


def _make_trainer_class():
    import torch
    from transformers import Trainer

    from sekd.losses import distill_loss, progressive_beta

    class DistillTrainer(Trainer):
        """`Trainer` whose loss is `distill_loss` (eq. 2 for SFT; eqs. 3-10 for KD)."""

        def __init__(self, *args, variant: Variant, teacher=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.variant = variant
            self.teacher = teacher
            # The loss is a per-micro-batch token mean: Trainer averages it over accumulation.
            self.model_accepts_loss_kwargs = False
            self._hard_tokens = 0
            self._tokens = 0
            self._last_beta = None

        def current_loss_kwargs(self) -> dict:
            kwargs = self.variant.loss_kwargs()
            schedule = self.variant.beta_schedule
            if schedule is not None:  # Fig. 3: β linear from β_b to β_e over training
                step, total = self.state.global_step, self.state.max_steps
                kwargs["beta"] = progressive_beta(*schedule, step, total)
            return kwargs

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            teacher_logits = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_logits = self.teacher(
                        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
                    ).logits[:, :-1]
            # Position t predicts token t+1.
            loss_kwargs = self.current_loss_kwargs()
            self._last_beta = loss_kwargs.get("beta")
            result = distill_loss(
                outputs.logits[:, :-1],
                teacher_logits,
                labels[:, 1:],
                self.variant.objective,
                **loss_kwargs,
            )
            if model.training and result.hard_mask is not None:
                self._hard_tokens += int(result.hard_mask.sum())
                self._tokens += result.num_tokens
            return (result.loss, outputs) if return_outputs else result.loss

        def log(self, logs: dict, start_time=None) -> None:
            if self._tokens and "loss" in logs:
                logs["hard_fraction"] = round(self._hard_tokens / self._tokens, 4)
                self._hard_tokens = self._tokens = 0
            if self.variant.beta_schedule is not None and "loss" in logs:
                logs["beta"] = round(self._last_beta, 4)  # β of the last step's loss
            super().log(logs, start_time)

    return DistillTrainer


def run(job: TrainJob) -> dict:
    """Train one model and save it (safetensors) to `job.out_dir`; return the summary."""
    import torch
    from transformers import TrainingArguments, set_seed

    from sekd import models
    from sekd import tokenizer as tokenizers
    from sekd.logs import configure_torch_threads

    configure_torch_threads(job.threads)
    variant = Variant("sft") if job.variant == "sft" else parse_variant(job.variant)
    t = job.training
    is_sft = variant.objective == "sft"
    select_best = is_sft and t["select_best_sft"] and bool(job.valid_files)
    use_cuda = torch.cuda.is_available()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = t["per_device_batch_size"] * world_size
    if t["batch_size"] % per_step:
        raise ValueError(
            f"training.batch_size={t['batch_size']} is not a multiple of "
            f"per_device_batch_size x devices = {per_step}"
        )
    interval = "steps" if t["eval_steps"] else "epoch"
    args = TrainingArguments(
        output_dir=job.checkpoint_dir,
        num_train_epochs=t["epochs"],
        per_device_train_batch_size=t["per_device_batch_size"],
        per_device_eval_batch_size=t["per_device_batch_size"],
        gradient_accumulation_steps=t["batch_size"] // per_step,
        learning_rate=t["learning_rate"],
        warmup_ratio=t["warmup_ratio"],
        lr_scheduler_type=t["lr_scheduler"],
        weight_decay=t["weight_decay"],
        logging_steps=t["logging_steps"],
        eval_strategy=interval if select_best else "no",
        eval_steps=t["eval_steps"],
        save_strategy=interval if select_best else "no",
        save_steps=t["eval_steps"],
        save_total_limit=2 if select_best else None,
        load_best_model_at_end=select_best,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        save_safetensors=True,
        save_only_model=True,
        seed=job.seed,
        data_seed=job.seed,
        report_to=[],
        use_cpu=not use_cuda,
        bf16=use_cuda and job.dtype == "bfloat16",
        fp16=use_cuda and job.dtype == "float16",
        remove_unused_columns=False,
        prediction_loss_only=True,
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    set_seed(job.seed)
    tok = tokenizers.load(job.tokenizer_dir)
    records = [r for path in job.train_files for r in data.read_jsonl(path)]
    train_set = encode_records(records, tok, job.languages, t["max_length"])
    if not train_set:
        raise ValueError(
            f"no training example fits training.max_length={t['max_length']} tokens "
            "(the prompt alone is longer); raise training.max_length"
        )
    valid_set = None
    if select_best:
        valid = [r for path in job.valid_files for r in data.read_jsonl(path)]
        valid_set = encode_records(valid, tok, job.languages, t["max_length"])
    # Master weights in fp32; mixed precision (bf16 autocast) on GPUs, as DeepSpeed does.
    model = models.load_causal_lm(job.base_model, "float32", job.trust_remote_code)
    teacher = None
    if not is_sft:
        if job.teacher_model is None:
            raise ValueError(f"objective {variant.objective!r} needs a teacher model")
        teacher = models.load_causal_lm(job.teacher_model, job.teacher_dtype, job.trust_remote_code)
        teacher.eval().requires_grad_(False)
        teacher.to(args.device)
        if teacher.config.vocab_size < model.config.vocab_size:
            raise ValueError("the teacher's vocabulary is smaller than the student's")
    log.info(
        "%s: %d training examples, base model %s, teacher %s",
        job.variant,
        len(train_set),
        job.base_model,
        job.teacher_model,
    )
    trainer = _make_trainer_class()(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=valid_set,
        data_collator=PadCollator(tok.pad_token_id),
        variant=variant,
        teacher=teacher,
    )
    trainer.train()
    summary = {
        "variant": job.variant,
        "objective": variant.objective,
        "seed": job.seed,
        "global_steps": trainer.state.global_step,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_eval_loss": trainer.state.best_metric,
        "log_history": trainer.state.log_history,
    }
    tmp_dir = Path(job.out_dir + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    models.save(trainer.model, tok, tmp_dir)
    (tmp_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(job.out_dir, ignore_errors=True)
    tmp_dir.rename(job.out_dir)
    shutil.rmtree(job.checkpoint_dir, ignore_errors=True)
    log.info("saved %s after %d steps", job.out_dir, trainer.state.global_step)
    return summary
