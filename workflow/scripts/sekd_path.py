"""This workflow's own `sekd` package, first on sys.path: every rule script imports this module
before sekd (Snakemake appends the script's directory, workflow/scripts, to sys.path; an installed
sekd of another checkout must not win)."""

import sys
from pathlib import Path

WORKFLOW = str(Path(__file__).resolve().parent.parent)  # workflow/, holding sekd/
if sys.path[0] != WORKFLOW:
    sys.path.insert(0, WORKFLOW)
