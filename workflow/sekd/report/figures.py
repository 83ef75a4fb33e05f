"""The paper's figures (Figs. 2-5) from per-direction score files: PNG, PDF and the CSV behind each.

Input: ``points``, a list of dicts, one per plotted point::

    {"series": "SE-KD w/ Γ", "x": 0.4, "run": "sekd_gamma0.4",
     "scores": {"en-de": [seed0.json, seed1.json], "de-en": [...]},
     "reference": False}   # optional; True draws the series as a horizontal dashed line

A score file is JSON with a finite number under ``"bleu"`` (and under ``"chrf"``: rule bleu writes
both). ``bleu_avg`` of one seed is the mean over the point's directions; the figures plot the mean
over seeds of ``bleu_avg`` with the standard deviation over seeds (sample std, ddof=1) as error bars
when a point has more than one seed; beside it, in a second panel, the same of ``chrf_avg`` when
every score file has a chrF (the CSV: chrf_mean, chrf_std, chrf_<direction>).

Heavy imports (pandas, matplotlib, seaborn) happen inside the functions, so importing this module
is cheap. Output is drawn with the non-interactive Agg backend on a private ``Figure`` (no pyplot
state), inside an rc context, and saved without timestamps so reruns give the same bytes.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sekd import atomic

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DEFAULT_YLABEL = "Average SacreBLEU"
DPI = 200
# Savefig metadata without timestamps or version strings that change between runs.
_PNG_METADATA: dict[str, Any] = {"Software": None}
_PDF_METADATA: dict[str, Any] = {"CreationDate": None, "ModDate": None}


METRICS = {"bleu": "SacreBLEU", "chrf": "chrF"}
"""The metrics a line or bar figure draws, one panel each, and their name in the y label."""


def _read_score(path: str | Path, where: str, metric: str = "bleu") -> float:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{where}: score file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: score file {path} is not valid JSON ({exc})") from None
    value = data.get(metric) if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: score file {path} has no finite number under {metric!r}")
    return float(value)


def metrics_of(points: list[dict]) -> list[str]:
    """["bleu", "chrf"] when every score file of `points` has a chrF (rule bleu writes both), else
    ["bleu"]: the panels of a line or bar figure."""
    files = [f for point in points for paths in (point.get("scores") or {}).values() for f in paths]
    for path in files:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return ["bleu"]  # collect names the file
        if not isinstance(data, dict) or "chrf" not in data:
            return ["bleu"]
    return ["bleu", "chrf"] if files else ["bleu"]


def collect(points: list[dict], metric: str = "bleu") -> pd.DataFrame:
    """One row per point and seed: series, x, run, reference, seed_index, <metric>_<dir>…,
    <metric>_avg (metric: bleu or chrf).

    Raises ValueError naming the file when a score file is missing or invalid, and naming the point
    when it has no scores, when its directions have different numbers of seeds, or when two points
    share (series, x).
    """
    import pandas as pd

    if not points:
        raise ValueError("no points to plot")
    directions: list[str] = []
    records: list[dict] = []
    seen: set[tuple[str, Any]] = set()
    for point in points:
        series = str(point["series"])
        reference = bool(point.get("reference", False))
        if "x" not in point and not reference:
            raise ValueError(f"point of series {series!r} has no 'x'")
        x = point.get("x")
        where = f"{series} (x={x})"
        key = (series, x)
        if key in seen:
            raise ValueError(f"{where}: two points with the same series and x")
        seen.add(key)
        scores = point.get("scores") or {}
        if not scores:
            raise ValueError(f"{where}: no score files")
        n_seeds = {len(paths) for paths in scores.values()}
        if len(n_seeds) != 1 or 0 in n_seeds:
            counts = {d: len(p) for d, p in scores.items()}
            raise ValueError(
                f"{where}: directions need the same, non-zero number of seeds: {counts}"
            )
        for direction in scores:
            if direction not in directions:
                directions.append(direction)
        values = {
            d: [_read_score(path, f"{where} {d}", metric) for path in paths]
            for d, paths in scores.items()
        }
        for seed in range(n_seeds.pop()):
            record = {
                "series": series,
                "x": x,
                "run": str(point.get("run", "")),
                "reference": reference,
                "seed_index": seed,
            }
            per_direction = {f"{metric}_{d}": values[d][seed] for d in scores}
            record.update(per_direction)
            record[f"{metric}_avg"] = statistics.fmean(per_direction.values())
            records.append(record)
    columns = ["series", "x", "run", "reference", "seed_index"]
    columns += [f"{metric}_{d}" for d in directions] + [f"{metric}_avg"]
    return pd.DataFrame.from_records(records, columns=columns)


def summarize(df: pd.DataFrame, metric: str = "bleu") -> pd.DataFrame:
    """Per (series, x), in order of appearance: mean, std (0 for one seed), n_seeds of
    <metric>_avg, and the mean of each ``<metric>_<direction>`` column (empty where the point lacks
    the direction).
    """
    import pandas as pd

    average = f"{metric}_avg"
    direction_columns = [c for c in df.columns if c.startswith(f"{metric}_") and c != average]
    rows = []
    for (series, x), group in df.groupby(["series", "x"], sort=False, dropna=False):
        values = group[average]
        row = {
            "series": series,
            "x": None if _is_missing(x) else x,
            "run": group["run"].iloc[0],
            "reference": bool(group["reference"].iloc[0]),
            "n_seeds": len(values),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        }
        for column in direction_columns:
            row[column] = float(group[column].mean())  # NaN when the point lacks the direction
        rows.append(row)
    columns = ["series", "x", "run", "reference", "n_seeds", "mean", "std", *direction_columns]
    return pd.DataFrame.from_records(rows, columns=columns)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def combined(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The BLEU summary with, when drawn, chrF's beside it: chrf_mean, chrf_std, chrf_<d> (the
    same points in the same order)."""
    out = summaries["bleu"].copy()
    chrf = summaries.get("chrf")
    if chrf is not None:
        out["chrf_mean"], out["chrf_std"] = chrf["mean"].to_numpy(), chrf["std"].to_numpy()
        for column in [c for c in chrf.columns if c.startswith("chrf_")]:
            out[column] = chrf[column].to_numpy()
    return out


