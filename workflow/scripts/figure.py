"""Rule figure: one of Figures 2-5 as PNG, PDF and the CSV of the numbers behind it."""

from pathlib import Path

import sekd_path  # noqa: F401  (this workflow's sekd first on sys.path)

from sekd import figures
from sekd.logs import logged

TITLES = {
    "fig2a": "Fig. 2a: effect of Γ (validation)",
    "fig2b": "Fig. 2b: top-K% selection against NoEvo and SKEW KD (WMT22)",
    "fig2c": "Fig. 2c: effect of β (validation)",
    "fig3": "Fig. 3: static β against progressive β_b→β_e",
    "fig4": "Fig. 4: SacreBLEU against the teacher's own outputs",
    "fig5": "Fig. 5: SKEW KD (teacher), eq. 10, β=0.9, by λ",
}

with logged(snakemake.log[0]):
    fig = snakemake.wildcards.fig
    spec = snakemake.params.spec
    prefix = str(Path(snakemake.output.png).with_suffix(""))
    draw = figures.line_figure if spec["kind"] == "line" else figures.bar_figure
    ylabel = "SacreBLEU vs. teacher outputs" if fig == "fig4" else "Average SacreBLEU"
    draw(spec["points"], prefix, TITLES[fig], spec["xlabel"], ylabel)
