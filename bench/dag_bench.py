"""Snakemake dry-run time of the full paper config (config/config.yaml): parsing, validation and
planning every job of the study, without executing anything.

    .venv/bin/python bench/dag_bench.py [--repeats 3]

Runs `snakemake -n` in a fresh empty directory (so every job is planned) and prints one JSON
line with `dry_run_seconds` (the median wall time) and the number of jobs planned.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times, jobs = [], None
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as workdir:
            cmd = [
                str(SNAKEMAKE),
                "-n",
                "-s",
                str(ROOT / "workflow" / "Snakefile"),
                "-d",
                workdir,
                "--quiet",
                "rules",
            ]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - start)
            match = re.search(r"^total\s+(\d+)$", proc.stdout + proc.stderr, re.M)
            jobs = int(match[1]) if match else None
    print(
        json.dumps(
            {
                "bench": "dag",
                "config": "config/config.yaml",
                "jobs": jobs,
                "dry_run_seconds": round(statistics.median(times), 2),
                "runs": [round(t, 2) for t in times],
            }
        )
    )


if __name__ == "__main__":
    main()
