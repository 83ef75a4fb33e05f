"""The Trainer of every run: the Hugging Face `Trainer` with the paper's loss (§3, §4.2).

SFT minimises eq. 2; KD minimises `sekd.losses.distill_loss` with the run's objective (eqs. 3-10),
against a frozen teacher run in every step or its stored outputs (sekd.teacher_store).
"""

from __future__ import annotations

import math

import torch
from transformers import Trainer

from sekd.errors import NonFiniteError
from sekd.losses import distill_loss, progressive_beta
from sekd.teacher_store import teacher_inputs
from sekd.variants import Variant


class DistillTrainer(Trainer):
    """`Trainer` whose loss is `distill_loss` (eq. 2 for SFT; eqs. 3-10 for KD). The teacher
    is a model run in every step, or its stored outputs arrive with the batch (`store_*`
    fields, sekd.teacher_store). Logs ``hard_fraction`` (tokens of the hard set, eqs. 7-9) and,
    under a progressive schedule (Fig. 3), ``beta``."""

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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Token-mean loss of one micro-batch: input_ids, attention_mask, labels [B, T]
        (-100 on prompt and padding); position t predicts token t+1."""
        labels = inputs["labels"][:, 1:]  # [B, T-1]
        stored = {k: inputs.pop(k) for k in list(inputs) if k.startswith("store_")}
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        loss_kwargs = self.current_loss_kwargs()
        self._last_beta = loss_kwargs.get("beta")
        teacher, offset = self.teacher_logits(
            stored, inputs, labels, outputs.logits.shape[-1], loss_kwargs.get("lam")
        )
        if teacher is not None and not stored and not torch.isfinite(teacher).all():
            # an all -inf teacher row would even give a finite loss on the chunked path
            raise NonFiniteError(self.non_finite_message("the teacher's logits hold NaN or inf"))
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
        return (result.loss, outputs) if return_outputs else result.loss

    def non_finite_message(self, culprit: str) -> str:
        """Why training stops: the step (1-based, counting optimizer steps), the run, the model."""
        phase = "training" if self.model.training else "evaluation"
        return (
            f"{self.variant.name}: {culprit} at optimizer step {self.state.global_step + 1} "
            f"({phase}); stopped at the first bad step, nothing of it is saved"
        )

    def log(self, logs: dict, start_time=None) -> None:
        if self._tokens and "loss" in logs:
            logs["hard_fraction"] = round(self._hard_tokens / self._tokens, 4)
            self._hard_tokens = self._tokens = 0
        if self.variant.beta_schedule is not None and "loss" in logs:
            logs["beta"] = round(self._last_beta, 4)  # β of the last step's loss
        super().log(logs, start_time)


def _culprit(student: torch.Tensor, teacher: torch.Tensor | None, stored: dict) -> str:
    """Which input made the loss NaN/inf: the student's logits [B, T, V], the teacher's
    (stored log-probabilities may hold -inf for a probability of 0, never NaN), or neither."""
    if not torch.isfinite(student).all():
        return "the student's logits hold NaN or inf"
    if teacher is not None and stored and (teacher.isnan().any() or (teacher == math.inf).any()):
        return "the teacher store's log-probabilities hold NaN or +inf"
    return "the loss is NaN or inf although the student's and teacher's logits are finite"
