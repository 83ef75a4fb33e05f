"""The teacher store's fidelity report (torch-free: the store_fidelity rule runs in the report
environment): `fidelity_report` joins the loss comparison of sekd.teacher.store_fidelity with the
BLEU of KD runs trained from the online teacher and from the store; `to_markdown` renders both.
"""

from __future__ import annotations

import json
from pathlib import Path


def _mean(files: list[str]) -> float:
    return sum(json.loads(Path(f).read_text())["bleu"] for f in files) / len(files)


def fidelity_report(spec: dict) -> dict:
    """The loss comparison (spec["loss"], from compare_losses) plus, per objective and
    direction, the BLEU of the runs trained with the online teacher and with the store."""
    loss = json.loads(Path(spec["loss"]).read_text())
    bleu = {}
    for objective, runs in spec["objectives"].items():
        rows = {}
        for direction in runs["online"]:
            online, store = _mean(runs["online"][direction]), _mean(runs["store"][direction])
            rows[direction] = {"online": online, "store": store, "difference": store - online}
        diffs = [r["difference"] for r in rows.values()]
        bleu[objective] = {"directions": rows, "mean_difference": sum(diffs) / len(diffs)}
    return {
        "teacher": spec["teacher"],
        "source": spec["source"],
        "store": loss["store"],
        "examples": loss["examples"],
        "loss": loss["objectives"],
        "bleu": bleu,
    }


def _fmt(x, digits: int = 4) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def to_markdown(report: dict) -> str:
    """The report as two Markdown tables."""
    store = report["store"]
    lines = [
        f"# Teacher store fidelity: {report['teacher']}.{report['source']} vs the online teacher",
        "",
        f"Store: {store['mode']}, K = {store['samples']} draws per token, τ = "
        f"{store['temperature']}, {store['num_tokens']} target tokens, "
        f"{store['bytes'] / 2**20:.1f} MiB. Losses on {report['examples']} training examples "
        "(the SFT'd student).",
        "",
        "| objective | loss (online) | loss (store) | difference | gradient cosine "
        "| hard fraction (online / store) | split agreement | without entropy correction |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for objective, r in report["loss"].items():
        hard = (
            "–"
            if r["hard_fraction_online"] is None
            else f"{r['hard_fraction_online']:.3f} / {r['hard_fraction_store']:.3f}"
        )
        lines.append(
            f"| {objective} | {_fmt(r['loss_online'])} | {_fmt(r['loss_store'])} "
            f"| {_fmt(r['loss_difference'])} | {_fmt(r['grad_cosine'])} | {hard} "
            f"| {_fmt(r['split_agreement'], 3)} "
            f"| {_fmt(r['split_agreement_without_entropy_correction'], 3)} |"
        )
    if report["bleu"]:
        lines += [
            "",
            "| objective | direction | BLEU (online) | BLEU (store) | difference |",
            "|---|---|---:|---:|---:|",
        ]
        for objective, b in report["bleu"].items():
            for direction, r in b["directions"].items():
                lines.append(
                    f"| {objective} | {direction} | {r['online']:.2f} | {r['store']:.2f} "
                    f"| {r['difference']:+.2f} |"
                )
            lines.append(f"| {objective} | mean | | | {b['mean_difference']:+.2f} |")
    return "\n".join(lines) + "\n"