def _ylabel(ylabel: str, metric: str) -> str:
    """The y label of a metric's panel: the figure's, with chrF for SacreBLEU in chrF's."""
    if metric == "bleu":
        return ylabel
    return ylabel.replace("SacreBLEU", METRICS[metric]) if "SacreBLEU" in ylabel else metric


def _write_csv(summary: pd.DataFrame, path: Path) -> None:
    numeric = ["mean", "std", *[c for c in summary.columns if c.startswith(("bleu_", "chrf_"))]]
    table = summary.copy()
    table[numeric] = table[numeric].round(4)
    with atomic.replacing(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")


def _palette(series: list[str]) -> dict[str, Any]:
    import seaborn as sns

    colors = sns.color_palette("colorblind", max(len(series), 1))
    return dict(zip(series, colors, strict=False))


def _new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    return fig, fig.add_subplot()


def _new_panels(width: float, height: float, n: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of `n` panels side by side, each `width` wide, under `title` (one panel: its
    title; more: the figure's)."""
    fig, ax = _new_figure(width * n, height)
    if n == 1:
        ax.set_title(title)
        return fig, [ax]
    fig.clear()
    axes = list(fig.subplots(1, n, squeeze=False)[0])
    fig.subplots_adjust(wspace=0.3)
    fig.suptitle(title)
    return fig, axes


@contextmanager
def _theme() -> Iterator[None]:
    """Seaborn's whitegrid/paper theme, with matplotlib's settings restored on exit."""
    import matplotlib as mpl
    import seaborn as sns

    with mpl.rc_context():
        sns.set_theme(context="paper", style="whitegrid", font_scale=1.2)
        yield


# Reference lines differ by dash pattern as well as colour (some palette colours are close).
_REFERENCE_DASHES: list[Any] = ["--", "-.", ":", (0, (6, 2, 1, 2, 1, 2))]


def _draw_references(ax: Axes, summary: pd.DataFrame, palette: dict[str, Any]) -> list:
    """Horizontal dashed lines (and a ±std band when there are seeds) for reference series."""
    from matplotlib.lines import Line2D

    handles = []
    references = summary[summary["reference"]].itertuples(index=False)
    for i, row in enumerate(references):
        color = palette[row.series]
        style = {"color": color, "linestyle": _REFERENCE_DASHES[i % 4], "linewidth": 1.6}
        ax.axhline(row.mean, zorder=1, **style)
        if row.n_seeds > 1 and row.std > 0:
            ax.axhspan(row.mean - row.std, row.mean + row.std, color=color, alpha=0.12, lw=0)
        handles.append(Line2D([], [], label=row.series, **style))
    return handles


def _save_drawing(fig: Figure, out_prefix: str | Path) -> dict[str, Path]:
    """Write <out_prefix>.png and .pdf (each through a .tmp file, renamed when complete); return
    the paths of png, pdf and the csv the caller writes."""
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {ext: prefix.with_name(f"{prefix.name}.{ext}") for ext in ("png", "pdf", "csv")}
    for ext, metadata in (("png", _PNG_METADATA), ("pdf", _PDF_METADATA)):
        with atomic.replacing(paths[ext]) as tmp:
            fig.savefig(tmp, format=ext, dpi=DPI, bbox_inches="tight", metadata=metadata)
    return paths


def _save(fig: Figure, summary: pd.DataFrame, out_prefix: str | Path) -> dict[str, Path]:
    paths = _save_drawing(fig, out_prefix)
    _write_csv(summary, paths["csv"])
    return paths


def _label_bars(
    ax: Axes, summary: pd.DataFrame, categories: list[str], bar_series: list[str], rotate: bool
) -> None:
    """Write each bar's mean just above its error bar.

    Seaborn adds one bar container per hue level (in hue order) and places category j at x = j.
    """
    stats = {
        (row.series, str(row.x)): (row.mean, row.std)
        for row in summary[~summary["reference"]].itertuples(index=False)
    }
    fontsize = 8 if not rotate else (7 if len(categories) * len(bar_series) <= 12 else 6.5)
    for series, container in zip(bar_series, ax.containers, strict=False):
        for bar in container:
            center = bar.get_x() + bar.get_width() / 2
            category = categories[round(center)]
            mean, std = stats.get((series, category), (bar.get_height(), 0.0))
            ax.annotate(
                f"{mean:.2f}",
                (center, mean + std),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                rotation=90 if rotate else 0,
                fontsize=fontsize,
            )


def _legend(ax: Axes, handles: list, title: str | None = None) -> None:
    if handles:
        ax.legend(
            handles=handles,
            title=title,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            borderaxespad=0.0,
        )


def _seaborn_data(
    data: pd.DataFrame, series: list[str], palette: dict, ax: Axes, metric: str = "bleu"
) -> dict:
    """What a line and a bar plot share: <metric>_avg against x, one hue per series in `series`'
    order, error bars = std over seeds, no automatic legend (`_legend` draws it)."""
    return {
        "data": data,
        "x": "x",
        "y": f"{metric}_avg",
        "hue": "series",
        "hue_order": series,
        "palette": {s: palette[s] for s in series},
        "errorbar": "sd",
        "legend": False,
        "ax": ax,
    }


def line_figure(
    points: list[dict],
    out_prefix: str | Path,
    title: str,
    xlabel: str,
    ylabel: str = DEFAULT_YLABEL,
) -> dict[str, Path]:
    """bleu_avg against numeric x, one line with markers per series (error bars = std over seeds);
    reference series as horizontal dashed lines; beside it chrf_avg the same way when the score
    files have chrF (`metrics_of`). Writes <out_prefix>.png/.pdf/.csv (the summarize() tables,
    `combined`) and returns their paths by extension.
    """
    metrics = metrics_of(points)
    frames = {m: collect(points, m) for m in metrics}
    summaries = {m: summarize(df, m) for m, df in frames.items()}
    for value in frames["bleu"][~frames["bleu"]["reference"]]["x"].unique():
        try:
            float(value)
        except (TypeError, ValueError):
            raise ValueError(f"line_figure: x={value!r} is not a number") from None
    palette = _palette(list(dict.fromkeys(summaries["bleu"]["series"])))

    with _theme():
        fig, axes = _new_panels(5.2, 3.4, len(metrics), title)
        for ax, metric in zip(axes, metrics, strict=True):
            lines = frames[metric][~frames[metric]["reference"]].copy()
            lines["x"] = lines["x"].astype(float)
            handles = _draw_lines(ax, lines, palette, metric) if not lines.empty else []
            handles += _draw_references(ax, summaries[metric], palette)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(_ylabel(ylabel, metric))
            ax.margins(y=0.15)
        _legend(axes[-1], handles)
        return _save(fig, combined(summaries), out_prefix)


_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def _draw_lines(
    ax: Axes, lines: pd.DataFrame, palette: dict[str, Any], metric: str = "bleu"
) -> list:
    """One line with markers and error bars per series of `lines` (numeric x, <metric>_avg), each
    x a tick; their legend handles."""
    import seaborn as sns
    from matplotlib.lines import Line2D

    line_series = list(dict.fromkeys(lines["series"]))
    markers = [_MARKERS[i % len(_MARKERS)] for i in range(len(line_series))]
    sns.lineplot(
        **_seaborn_data(lines, line_series, palette, ax, metric),
        style="series",
        style_order=line_series,
        markers=markers,
        dashes=False,
        err_style="bars",
        err_kws={"capsize": 3, "elinewidth": 1.0},
        markersize=7,
        linewidth=1.8,
    )
    handles = [
        Line2D([], [], color=palette[name], marker=marker, markersize=6, label=name)
        for name, marker in zip(line_series, markers, strict=True)
    ]
    xs = sorted(lines["x"].unique())
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{v:g}" for v in xs])
    if len(xs) > 1:
        span = xs[-1] - xs[0]
        ax.set_xlim(xs[0] - 0.06 * span, xs[-1] + 0.06 * span)
    return handles


def bar_figure(
    points: list[dict],
    out_prefix: str | Path,
    title: str,
    xlabel: str,
    ylabel: str = DEFAULT_YLABEL,
) -> dict[str, Path]:
    """Grouped bars: categories x (in order of appearance), hue = series, error bars = std over
    seeds, each bar labelled with its mean. The y axis starts near the lowest bar so differences of
    a few tenths of BLEU stay visible. Reference points, if any, are drawn as dashed lines. Beside
    BLEU's panel, chrF's when the score files have chrF (`metrics_of`). Writes
    <out_prefix>.png/.pdf/.csv and returns their paths by extension.
    """
    metrics = metrics_of(points)
    frames = {m: collect(points, m) for m in metrics}
    summaries = {m: summarize(df, m) for m, df in frames.items()}
    palette = _palette(list(dict.fromkeys(summaries["bleu"]["series"])))
    bars = frames["bleu"][~frames["bleu"]["reference"]]
    categories = list(dict.fromkeys(bars["x"].astype(str)))
    bar_series = list(dict.fromkeys(bars["series"]))

    with _theme():
        width = max(4.5, 1.0 + 0.32 * len(categories) * max(len(bar_series), 1) + 0.5)
        fig, axes = _new_panels(min(width, 12.0), 3.6, len(metrics), title)
        for ax, metric in zip(axes, metrics, strict=True):
            handles = _bar_panel(ax, frames[metric], summaries[metric], palette, metric)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(_ylabel(ylabel, metric))
        # One series needs no legend: the categories already name the bars.
        if len(bar_series) > 1 or len(handles) > len(bar_series):
            _legend(axes[-1], handles)
        return _save(fig, combined(summaries), out_prefix)


def _bar_panel(
    ax: Axes, df: pd.DataFrame, summary: pd.DataFrame, palette: dict, metric: str
) -> list:
    """One metric's grouped bars (and reference lines) of `bar_figure` on `ax`; their handles."""
    import seaborn as sns
    from matplotlib.patches import Patch

    bars = df[~df["reference"]].copy()
    bars["x"] = bars["x"].astype(str)
    categories = list(dict.fromkeys(bars["x"]))
    bar_series = list(dict.fromkeys(bars["series"]))
    rotate = len(categories) * len(bar_series) > 6
    handles = []
    if not bars.empty:
        sns.barplot(
            **_seaborn_data(bars, bar_series, palette, ax, metric),
            order=categories,
            capsize=0.15,
            err_kws={"linewidth": 1.0},
        )
        _label_bars(ax, summary, categories, bar_series, rotate=rotate)
        handles = [Patch(color=palette[s], label=s) for s in bar_series]
    handles += _draw_references(ax, summary, palette)
    stats = summary[~summary["reference"]] if not bars.empty else summary
    low = float((stats["mean"] - stats["std"]).min())
    high = float((stats["mean"] + stats["std"]).max())
    pad = max(0.5, 0.35 * (high - low))
    ax.set_ylim(max(0.0, low - pad), high + (1.3 if rotate else 0.8) * pad)
    return handles


# Curves over training (sekd.report.curves' CSVs): one line per run, mean over its seeds.

CURVE_LABELS = {
    "loss": "Training loss",
    "learning_rate": "Learning rate",
    "hard_fraction": "Hard-token fraction",
    "beta": "β",
    "step": "Training step",
    "epoch": "Epoch",
}


def collect_curves(lines: list[dict], x: str, y: str) -> pd.DataFrame:
    """One row per line and x: series, run, x, mean, std (over seeds, ddof=1), n_seeds.

    `lines`: [{"series", "run", "curves": [CSV per seed]}]. Raises ValueError naming the file when
    a CSV is missing or lacks a column, and naming the run when it logs no `y` at all.
    """
    import pandas as pd

    if not lines:
        raise ValueError("no runs to plot")
    frames = []
    for line in lines:
        per_seed = []
        for path in line["curves"]:
            try:
                table = pd.read_csv(path)
            except FileNotFoundError:
                raise ValueError(f"{line['run']}: curves file {path} does not exist") from None
            missing = {x, y} - set(table.columns)
            if missing:
                raise ValueError(f"{path}: no column {sorted(missing)}")
            per_seed.append(table[[x, y]].dropna())
        data = pd.concat(per_seed)
        if data.empty:
            raise ValueError(f"{line['run']}: logs no {y!r} (its curves: {line['curves']})")
        stats = data.groupby(x, sort=True)[y].agg(["mean", "std", "count"]).reset_index()
        stats = stats.rename(columns={x: "x", "count": "n_seeds"})
        stats.insert(0, "run", line["run"])
        stats.insert(0, "series", line["series"])
        frames.append(stats)
    out = pd.concat(frames, ignore_index=True)
    out["std"] = out["std"].fillna(0.0)
    return out


def _draw_curves(ax: Axes, data: pd.DataFrame, palette: dict[str, Any]) -> list:
    """A line (±std band over seeds) per series of `data` (collect_curves); their handles."""
    from matplotlib.lines import Line2D

    handles = []
    for series, rows in data.groupby("series", sort=False):
        color = palette[series]
        ax.plot(rows["x"], rows["mean"], color=color, linewidth=1.6, marker="o", markersize=3)
        if (rows["n_seeds"] > 1).any():
            low, high = rows["mean"] - rows["std"], rows["mean"] + rows["std"]
            ax.fill_between(rows["x"], low, high, color=color, alpha=0.15, lw=0)
        handles.append(Line2D([], [], color=color, linewidth=1.6, label=series))
    return handles


def _save_curves(fig: Figure, data: pd.DataFrame, out_prefix: str | Path) -> dict[str, Path]:
    paths = _save_drawing(fig, out_prefix)
    with atomic.replacing(paths["csv"]) as tmp:
        data.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g")
    return paths


def curve_figure(spec: dict, out_prefix: str | Path) -> dict[str, Path]:
    """A `kind: curve` figure (sekd.plan.study.curve_figure_spec): `y` against `x` over training,
    one line per run. Writes <out_prefix>.png/.pdf/.csv (the collect_curves table)."""
    data = collect_curves(spec["lines"], spec["x"], spec["y"])
    palette = _palette(list(dict.fromkeys(data["series"])))
    with _theme():
        fig, ax = _new_figure(5.6, 3.6)
        handles = _draw_curves(ax, data, palette)
        ax.set_title(spec["title"], fontsize=10)
        ax.set_xlabel(spec["xlabel"] or CURVE_LABELS[spec["x"]])
        ylabel = spec.get("ylabel")
        ax.set_ylabel(CURVE_LABELS[spec["y"]] if ylabel in (None, DEFAULT_YLABEL) else ylabel)
        _legend(ax, handles)
        return _save_curves(fig, data, out_prefix)


def table_curves(spec: dict, out_prefix: str | Path, x: str = "step") -> dict[str, Path]:
    """The training curves of a table's runs (sekd.plan.study.table_curves_spec): one panel per
    logged value (loss, learning rate, hard-token fraction, β), a panel left out when no run logs
    it. Writes <out_prefix>.png/.pdf/.csv (the collect_curves tables, with a `value` column)."""
    import pandas as pd

    panels = {}
    for y in ("loss", "learning_rate", "hard_fraction", "beta"):
        logged = [line for line in spec["lines"] if _logs(line, y)]
        if logged:
            panels[y] = collect_curves(logged, x, y)
    if not panels:
        raise ValueError(f"{spec['title']}: no run logs a loss")
    palette = _palette([line["series"] for line in spec["lines"]])
    with _theme():
        fig, _ = _new_figure(4.2 * len(panels), 3.4)
        fig.clear()
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        fig.subplots_adjust(wspace=0.45)
        handles: dict[str, Any] = {}
        for ax, (y, data) in zip(axes, panels.items(), strict=True):
            for handle in _draw_curves(ax, data, palette):
                handles.setdefault(handle.get_label(), handle)
            ax.set_xlabel(CURVE_LABELS[x])
            ax.set_ylabel(CURVE_LABELS[y])
        fig.suptitle(spec["title"])
        _legend(axes[-1], list(handles.values()))
        data = pd.concat([d.assign(value=y) for y, d in panels.items()], ignore_index=True)
        return _save_curves(fig, data, out_prefix)


def _logs(line: dict, y: str) -> bool:
    """Whether any seed's curves CSV of a run has a value in column `y`."""
    import pandas as pd

    for path in line["curves"]:
        try:
            table = pd.read_csv(path)
        except FileNotFoundError:
            raise ValueError(f"{line['run']}: curves file {path} does not exist") from None
        if y in table.columns and table[y].notna().any():
            return True
    return False


def draw(spec: dict, out_prefix: str | Path) -> dict[str, Path]:
    """A declared figure from its spec (sekd.plan.study.figure_spec: kind, title, xlabel, ylabel,
    points or, for a curve figure, lines): a line, bar or curve figure. Writes
    <out_prefix>.png/.pdf/.csv."""
    if spec["kind"] == "curve":
        return curve_figure(spec, out_prefix)
    plot = {"line": line_figure, "bar": bar_figure}[spec["kind"]]
    ylabel = spec.get("ylabel", DEFAULT_YLABEL)
    return plot(spec["points"], out_prefix, spec["title"], spec["xlabel"], ylabel)
