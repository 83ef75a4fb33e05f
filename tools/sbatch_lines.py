"""The sbatch line the SLURM executor plugin writes for one job of each rule of a plan.

    python tools/sbatch_lines.py [snakemake arguments ...]

plans the study (`snakemake -n --forceall --profile profiles/slurm all` plus the arguments) and
prints, for the first job of every rule that goes through sbatch (sekd.plan.allocation.MODEL_RULES:
the others are localrules) and node count, the plugin's own submit command
(snakemake_executor_plugin_slurm: `get_submit_command` + `set_gres_string`) for that job's
resources; docs/slurm.md shows its output and tests/test_allocation.py reads the plan with
`plan_jobs`. Run it with the driver's Python (.venv-driver or .venv), which has the plugin.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
_JOB = re.compile(r"^(?:local)?rule (\w+):$")


@dataclass
class PlannedJob:
    """A job as a dry run prints it: rule, wildcards, resources (integers as int)."""

    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: dict[str, object] = field(default_factory=dict)


def _pairs(text: str) -> dict[str, object]:
    pairs = {}
    for item in text.split(", "):
        key, _, value = item.partition("=")
        pairs[key.strip()] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return pairs


def parse_plan(output: str) -> list[PlannedJob]:
    """The jobs of a dry run's output (`snakemake -n`)."""
    jobs: list[PlannedJob] = []
    for line in output.splitlines():
        match = _JOB.match(line)
        if match:
            jobs.append(PlannedJob(match[1]))
        elif jobs and line.startswith("    wildcards: "):
            jobs[-1].wildcards = {k: str(v) for k, v in _pairs(line[14:]).items()}
        elif jobs and line.startswith("    resources: "):
            jobs[-1].resources = _pairs(line[15:])
    return jobs


def plan(*args: str, env: dict | None = None, workdir: str | None = None) -> str:
    """The output of a dry run of the whole study under profiles/slurm (plus `args`)."""
    cmd = [str(SNAKEMAKE), "-n", "--forceall", "-s", str(ROOT / "workflow" / "Snakefile")]
    cmd += ["--profile", str(ROOT / "profiles" / "slurm"), "-d", workdir or str(ROOT)]
    proc = subprocess.run(
        [*cmd, *(args or ["all"])], capture_output=True, text=True, cwd=ROOT, env=env
    )
    output = proc.stdout + proc.stderr
    if proc.returncode:
        raise RuntimeError(f"the dry run failed ({proc.returncode}):\n{output[-4000:]}")
    return output


def plan_jobs(*args: str, env: dict | None = None, workdir: str | None = None) -> list[PlannedJob]:
    return parse_plan(plan(*args, env=env, workdir=workdir))


class _Resources(SimpleNamespace):
    def get(self, key, default=None):
        return getattr(self, key, default)


def sbatch_line(job: PlannedJob) -> str:
    """The plugin's sbatch command for `job` (account and partition as the profile sets them)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    resources = {k: v for k, v in job.resources.items() if v not in ("", "<TBD>")}
    stand_in = SimpleNamespace(
        name=job.rule, threads=1, resources=_Resources(**resources), wildcards=job.wildcards
    )
    account = resources.get("slurm_account")
    partition = resources.get("slurm_partition")
    params = {
        "run_uuid": "<run-uuid>",
        "slurm_logfile": f".snakemake/slurm_logs/rule_{job.rule}/%j.log",
        "comment_str": f"rule_{job.rule}",
        "account": f"-A {account}" if account else "",
        "partition": f"-p {partition}" if partition else "",
        "workdir": "<workdir>",
    }
    line = get_submit_command(stand_in, params) + set_gres_string(stand_in)
    return re.sub(r"\s+", " ", line).strip()


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "workflow"))
    from sekd.plan.allocation import MODEL_RULES  # every other rule is a localrule (Snakefile)

    seen = set()
    for job in plan_jobs(*argv):
        shape = (job.rule, job.resources.get("nodes"))
        if job.rule not in MODEL_RULES or shape in seen:
            continue
        seen.add(shape)
        where = ", ".join(f"{k}={v}" for k, v in job.wildcards.items())
        print(f"# {job.rule} ({where})\n{sbatch_line(job)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
