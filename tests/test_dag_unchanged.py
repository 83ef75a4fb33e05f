"""The redesign must not change what the study runs: the dry-run job list (rule, output paths) of
the paper config and of the miniature equals the list recorded on main 7829804, before the
"one home per concept" redesign (tests/data/dag_*.txt), plus, since, only added jobs: the training
curves of issue 11 (rules curves, table_curves, and the hard_fraction figure); Table 3 of issue 10
(its eight KD runs, the two teacher_outputs generations, their decoding and scoring); the
validation fit of every table row (rule fit) and, in the paper config, the sensitivity study of
issue 11; in the miniature, Table 1's rows over seeds 2 and 3 (issue 20: tables.table1.seeds in
config/mini.yaml; their sft, kd, decode, bleu, fit and curves jobs) and the pretraining of its
models (issue 20: rules prepare_pretrain and pretrain); in both, the report's reading
(results/reading.md, a second output of rule report). No job of the recorded plan was removed or
renamed.

Regenerate a list only when a change is meant to alter the plan:
    .venv/bin/python tests/test_dag_unchanged.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RECORDED = ROOT / "tests" / "data"
CONFIGS = {
    "config": [],
    "mini": [str(ROOT / "config" / "mini.yaml")],
}


def snakefile() -> Path:
    for path in (ROOT / "workflow" / "Snakefile", ROOT / "Snakefile"):
        if path.exists():
            return path
    raise FileNotFoundError("no Snakefile")


def planned_jobs(name: str) -> list[str]:
    """Sorted 'rule<TAB>output' lines of a forced dry run of `all` in an empty directory."""
    extra = ["--configfile", *CONFIGS[name]] if CONFIGS[name] else []
    with tempfile.TemporaryDirectory() as workdir:
        cmd = [
            str(SNAKEMAKE), "-n", "--forceall", "-s", str(snakefile()), "-d", workdir,
            "all", *extra,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        outputs = re.search(r"^\s+output: (.*)$", block, re.M)
        for path in outputs[1].split(", ") if outputs else ["-"]:
            jobs.append(f"{head[1]}\t{path}")
    return sorted(jobs)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_dry_run_job_list_unchanged(name):
    recorded = (RECORDED / f"dag_{name}.txt").read_text().splitlines()
    assert planned_jobs(name) == recorded


if __name__ == "__main__":
    for name in CONFIGS:
        (RECORDED / f"dag_{name}.txt").write_text("\n".join(planned_jobs(name)) + "\n")
