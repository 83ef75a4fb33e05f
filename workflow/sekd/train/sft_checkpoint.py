"""Which SFT checkpoint is kept (issue 11, open choice 3; config key training.sft_selection).

§4.2: "we use a validation dataset to select the best checkpoint" -- by which measure, the paper
does not say. ``valid_loss`` (the default) keeps the checkpoint of lowest validation loss,
``valid_bleu`` the one of highest validation BLEU, ``last`` the last one. The checkpoints compared
are those of every evaluation: each epoch end, or every training.eval_steps steps.

``valid_bleu`` is `ValidBleu`, a Trainer callback: at each evaluation it greedy-decodes the
validation set with the model being trained (sekd.evaluate.decode.translate: batched, the prompts of
rule decode) and adds ``eval_bleu`` to the evaluation's metrics, which the Trainer then compares
(``metric_for_best_model="eval_bleu"``). The BLEU is the mean over the validation directions of
each direction's corpus BLEU (sacrebleu, scoring.tokenize), as Table 1 averages directions.
Every rank decodes the whole set (the same greedy steps on each, so ZeRO-3's collective forwards
stay in step); on one GPU or CPU it runs once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from transformers import TrainerCallback

from sekd.data.prompts import RESPONSE_NEWLINE
from sekd.evaluate import bleu as score
from sekd.evaluate import decode
from sekd.plan.schema import choices, default

log = logging.getLogger("sekd.train.sft_checkpoint")

SELECTIONS: tuple[str, ...] = choices("training.sft_selection")
DEFAULT: str = default("training.sft_selection")
METRICS = {"valid_loss": ("eval_loss", False), "valid_bleu": ("eval_bleu", True)}


def sft_selection(training: Mapping[str, Any]) -> str:
    """The selection of an SFT run from its `training` section: training.sft_selection (absent:
    the default), and ``last`` when training.select_best_sft is false (the older switch, kept:
    false means no selection). ValueError when the two contradict (select_best_sft false and
    sft_selection valid_bleu)."""
    selection = training.get("sft_selection", DEFAULT)
    if selection not in SELECTIONS:
        raise ValueError(
            f"training.sft_selection must be one of {', '.join(SELECTIONS)}, got {selection!r}"
        )
    if training.get("select_best_sft", default("training.select_best_sft")):
        return selection
    if selection == "valid_bleu":
        raise ValueError(
            "training.select_best_sft is false (keep the last SFT checkpoint) but "
            "training.sft_selection is valid_bleu; set one of them (sft_selection: last replaces "
            "select_best_sft: false)"
        )
    return "last"


def group_by_direction(records: list[dict]) -> dict[str, list[dict]]:
    """The validation records per direction, in file order."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["direction"], []).append(record)
    return groups


def validation_bleu(
    model: Any,
    tokenizer: Any,
    records: list[dict],
    languages: Mapping[str, str],
    options: Mapping[str, Any],
) -> dict[str, float]:
    """{direction: corpus BLEU} of `model`'s greedy translations of `records` and their mean
    ("mean"). `options`: tokenize (scoring.tokenize), max_new_tokens and batch_size
    (decoding.*), response_newline (prompt.response_newline)."""
    scores = {}
    for direction, group in group_by_direction(records).items():
        hypotheses = decode.translate(
            model,
            tokenizer,
            [r["source"] for r in group],
            direction,
            languages,
            num_beams=1,
            max_new_tokens=options["max_new_tokens"],
            batch_size=options["batch_size"],
            response_newline=options.get("response_newline", RESPONSE_NEWLINE),
        )
        references = [r["target"] for r in group]
        scores[direction] = score.bleu(hypotheses, references, options["tokenize"])["bleu"]
    if not scores:
        raise ValueError("training.sft_selection: valid_bleu needs validation records; none given")
    scores["mean"] = sum(scores.values()) / len(scores)
    return scores


class ValidBleu(TrainerCallback):
    """Adds ``eval_bleu`` (validation BLEU, `validation_bleu`) to each evaluation's metrics,
    before the Trainer compares them to keep the best checkpoint; `history` keeps every
    evaluation's scores (step, per direction, mean), also appended to the log history."""

    def __init__(
        self,
        tokenizer: Any,
        records: list[dict],
        languages: Mapping[str, str],
        options: Mapping[str, Any],
    ):
        self.tokenizer = tokenizer
        self.records = records
        self.languages = languages
        self.options = options
        self.history: list[dict] = []

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics is None or model is None:
            raise RuntimeError("ValidBleu: the Trainer passed no metrics or model to on_evaluate")
        was_training = model.training
        try:
            scores = validation_bleu(
                model, self.tokenizer, self.records, self.languages, self.options
            )
        finally:
            model.train(was_training)
        metrics["eval_bleu"] = scores["mean"]
        entry = {"step": state.global_step, "eval_bleu": scores["mean"], "eval_bleu_by": scores}
        self.history.append(entry)
        state.log_history.append(dict(entry))
        log.info("step %d: validation BLEU %.2f %s", state.global_step, scores["mean"], scores)
        return control
