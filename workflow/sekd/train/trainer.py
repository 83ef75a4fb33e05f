"""The Trainer of every run: the Hugging Face `Trainer` with the paper's loss (§3, §4.2).

SFT minimises eq. 2; KD minimises `sekd.train.losses.distill_loss` with the run's objective (eqs.
3-10), against a frozen teacher run in every step or its stored outputs (sekd.teacher.store).

Objectives whose sequences end in "student" (`sekd.plan.objectives.SEQUENCE_SOURCES`) train on the
student's own samples of the batch's prompts (sekd.train.onpolicy), drawn in the step itself:
"student" in every step; "gold+student" in the optimizer steps `sekd.train.onpolicy.onpolicy_step`
picks (probability onpolicy_fraction), else on the gold batch; "teacher+student" in every
micro-batch as ½·(loss on the batch's own sequences) + ½·(loss on the student's samples).

Two run options make "the batch" the optimizer batch (every accumulation step and rank) instead
of one micro-batch (sekd.train.pool; the step's micro-batches are the ones the Trainer prefetches in
`get_batch_samples`):
- ``norm=optimizer_batch`` (kd.normalisation): the loss is Σ(per-token losses of the step) / N,
  N the step's trained tokens (eqs. 1, 9 taken literally); each micro-batch returns
  loss_sum · G · W / N, which the Trainer's 1/G (accumulation) and the ranks' gradient mean (W)
  turn into that. Off-policy objectives only: on-policy steps draw their sequences, hence N,
  in the step (a named error).
- ``pool=optimizer_batch`` (kd.topk_pool, sekd_topk): the hard tokens are the ⌈K%·N⌉ of the
  step with the largest d, found by a no-grad pre-pass (student and teacher forward) over the
  step's micro-batches at its first one: those steps cost one more forward of both models.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from transformers import Trainer
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from sekd.errors import NonFiniteError
from sekd.plan.objectives import get_objective
from sekd.plan.variants import Variant
from sekd.teacher.store import teacher_inputs
from sekd.train import onpolicy, pool
from sekd.train.checkpoints import StepTimer, writing
from sekd.train.losses import distill_loss, progressive_beta
from sekd.train.onpolicy import OnPolicy, OnPolicyStats

log = logging.getLogger("sekd.train.trainer")

ONPOLICY_LOGS = ("onpolicy_fraction", "generation_share", "empty_samples", "truncated_samples")


class DistillTrainer(Trainer):
    """`Trainer` whose loss is `distill_loss` (eq. 2 for SFT; eqs. 3-10 for KD). The teacher
    is a model run in every step, or its stored outputs arrive with the batch (`store_*`
    fields, sekd.teacher.store). Logs ``hard_fraction`` (tokens of the hard set, eqs. 7-9) and,
    under a progressive schedule (Fig. 3), ``beta``.

    On-policy objectives need `onpolicy` (sampling settings) and batches with ``example_index``
    and ``prompt_length`` (`sekd.data.batches.PadCollator(prompt_fields=True)`); per logging
    interval they log ``onpolicy_fraction`` (on-policy optimizer steps / steps),
    ``generation_share`` (seconds sampling / seconds of the steps, from `step_timer`),
    ``empty_samples`` and ``truncated_samples`` (summed over the ranks); `onpolicy_totals`
    gives the run's."""

    def __init__(
        self,
        *args,
        variant: Variant,
        teacher=None,
        onpolicy: OnPolicy | None = None,
        step_timer: StepTimer | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.variant = variant
        self.teacher = teacher
        # The loss is a per-micro-batch token mean: Trainer averages it over accumulation.
        self.model_accepts_loss_kwargs = False
        self._hard_tokens = 0
        self._tokens = 0
        self._last_beta = None
        sequences = get_objective(variant.objective).sequences
        if sequences.endswith("student") != (onpolicy is not None):
            raise ValueError(
                f"{variant.name}: sequences {sequences!r} "
                + ("need on-policy sampling settings" if onpolicy is None else "sample nothing")
            )
        self.onpolicy = onpolicy
        if onpolicy is not None and step_timer is None:
            step_timer = StepTimer()
            self.add_callback(step_timer)
        self.step_timer = step_timer
        self._interval = OnPolicyStats()  # since the last log
        self._totals = OnPolicyStats()  # this process's run
        self._timer_mark = 0  # step_timer.seconds logged so far
        self._decision: tuple[int, bool] | None = None  # (global step, on-policy)
        self._norm_step = variant.option("norm") == "optimizer_batch"
        self._pool_step = variant.option("pool") == "optimizer_batch"
        if self._norm_step and onpolicy is not None:
            raise ValueError(
                f"{variant.name}: kd.normalisation=optimizer_batch is for objectives trained on "
                "fixed sequences; this one samples its sequences in the step (on-policy), so "
                "the step's token count is not known beforehand"
            )
        if self._pool_step:
            log.info(
                "%s: top-K%% pool over the optimizer batch: one extra no-grad forward of the "
                "student and the teacher per micro-batch",
                variant.name,
            )
        self._step_batches: list[dict] = []  # the optimizer step's micro-batches (prefetched)
        self._step_tokens = 0  # N of the step, all ranks (norm=optimizer_batch)
        self._micro = 0  # micro-batches of the step computed so far
        self._step_hard: list[torch.Tensor] | None = None  # pool=optimizer_batch, [B, T-1] each

    def current_loss_kwargs(self) -> dict:
        """The objective's hyper-parameters at this step (β follows its schedule, Fig. 3)."""
        kwargs = self.variant.loss_kwargs()
        schedule = self.variant.beta_schedule
        if schedule is not None:  # Fig. 3: β linear from β_b to β_e over training
            step, total = self.state.global_step, self.state.max_steps
            kwargs["beta"] = progressive_beta(*schedule, step, total)
        return kwargs

    def teacher_logits(
        self, stored: dict, inputs: dict, labels: torch.Tensor, vocab_size: int, lam: float | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(teacher logits or log-probabilities [B, T-1, V], difficulty offset [B, T-1] or
        None) for shifted labels [B, T-1]: from the batch's `store_*` fields `stored`, else
        from the online teacher run on `inputs`; (None, None) for SFT."""
        if stored:
            return teacher_inputs(stored, labels, vocab_size, lam)
        if self.teacher is None:
            return None, None
        with torch.no_grad():
            logits = self.teacher(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).logits
        return logits[:, :-1], None

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The Trainer's prefetch of an optimizer step's micro-batches, kept for the run options
        that pool the step (``norm``, ``pool``: sekd.train.pool); N counted when ``norm`` asks."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self._norm_step or self._pool_step:
            self._step_batches, self._micro, self._step_hard = batches, 0, None
            if self._norm_step:
                self._step_tokens = pool.step_tokens(batches, self.args.device)
        return batches, num_items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Token-mean loss of one micro-batch: input_ids, attention_mask, labels [B, T]
        (-100 on prompt and padding); position t predicts token t+1. For on-policy objectives,
        the weighted sum of the loss on each of `_sequences`' batches. Under
        ``norm=optimizer_batch`` (training): loss_sum · G · W / N of the step (module doc)."""
        stored = {k: inputs.pop(k) for k in list(inputs) if k.startswith("store_")}
        index, prompt_length = inputs.pop("example_index", None), inputs.pop("prompt_length", None)
        hard = self._pooled_hard(model) if self._pool_step and model.training else None
        step_norm = self._norm_step and model.training
        if self._norm_step or self._pool_step:
            self._micro += model.training
        loss = outputs = None
        for weight, batch, on_policy in self._sequences(model, inputs, index, prompt_length):
            result, outputs = self._loss(model, batch, {} if on_policy else stored, on_policy, hard)
            part = self._step_normalised(result.loss_sum) if step_norm else result.loss
            loss = weight * part if loss is None else loss + weight * part
        return (loss, outputs) if return_outputs else loss

    def _step_normalised(self, loss_sum: torch.Tensor) -> torch.Tensor:
        """loss_sum · G · W / N: after the Trainer's 1/G and the W ranks' gradient mean, the
        step's gradient is that of Σ(per-token losses of the step) / N."""
        scale = self.current_gradient_accumulation_steps * self.accelerator.num_processes
        return loss_sum * (scale / max(self._step_tokens, 1))

    def _pooled_hard(self, model) -> torch.Tensor:
        """This micro-batch's hard tokens [B, T-1] under ``pool=optimizer_batch``: at the step's
        first micro-batch, d of every token of the step (a no-grad pre-pass, every rank) and the
        step's top-k (sekd.train.pool.select_hard)."""
        if self._step_hard is None:
            d_parts, labels = [], []
            for batch in self._step_batches:
                d, shifted = self._difficulty(model, self._prepare_inputs(batch))
                d_parts.append(d[shifted != -100])
                labels.append(batch["labels"])
            k = self.current_loss_kwargs()["top_k_percent"]
            chosen = pool.select_hard(d_parts, k)
            self._step_hard = [pool.on_grid(y, h) for y, h in zip(labels, chosen, strict=True)]
        if self._micro >= len(self._step_hard):
            raise RuntimeError(
                f"{self.variant.name}: more micro-batches than the step's prefetched "
                f"{len(self._step_hard)}"
            )
        return self._step_hard[self._micro]

    def _difficulty(self, model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(d [B, T-1] as `distill_loss` computes it for this run, shifted labels [B, T-1]) of
        one micro-batch, without gradients."""
        stored = {k: inputs.pop(k) for k in list(inputs) if k.startswith("store_")}
        labels = inputs["labels"][:, 1:]
        with torch.no_grad():
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            logits = logits.logits
            loss_kwargs = self.current_loss_kwargs()
            teacher, offset = self.teacher_logits(
                stored, inputs, labels, logits.shape[-1], loss_kwargs.get("lam")
            )
            result = distill_loss(
                logits[:, :-1],
                teacher,
                labels,
                self.variant.objective,
                difficulty_offset=offset,
                **loss_kwargs,
            )
        return result.difficulty, labels

    def _loss(
        self, model, inputs: dict, stored: dict, on_policy: bool, hard: torch.Tensor | None = None
    ):
        """(DistillOutput, student outputs) of `distill_loss` on one batch (input_ids,
        attention_mask, labels [B, T]); `on_policy`: the batch holds the student's samples;
        `hard` [B, T-1]: sekd_topk's hard tokens chosen beforehand (pool=optimizer_batch)."""
        labels = inputs["labels"][:, 1:]  # [B, T-1]
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss_kwargs = self.current_loss_kwargs()
        self._last_beta = loss_kwargs.get("beta")
        teacher, offset = self.teacher_logits(
            stored, inputs, labels, outputs.logits.shape[-1], loss_kwargs.get("lam")
        )
        if teacher is not None and not stored and not torch.isfinite(teacher).all():
            # an all -inf teacher row would even give a finite loss on the chunked path
            raise NonFiniteError(self.non_finite_message("the teacher's logits hold NaN or inf"))
        if self.onpolicy is not None:
            loss_kwargs["on_policy"] = on_policy
        if hard is not None:
            loss_kwargs["hard_mask"] = hard.to(labels.device)
        result = distill_loss(
            outputs.logits[:, :-1],  # [B, T-1, V]
            teacher,
            labels,
            self.variant.objective,
            difficulty_offset=offset,
            **loss_kwargs,
        )
        if not torch.isfinite(result.loss):  # one scalar per step
            raise NonFiniteError(self.non_finite_message(_culprit(outputs.logits, teacher, stored)))
        if model.training and result.hard_mask is not None:
            self._hard_tokens += int(result.hard_mask.sum())
            self._tokens += result.num_tokens
        return result, outputs

    def _sequences(
        self, model, inputs: dict, index: torch.Tensor | None, prompt_length: torch.Tensor | None
    ) -> list[tuple[float, dict, bool]]:
        """The micro-batch's batches as (weight, batch, on_policy): the gold (or teacher) batch
        itself, the student's samples of its prompts, or both halved ("teacher+student")."""
        if self.onpolicy is None or not self._onpolicy_now(model.training):
            return [(1.0, inputs, False)]
        if index is None or prompt_length is None:
            raise ValueError(
                f"{self.variant.name}: on-policy batches need example_index and prompt_length "
                "(sekd.data.batches.PadCollator(prompt_fields=True))"
            )
        student = self._student_batch(model, inputs["input_ids"], index, prompt_length)
        if self.onpolicy.sequences == "teacher+student":
            return [(0.5, inputs, False), (0.5, student, True)]
        return [(1.0, student, True)]

    def _onpolicy_now(self, training: bool) -> bool:
        """Whether this optimizer step trains on student samples
        (`sekd.train.onpolicy.onpolicy_step`, decided once per step and counted while training)."""
        step = self.state.global_step
        if self._decision is None or self._decision[0] != step:
            on = onpolicy.onpolicy_step(self.onpolicy.seed, step, self.onpolicy.fraction)
            self._decision = (step, on)
            if training:
                for stats in (self._interval, self._totals):
                    stats.steps += 1
                    stats.onpolicy_steps += on
        return self._decision[1]

    def _student_batch(
        self, model, input_ids: torch.Tensor, index: torch.Tensor, prompt_length: torch.Tensor
    ) -> dict:
        """The student's samples of the prompts of `input_ids` [B, T] (prompt_length [B]),
        seeded by example `index` [B] and epoch, repacked on the batch's device."""
        prompts = onpolicy.prompts_of(input_ids, prompt_length)
        seeds = onpolicy.sample_seeds(
            self.onpolicy.seed, index.tolist(), onpolicy.epoch_of(self.state.epoch)
        )
        start = time.perf_counter()
        repacked = onpolicy.draw(
            self.accelerator.unwrap_model(model),
            prompts,
            seeds,
            self.onpolicy,
            synced_gpus=is_deepspeed_zero3_enabled(),
        )
        seconds = time.perf_counter() - start
        if model.training:
            for stats in (self._interval, self._totals):
                stats.samples += len(prompts)
                stats.empty_samples += repacked.empty
                stats.truncated_samples += repacked.truncated
                stats.generation_seconds += seconds
        return {k: v.to(input_ids.device) for k, v in repacked.batch.items()}

    def non_finite_message(self, culprit: str) -> str:
        """Why training stops: the step (1-based, counting optimizer steps), the run, the model."""
        phase = "training" if self.model.training else "evaluation"
        return (
            f"{self.variant.name}: {culprit} at optimizer step {self.state.global_step + 1} "
            f"({phase}); stopped at the first bad step, nothing of it is saved"
        )

    def _save_checkpoint(self, model, trial, *args, **kwargs) -> None:
        """The Trainer's checkpoint; out of space, `sekd.errors.DiskFullError` naming it and the
        free space, the partial checkpoint removed, the previous one left (checkpoints.writing)."""
        checkpoint = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        with writing(checkpoint):
            super()._save_checkpoint(model, trial, *args, **kwargs)

    def log(self, logs: dict, start_time=None) -> None:
        if self._tokens and "loss" in logs:
            logs["hard_fraction"] = round(self._hard_tokens / self._tokens, 4)
            self._hard_tokens = self._tokens = 0
        if self.variant.beta_schedule is not None and "loss" in logs:
            logs["beta"] = round(self._last_beta, 4)  # β of the last step's loss
        if self.onpolicy is not None and "loss" in logs:  # every rank logs here (collective)
            seconds = self.step_timer.seconds
            self._interval.step_seconds = sum(seconds[self._timer_mark :])
            self._timer_mark = len(seconds)
            report = self._reduced(self._interval).report()
            self._interval = OnPolicyStats()
            for key in ONPOLICY_LOGS:
                logs[key] = report[key]
        super().log(logs, start_time)

    def onpolicy_totals(self) -> dict | None:
        """The run's on-policy counters summed over the ranks (`OnPolicyStats.report`), of this
        process's steps (not those before a resume); None for other objectives. Collective: every
        rank calls it."""
        if self.onpolicy is None:
            return None
        self._totals.step_seconds = sum(self.step_timer.seconds)
        return self._reduced(self._totals).report()

    def _reduced(self, stats: OnPolicyStats) -> OnPolicyStats:
        """`stats` with the sample counts and seconds summed over the ranks (the step counts
        are the same on every rank)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return stats
        keys = ("samples", "empty_samples", "truncated_samples")
        keys += ("generation_seconds", "step_seconds")
        values = torch.tensor(
            [float(getattr(stats, k)) for k in keys], dtype=torch.float64, device=self.args.device
        )
        torch.distributed.all_reduce(values)
        out = OnPolicyStats(steps=stats.steps, onpolicy_steps=stats.onpolicy_steps)
        for key, value in zip(keys, values.tolist(), strict=True):
            setattr(out, key, value if key.endswith("seconds") else int(value))
        return out


def _culprit(student: torch.Tensor, teacher: torch.Tensor | None, stored: dict) -> str:
    """Which input made the loss NaN/inf: the student's logits [B, T, V], the teacher's
    (stored log-probabilities may hold -inf for a probability of 0, never NaN), or neither."""
    if not torch.isfinite(student).all():
        return "the student's logits hold NaN or inf"
    if teacher is not None and stored and (teacher.isnan().any() or (teacher == math.inf).any()):
        return "the teacher store's log-probabilities hold NaN or +inf"
    return "the loss is NaN or inf although the student's and teacher's logits are finite"
