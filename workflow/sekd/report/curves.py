"""A training run's curves (§5.2.1, the mechanism visible): its Trainer log as one CSV row per
logging step.

Input: results/models/<run>/seed<s>/train_summary.json, whose ``log_history`` holds the Trainer's
logs (sekd.train.job, sekd.train.trainer): ``loss``, ``learning_rate``, ``hard_fraction`` (KD
objectives that split tokens, eqs. 7-9), ``beta`` (under a progressive schedule), ``epoch``,
``step``. Output: results/curves/<run>/seed<s>.csv with the columns of `COLUMNS`, steps in
increasing order, an empty cell where the run does not log a column. Evaluation and end-of-training
entries (no ``loss``) are not logging steps and are left out.

Standard library only (no pandas): cheap to import and to test.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from sekd import atomic

COLUMNS = ("step", "epoch", "loss", "learning_rate", "hard_fraction", "beta")
# Columns a curve figure may plot (y) and put on the x axis.
VALUES = ("loss", "learning_rate", "hard_fraction", "beta")
AXES = ("step", "epoch")


def _cell(entry: dict, column: str, where: str) -> str:
    """The CSV text of one logged value: "" when not logged, else the number."""
    value = entry.get(column)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {column!r} is {value!r}, not a finite number")
    return repr(value) if isinstance(value, float) else str(value)


def rows(summary: dict, source: str = "train_summary.json") -> list[dict[str, str]]:
    """The logging steps of a train summary, in step order, as {column: text}."""
    history = summary.get("log_history")
    if not isinstance(history, list):
        raise ValueError(f"{source}: no 'log_history' list")
    out = []
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or "loss" not in entry:
            continue  # evaluation or end-of-training entry
        where = f"{source}: log_history[{i}]"
        if "step" not in entry:
            raise ValueError(f"{where}: a logging step without 'step'")
        out.append({column: _cell(entry, column, where) for column in COLUMNS})
    if not out:
        raise ValueError(f"{source}: log_history has no logging step (no entry with 'loss')")
    steps = [int(row["step"]) for row in out]
    if len(set(steps)) != len(steps):
        raise ValueError(f"{source}: a step is logged twice in log_history")
    return sorted(out, key=lambda row: int(row["step"]))


def write(model_dir: str | Path, out: str | Path) -> Path:
    """Write the curves CSV of the run in `model_dir` to `out` (atomically)."""
    source = Path(model_dir) / "train_summary.json"
    try:
        summary = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{source} does not exist (the run did not finish)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON ({exc})") from None
    table = rows(summary, str(source))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    return out
