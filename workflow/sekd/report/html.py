"""The study report: one self-contained HTML page with every table and figure, what the paper
reports for each (the captions declared in config/paper.yaml, via sekd.plan.study.captions), and the
run's resolved configuration."""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

import yaml

from sekd import atomic
from sekd.report.tables import COUNT_COLUMNS as COUNTS
from sekd.report.tables import SPREAD

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:90%}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
figure{margin:2em 0} img{max-width:100%} .paper{color:#555;font-style:italic}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:85%}
"""


def _csv_cell(row: dict, k: str) -> str:
    """One cell of `_csv_table`: the mean with its 95% interval over seeds when the CSV has one
    (<k>_lo, <k>_hi), else its ± std; a count as an integer; † where its metric's p < 0.05."""
    value = row[k]
    if k in {column for column, _ in COUNTS}:
        return str(int(float(value))) if value else "–"
    digits = 3 if k.startswith(("valid_", "hard_", "default_hard")) else 2
    text = f"{float(value):.{digits}f}" if value else ("n/c" if k.startswith("comet_") else "–")
    low, high, std = (row.get(f"{k}{suffix}", "") for suffix in ("_lo", "_hi", "_std"))
    if low and high:
        text += f" [{float(low):.{digits}f}, {float(high):.{digits}f}]"
    elif std:
        text += f" ± {float(std):.{digits}f}"
    metric, _, direction = k.partition("_")
    p = row.get({"bleu": f"p_{direction}", "chrf": f"p_chrf_{direction}"}.get(metric, ""), "")
    if p and float(p) < 0.05:
        text += "†"
    return text


def _csv_table(
    path: Path,
    name: str = "system",
    prefixes: tuple[str, ...] = ("bleu_", "chrf_", "comet_", "valid_"),
) -> str:
    """A results CSV as an HTML table: its `name` column, then the columns starting with
    `prefixes` that have a value (no *_std, *_lo, *_hi: shown in the cell)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = [k for k in rows[0] if k.startswith(prefixes) and not k.endswith(SPREAD)]
    keep = [k for k in keep if any(r[k] != "" for r in rows)]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in [name, *keep])
    body = []
    for row in rows:
        cells = [html.escape(row[name]), *(_csv_cell(row, k) for k in keep)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fidelity(path: Path) -> str:
    """The teacher store's fidelity report (sekd.teacher.store_fidelity) as HTML tables."""
    import json

    report = json.loads(path.read_text())
    store = report["store"]

    def fmt(x, digits=4):
        return "–" if x is None else f"{x:.{digits}f}"

    head = (
        "<tr><th>objective</th><th>loss (online)</th><th>loss (store)</th><th>difference</th>"
        "<th>gradient cosine</th><th>split agreement</th><th>without entropy correction</th></tr>"
    )
    rows = [
        f"<tr><td>{html.escape(name)}</td><td>{fmt(r['loss_online'])}</td>"
        f"<td>{fmt(r['loss_store'])}</td><td>{fmt(r['loss_difference'])}</td>"
        f"<td>{fmt(r['grad_cosine'])}</td><td>{fmt(r['split_agreement'], 3)}</td>"
        f"<td>{fmt(r['split_agreement_without_entropy_correction'], 3)}</td></tr>"
        for name, r in report["loss"].items()
    ]
    bleu = [
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(d)}</td><td>{r['online']:.2f}</td>"
        f"<td>{r['store']:.2f}</td><td>{r['difference']:+.2f}</td></tr>"
        for name, b in report["bleu"].items()
        for d, r in b["directions"].items()
    ]
    return (
        f"<h2>Teacher store fidelity ({html.escape(report['teacher'])}."
        f"{html.escape(report['source'])} vs the online teacher)</h2>"
        f"<p>Sparse store: K = {store['samples']}, τ = {store['temperature']}; losses on "
        f"{report['examples']} training examples with the SFT'd student (docs/teacher_store.md)."
        f"</p><table>{head}{''.join(rows)}</table>"
        "<table><tr><th>objective</th><th>direction</th><th>BLEU (online)</th>"
        f"<th>BLEU (store)</th><th>difference</th></tr>{''.join(bleu)}</table>"
    )


def _figure(path: Path, caption: str) -> str:
    """A PNG embedded in the page, under its file's name, with its caption."""
    name = html.escape(path.stem)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f"<figure><h3>{name}</h3><img alt='{name}' src='data:image/png;base64,{data}'>"
        f"<figcaption class='paper'>{html.escape(caption)}</figcaption></figure>"
    )


def _curves_section(curve_figures: list[Path], curves: list[Path], captions: dict) -> list[str]:
    """The mechanism over training: the declared curve figures (e.g. the hard-token fraction
    under Γ against top-K%), then each table's runs' curves (rule table_curves)."""
    if not curve_figures and not curves:
        return []
    parts = [
        # an anchor, so that report.html#training-curves opens here (docs/img/report-curves.png)
        "<a id='training-curves'></a><h2>Training curves</h2>",
        "<p>Per logging step of each training run: loss, learning rate, the fraction of target "
        "tokens in the hard set (objectives that split tokens) and β (under a schedule), mean "
        "over seeds. Each run's numbers: results/curves/&lt;run&gt;/seed&lt;s&gt;.csv.</p>",
    ]
    parts += [_figure(path, captions.get(path.stem, "")) for path in curve_figures]
    table_caption = "The training curves of every run of {}, one panel per logged value."
    parts += [_figure(path, table_caption.format(path.stem)) for path in curves]
    return parts


def _sensitivity_section(files: list[Path]) -> list[str]:
    """results/sensitivity.csv and its figure (sekd.report.sensitivity), when planned."""
    csvs = [p for p in files if p.suffix == ".csv"]
    pngs = [p for p in files if p.suffix == ".png"]
    if not csvs:
        return []
    parts = [
        "<h2>Sensitivity to the open choices</h2>",
        "<p>Each alternative (config/paper.yaml, <code>sensitivity</code>) is one run option at "
        "another value, trained as its own KD run: SacreBLEU on WMT22 (mean over seeds), its Δ "
        "to its default run, and the mean hard-token fraction of both runs over training.</p>",
        _csv_table(csvs[0], "label", ("bleu_", "delta_", "default_bleu", "hard_", "default_hard")),
    ]
    caption = (
        "Δ average SacreBLEU of each alternative to its default; markers: hard-token fraction."
    )
    parts += [_figure(path, caption) for path in pngs]
    return parts


def _budget_section(budget: dict) -> list[str]:
    """The measured compute per table row (sekd.report.budget) and the whole study's jobs."""
    if not budget:
        return []
    columns = [
        ("system", "System"),
        ("parameters", "Parameters"),
        ("trained_parameters", "Trained"),
        ("gpus", "GPUs"),
        ("gpu", "GPU"),
        ("train_hours", "Training h"),
        ("train_cpu_hours", "Training CPU h"),
        ("gpu_hours", "GPU h"),
        ("decode_hours", "Decoding h"),
    ]
    parts = [
        "<h2>Compute budget</h2>",
        "<p>Measured by this run (Snakemake benchmark files; ACL Responsible NLP checklist C1): "
        "per row, the trained model's parameters and those its training updated (a LoRA run's "
        "adapter), the GPUs its training ran on, the wall and "
        "CPU hours of its training summed over seeds, GPU hours (training wall time × GPUs) and "
        "the wall hours of its decoding. Shared jobs (the teacher's SFT, teacher outputs and "
        "stores) are counted in their own rows and in the total.</p>",
    ]
    for name, rows in budget.get("tables", {}).items():
        head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key, _ in columns)
            + "</tr>"
            for row in rows
        )
        parts.append(f"<h3>{html.escape(name)}</h3><table><tr>{head}</tr>{body}</table>")
    total = budget.get("total")
    if total:
        parts.append(
            f"<p>The whole study so far: {total['jobs']} jobs, {total['wall_hours']} wall hours "
            f"(summed over jobs), {total['cpu_hours']} CPU hours.</p>"
        )
    return parts


def _readings_section(readings: dict[str, str]) -> list[str]:
    """Each table's reading (Markdown of headings, paragraphs and "- " items) as HTML."""
    parts = []
    for text in readings.values():
        items: list[str] = []
        for line in [*text.splitlines(), ""]:
            if line.startswith("- "):
                items.append(f"<li>{html.escape(line[2:])}</li>")
                continue
            if items:
                parts.append("<ul>" + "".join(items) + "</ul>")
                items = []
            if line.startswith("## "):
                parts.append(f"<h2>{html.escape(line[3:])}</h2>")
            elif line:
                parts.append(f"<p>{html.escape(line)}</p>")
    return parts


def build(
    tables: list[Path],
    figures: list[Path],
    config: dict,
    out: Path,
    fidelity: Path | None = None,
    captions: dict[str, str] | None = None,
    curves: list[Path] | None = None,
    sensitivity: list[Path] | None = None,
    budget: dict | None = None,
    readings: dict[str, str] | None = None,
) -> None:
    """Write the report to `out`: tables from their CSV, figures embedded as PNG, each with its
    caption (what the paper reports, by table/figure name), the teacher store's fidelity
    report (its JSON) if given, and a section of training curves: the figures of `kind: curve`
    and the per-table curve figures in `curves`; the sensitivity study's CSV and figure in
    `sensitivity`, if planned; the compute `budget` ({"tables": {name: rows}, "total"}:
    sekd.report.budget), if given; `readings` ({table: Markdown}, sekd.report.reading) after
    the tables."""
    captions = captions or {}
    declared = config.get("figures", {})
    curve_figures = [p for p in figures if declared.get(p.stem, {}).get("kind") == "curve"]
    figures = [p for p in figures if p not in curve_figures]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Self-Evolution KD: study report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Self-Evolution Knowledge Distillation (Song et al., COLING 2025): study report</h1>",
        "<p>Every table and figure of the paper, rebuilt by this run. Under each, in italics, "
        "what the paper reports for it.</p>",
    ]
    for path in tables:
        name = path.stem
        parts.append(f"<h2>{html.escape(name.capitalize())}</h2>")
        parts.append(_csv_table(path))
        parts.append(f"<p class='paper'>{html.escape(captions.get(name, ''))}</p>")
    parts += _readings_section(readings or {})
    for path in figures:
        name = path.stem
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<figure><h2>{html.escape(name)}</h2>")
        parts.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
        caption = html.escape(captions.get(name, ""))
        parts.append(f"<figcaption class='paper'>{caption}</figcaption>")
        parts.append("</figure>")
    parts += _curves_section(curve_figures, curves or [], captions)
    parts += _sensitivity_section(sensitivity or [])
    if fidelity is not None:
        parts.append(_fidelity(fidelity))
    parts += _budget_section(budget or {})
    parts.append("<h2>Configuration of this run</h2>")
    parts.append(f"<pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>")
    parts.append("</body></html>")
    with atomic.replacing(out) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
